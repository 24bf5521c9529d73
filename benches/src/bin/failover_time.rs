//! Failover, measured: time from the primary's death to the first successful
//! write through the pooler, and how many reads failed meanwhile, with the
//! default health-check settings and with tuned ones. Each setting gets a
//! fresh primary + 2 standbys; the pooler (the real binary) promotes with the
//! shipped `examples/failover/pg_failover.sh` (`pg_ctl promote`) and re-points
//! the other standby with `examples/failover/pg_follow_primary.sh`.
//! Run: `cargo build --release -p pooler-bin && cargo run --release -p pooler-benches --bin failover-time`
//! (`--log DIR` keeps the pooler's info-level log of each run there).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pooler_benches::failover::{example_hooks_toml, nodes_toml, TUNED_HEALTH};
use pooler_benches::PoolerProcess;

struct Outcome {
    to_first_write: Duration,
    writes_failed: u64,
    reads_ok: u64,
    reads_failed: u64,
}

fn measure(
    pooler: &std::path::Path,
    label: &str,
    health: &str,
    log_dir: Option<&std::path::Path>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let cluster = pooler_testkit::Cluster::builder()
        .standbys(2)
        .init_sql("CREATE TABLE items (id serial PRIMARY KEY, v int);")
        .start()?;
    cluster.wait_for_replication(Duration::from_secs(60))?;
    let nodes = nodes_toml(&cluster);
    let hooks = example_hooks_toml(&cluster);
    let log = log_dir.map(|d| d.join(format!("failover-{label}.log")));
    let process = PoolerProcess::start_logged(
        pooler,
        &cluster.dir().join(label),
        "",
        &format!(
            "[pool]\nmode = \"transaction\"\n[auth]\nmethod = \"trust\"\n[routing]\nload_balance = true\n\
             [health]\n{health}\n[failover]\n{hooks}{nodes}"
        ),
        "info",
        log.as_deref(),
    )?;
    let port = process.port;
    pooler_testkit::psql_at(port, "postgres", "postgres", "INSERT INTO items (v) VALUES (0)")?;
    // Readers run throughout; failures are counted.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match pooler_testkit::psql_at(port, "postgres", "postgres", "SELECT count(*) FROM items") {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (ok0, failed0) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let died = Instant::now();
    cluster.primary().stop(pooler_testkit::StopMode::Immediate)?;
    let deadline = died + Duration::from_secs(120);
    let mut writes_failed = 0;
    let to_first_write = loop {
        if pooler_testkit::psql_at(port, "postgres", "postgres", "INSERT INTO items (v) VALUES (1)").is_ok() {
            break died.elapsed();
        }
        writes_failed += 1;
        if Instant::now() > deadline {
            return Err("no write succeeded within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    Ok(Outcome {
        to_first_write,
        writes_failed,
        reads_ok: ok.load(Ordering::Relaxed) - ok0,
        reads_failed: failed.load(Ordering::Relaxed) - failed0,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pooler = PathBuf::from("target/release/pooler");
    let mut log_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pooler" => pooler = PathBuf::from(args.next().ok_or("--pooler PATH")?),
            "--log" => log_dir = Some(PathBuf::from(args.next().ok_or("--log DIR")?)),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if let Some(d) = &log_dir {
        std::fs::create_dir_all(d)?;
    }
    println!(
        "| health settings | primary death to first successful write | writes failed | reads ok / failed meanwhile |"
    );
    println!("|---|---|---|---|");
    for (label, health) in [
        ("default (period 2s, 2 retries 500ms apart)", "period = \"2s\""),
        ("tuned (period 200ms, 1 retry after 100ms)", TUNED_HEALTH),
    ] {
        let dir = if label.starts_with("default") { "default" } else { "tuned" };
        let o = measure(&pooler, dir, health, log_dir.as_deref())?;
        println!(
            "| {label} | {:.2} s | {} | {} / {} |",
            o.to_first_write.as_secs_f64(),
            o.writes_failed,
            o.reads_ok,
            o.reads_failed
        );
    }
    Ok(())
}
