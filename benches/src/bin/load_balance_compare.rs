//! Read load balancing, measured: pgbench against a primary with streaming
//! standbys, through the pooler without load balancing and with it, in one
//! run, with the statements each node served (from pg_stat_database).
//! Run: `cargo build --release -p pooler-bin && cargo run --release -p pooler-benches --bin load-balance-compare -- --clients 50 --seconds 20`.
//! Extra pgbench arguments go after `--` (default `-S`).

use std::path::PathBuf;

use pooler_benches::{cpu_seconds, field, pgbench, PoolerProcess};

/// Transactions committed in database postgres on the node at `port`.
fn commits(port: u16) -> u64 {
    pooler_testkit::psql_at(
        port,
        "postgres",
        "postgres",
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut clients = 50usize;
    let mut seconds = 20u64;
    let mut standbys = 2usize;
    let mut pool = 10usize;
    let mut pooler = PathBuf::from("target/release/pooler");
    let mut extra: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clients" => clients = args.next().ok_or("--clients N")?.parse()?,
            "--seconds" => seconds = args.next().ok_or("--seconds N")?.parse()?,
            "--standbys" => standbys = args.next().ok_or("--standbys N")?.parse()?,
            "--pool-size" => pool = args.next().ok_or("--pool-size N")?.parse()?,
            "--pooler" => pooler = PathBuf::from(args.next().ok_or("--pooler PATH")?),
            "--" => extra.extend(args.by_ref()),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if extra.is_empty() {
        extra.push("-S".into());
    }
    let cluster = pooler_testkit::Cluster::builder()
        .standbys(standbys)
        .setting("max_connections", &(clients + 50).max(200).to_string())
        .start()?;
    let bin = cluster.bin_dir().to_path_buf();
    let primary = cluster.primary().port();
    pgbench(&bin, primary, &["-i".into(), "-q".into()])?;
    cluster.wait_for_replication(std::time::Duration::from_secs(60))?;
    let nodes: String =
        cluster.nodes().map(|n| format!("[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n", n.port())).collect();
    let start = |name: &str, balance: bool| {
        PoolerProcess::start(
            &pooler,
            &cluster.dir().join(name),
            &format!("max_client_connections = {}", clients + 10),
            &format!(
                "[pool]\nmode = \"transaction\"\nsize = {pool}\n[auth]\nmethod = \"trust\"\n\
                 [routing]\nload_balance = {balance}\n{nodes}"
            ),
        )
    };
    let plain = start("no-balance", false)?;
    let balanced = start("balance", true)?;
    let mut run_args =
        vec!["-c".to_string(), clients.to_string(), "-j".into(), "2".into(), "-T".into(), seconds.to_string()];
    run_args.extend(extra.iter().cloned());
    let ports: Vec<u16> = cluster.nodes().map(|n| n.port()).collect();
    println!(
        "pgbench -c {clients} -j 2 -T {seconds} {} over a primary and {standbys} standbys; pooler in transaction mode, pool {pool} per node; one run",
        extra.join(" ")
    );
    println!();
    let mut header = String::from("| target | tps | latency avg (ms) | failed | pooler CPU/txn |");
    let mut rule = String::from("|---|---|---|---|---|");
    for (i, _) in ports.iter().enumerate() {
        header.push_str(&format!(" node {i} {} |", if i == 0 { "(primary)" } else { "(standby)" }));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for (label, port, pid) in [
        ("direct to the primary", primary, None),
        ("pooler, no load balancing", plain.port, Some(plain.pid())),
        ("pooler, load balancing", balanced.port, Some(balanced.pid())),
    ] {
        let before: Vec<u64> = ports.iter().map(|&p| commits(p)).collect();
        let cpu_before = pid.and_then(cpu_seconds);
        let out = pgbench(&bin, port, &run_args)?;
        let cpu = pid.and_then(cpu_seconds).zip(cpu_before).map(|(a, b)| a - b);
        let after: Vec<u64> = ports.iter().map(|&p| commits(p)).collect();
        let tps: f64 =
            field(&out, "tps =").and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let latency = field(&out, "latency average =").and_then(|v| v.split_whitespace().next()).unwrap_or("?");
        let failed = field(&out, "number of failed transactions:").unwrap_or("?");
        let cpu_txn = cpu.map(|c| format!("{:.1} µs", c / (tps * seconds as f64).max(1.0) * 1e6)).unwrap_or_default();
        let mut row = format!("| {label} | {tps:.0} | {latency} | {failed} | {cpu_txn} |");
        for (b, a) in before.iter().zip(&after) {
            row.push_str(&format!(" {} |", a.saturating_sub(*b)));
        }
        println!("{row}");
    }
    println!();
    println!("Node columns: transactions committed on each node during the run (pg_stat_database.xact_commit).");
    Ok(())
}
