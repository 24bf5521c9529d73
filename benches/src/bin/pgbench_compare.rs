//! pgbench directly against PostgreSQL and through the `pooler` binary, in one
//! run on one cluster, so the two figures can be compared.
//! Run: `cargo build --release -p pooler-bin && cargo run --release -p pooler-benches --bin pgbench-compare -- --clients 20 --seconds 10`.
//! Extra pgbench arguments go after `--`, e.g. `-- -S -M prepared`.
//! When `pgbouncer` is installed (Debian: apt-get install pgbouncer), it runs
//! too, in the same pool mode with the same pool size, as a third target.
//! `--mode transaction --pool-size 10` pools 100 clients over 10 connections
//! (both poolers); the default is session mode with one connection per client.

use std::path::PathBuf;

use pooler_benches::{cpu_seconds, field, pgbench, rss_kib, Pgbouncer, PoolerProcess};

struct Row {
    target: String,
    tps: f64,
    latency_ms: f64,
    processed: String,
    failed: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut clients = 20usize;
    let mut seconds = 10u64;
    let mut scale = 1u32;
    let mut pooler = PathBuf::from("target/release/pooler");
    let mut extra: Vec<String> = Vec::new();
    let mut mode = String::from("session");
    let mut pool_size: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clients" => clients = args.next().ok_or("--clients N")?.parse()?,
            "--seconds" => seconds = args.next().ok_or("--seconds N")?.parse()?,
            "--scale" => scale = args.next().ok_or("--scale N")?.parse()?,
            "--pooler" => pooler = PathBuf::from(args.next().ok_or("--pooler PATH")?),
            "--mode" => mode = args.next().ok_or("--mode session|transaction|statement")?,
            "--pool-size" => pool_size = Some(args.next().ok_or("--pool-size N")?.parse()?),
            "--" => extra.extend(args.by_ref()),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if !matches!(mode.as_str(), "session" | "transaction" | "statement") {
        return Err(format!("--mode {mode}: expected session, transaction or statement").into());
    }
    let pool = pool_size.unwrap_or(clients.max(1));
    let max_connections = (clients + 50).max(200).to_string();
    let cluster = pooler_testkit::Cluster::builder().setting("max_connections", &max_connections).start()?;
    let bin = cluster.bin_dir().to_path_buf();
    let direct = cluster.primary().port();
    let pooler = PoolerProcess::start(
        &pooler,
        &cluster.dir().join("pgbench-compare"),
        &format!("max_client_connections = {}", clients + 10),
        &format!(
            "[pool]\nmode = \"{mode}\"\nsize = {pool}\n[auth]\nmethod = \"trust\"\n\
             [[nodes]]\nhost = \"127.0.0.1\"\nport = {direct}\n"
        ),
    )?;
    let port = pooler.port;
    pgbench(&bin, direct, &["-i".into(), "-q".into(), "-s".into(), scale.to_string()]).map_err(|e| e.to_string())?;
    let mut run_args =
        vec!["-c".to_string(), clients.to_string(), "-j".into(), "2".into(), "-T".into(), seconds.to_string()];
    run_args.extend(extra.iter().cloned());
    let cpu_before = cpu_seconds(pooler.pid());
    let bouncer = Pgbouncer::start(cluster.dir(), direct, pool, clients, &mode).ok();
    let pooler_label = format!("pooler ({mode}, pool {pool})");
    let bouncer_label = format!("pgbouncer ({mode}, pool {pool})");
    let mut targets = vec![("direct".to_string(), direct), (pooler_label, port)];
    if let Some(b) = &bouncer {
        targets.push((bouncer_label, b.port));
    }
    let mut bouncer_cpu = None;
    let mut results = Vec::new();
    for (target, p) in targets {
        let before = bouncer.as_ref().and_then(|b| cpu_seconds(b.pid()));
        let is_bouncer = target.starts_with("pgbouncer");
        let out = match pgbench(&bin, p, &run_args) {
            Ok(out) => out,
            Err(e) if is_bouncer => {
                // pgbouncer 1.18 cannot run some workloads (prepared statements in
                // transaction mode): report that instead of stopping.
                let why = e.lines().find(|l| l.contains("error")).unwrap_or("pgbench failed").to_owned();
                results.push(Row { target, tps: 0.0, latency_ms: 0.0, processed: why, failed: "run aborted".into() });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        results.push(Row {
            target,
            tps: field(&out, "tps =")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            latency_ms: field(&out, "latency average =")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            processed: field(&out, "number of transactions actually processed:").unwrap_or("?").to_owned(),
            failed: field(&out, "number of failed transactions:").unwrap_or("?").to_owned(),
        });
        if is_bouncer {
            let after = bouncer.as_ref().and_then(|b| cpu_seconds(b.pid()));
            bouncer_cpu = after.zip(before).map(|(a, b)| a - b);
        }
    }
    let cpu = cpu_seconds(pooler.pid()).zip(cpu_before).map(|(a, b)| a - b);
    let (peak, _) = rss_kib(pooler.pid()).unwrap_or((0, 0));
    println!("pgbench -c {clients} -j 2 -T {seconds} {} (scale {scale}), one cluster, one run", extra.join(" "));
    println!();
    println!("| target | tps | latency avg (ms) | processed | failed | vs direct |");
    println!("|---|---|---|---|---|---|");
    let base = results[0].tps.max(f64::MIN_POSITIVE);
    for r in &results {
        println!(
            "| {} | {:.0} | {:.3} | {} | {} | {:.2} |",
            r.target,
            r.tps,
            r.latency_ms,
            r.processed,
            r.failed,
            r.tps / base
        );
    }
    println!();
    if let (Some(cpu), Some(pooled)) = (cpu, results.get(1)) {
        let txns = pooled.tps * seconds as f64;
        println!(
            "pooler CPU: {cpu:.2} s for ~{txns:.0} transactions = {:.1} µs per transaction; peak RSS {peak} KiB",
            cpu / txns.max(1.0) * 1e6
        );
    }
    if let (Some(cpu), Some(b)) = (bouncer_cpu, results.get(2)) {
        let txns = b.tps * seconds as f64;
        println!(
            "pgbouncer CPU: {cpu:.2} s for ~{txns:.0} transactions = {:.1} µs per transaction",
            cpu / txns.max(1.0) * 1e6
        );
    }
    if bouncer.is_none() {
        println!("(pgbouncer not found or did not start: install it to compare)");
    }
    Ok(())
}
