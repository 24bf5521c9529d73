//! Failover, measured: time from the primary's death to the first successful
//! write through the pooler, and how many reads failed meanwhile, with the
//! default health-check settings and with tuned ones. Each setting gets a
//! fresh primary + 2 standbys; the pooler (the real binary) promotes with
//! `pg_ctl promote` through its failover command and re-points the other
//! standby with its follow-primary command.
//! Run: `cargo build --release -p pooler-bin && cargo run --release -p pooler-benches --bin failover-time`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pooler_benches::PoolerProcess;

/// `command`, run as the PostgreSQL server user when the pooler runs as root.
fn as_server_user(command: String) -> String {
    match pooler_testkit::server_os_user() {
        Some((user, _, _)) => format!("runuser -u {user} -- {command}"),
        None => command,
    }
}

struct Outcome {
    to_first_write: Duration,
    reads_ok: u64,
    reads_failed: u64,
}

fn measure(pooler: &std::path::Path, label: &str, health: &str) -> Result<Outcome, Box<dyn std::error::Error>> {
    let cluster = pooler_testkit::Cluster::builder()
        .standbys(2)
        .init_sql("CREATE TABLE items (id serial PRIMARY KEY, v int);")
        .start()?;
    cluster.wait_for_replication(Duration::from_secs(60))?;
    let bin = cluster.bin_dir().display().to_string();
    let nodes: String = cluster
        .nodes()
        .map(|n| {
            format!("[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\ndata_dir = \"{}\"\n", n.port(), n.data_dir().display())
        })
        .collect();
    let promote = as_server_user(format!("{bin}/pg_ctl promote -w -D %R"));
    let follow = format!(
        "{bin}/psql -h %h -p %p -U postgres -d postgres -c \\\"ALTER SYSTEM SET primary_conninfo = 'host=%H port=%r user=postgres'\\\" -c 'SELECT pg_reload_conf()'"
    );
    let process = PoolerProcess::start(
        pooler,
        &cluster.dir().join(label),
        "",
        &format!(
            "[pool]\nmode = \"transaction\"\n[auth]\nmethod = \"trust\"\n[routing]\nload_balance = true\n\
             [health]\n{health}\n[failover]\ncommand = \"{promote}\"\nfollow_primary_command = \"{follow}\"\n{nodes}"
        ),
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
    let to_first_write = loop {
        if pooler_testkit::psql_at(port, "postgres", "postgres", "INSERT INTO items (v) VALUES (1)").is_ok() {
            break died.elapsed();
        }
        if Instant::now() > deadline {
            return Err("no write succeeded within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    Ok(Outcome {
        to_first_write,
        reads_ok: ok.load(Ordering::Relaxed) - ok0,
        reads_failed: failed.load(Ordering::Relaxed) - failed0,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pooler = PathBuf::from("target/release/pooler");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pooler" => pooler = PathBuf::from(args.next().ok_or("--pooler PATH")?),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    println!("| health settings | primary death to first write | reads ok / failed meanwhile |");
    println!("|---|---|---|");
    for (label, health) in [
        ("default (period 2s, 2 retries 500ms apart)", "period = \"2s\""),
        ("tuned (period 200ms, 1 retry after 100ms)", "period = \"200ms\"\nmax_retries = 1\nretry_delay = \"100ms\""),
    ] {
        let dir = if label.starts_with("default") { "default" } else { "tuned" };
        let o = measure(&pooler, dir, health)?;
        println!("| {label} | {:.2} s | {} / {} |", o.to_first_write.as_secs_f64(), o.reads_ok, o.reads_failed);
    }
    Ok(())
}
