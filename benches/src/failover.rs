//! What the failover tools (`failover-time`, `failover-ledger`) share: the
//! shipped example scripts with the environment they need, the pooler's
//! `[[nodes]]` for a testkit cluster, and the tuned health settings.

use std::time::{Duration, Instant};

/// Health settings that detect a dead primary in about 0.3 s: a check every
/// 200 ms, one retry 100 ms later.
pub const TUNED_HEALTH: &str = "period = \"200ms\"\nmax_retries = 1\nretry_delay = \"100ms\"";

/// The shipped example script `examples/failover/<name>` with `args`, as a
/// shell command with the environment it needs: the PostgreSQL binaries
/// (`PGBIN=bin`), and the data directories' owner (`PG_OS_USER`) when this
/// process runs as root.
pub fn example_script(bin: &str, name: &str, args: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/failover");
    let os_user = pooler_testkit::server_os_user().map(|(u, _, _)| format!("PG_OS_USER={u} ")).unwrap_or_default();
    format!("PGBIN={bin} {os_user}sh {dir}/{name} {args}")
}

/// The pooler's `[[nodes]]` tables for every node of `cluster` (primary
/// first, so node 0 is the primary), with their data directories for the
/// failover commands' `%D`.
pub fn nodes_toml(cluster: &pooler_testkit::Cluster) -> String {
    cluster
        .nodes()
        .map(|n| {
            format!("[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\ndata_dir = \"{}\"\n", n.port(), n.data_dir().display())
        })
        .collect()
}

/// The `[failover]` hook lines running the shipped `pg_failover.sh`
/// (`pg_ctl promote`) and `pg_follow_primary.sh` (re-point, else pg_rewind).
pub fn example_hooks_toml(cluster: &pooler_testkit::Cluster) -> String {
    let bin = cluster.bin_dir().display().to_string();
    let promote = example_script(&bin, "pg_failover.sh", "%d %h %p %D %m %H %r %R");
    let follow = example_script(&bin, "pg_follow_primary.sh", "%d %h %p %D %m %H %r");
    format!("command = \"{promote}\"\nfollow_primary_command = \"{follow}\"\n")
}

/// Runs `sh -c command` to completion, killing it after `timeout`; its
/// standard output, or an error with everything it printed.
pub fn run_shell(command: &str, timeout: Duration) -> Result<String, String> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let (out_path, err_path) = (
        dir.join(format!("pooler-benches-{}-{nanos}.out", std::process::id())),
        dir.join(format!("pooler-benches-{}-{nanos}.err", std::process::id())),
    );
    let result = (|| {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out_path).map_err(|e| e.to_string())?)
            .stderr(std::fs::File::create(&err_path).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run sh -c {command}: {e}"))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(format!("{command} failed ({s}):\n{out}{err}")),
            None => Err(format!("{command} did not finish within {} s:\n{out}{err}", timeout.as_secs())),
        }
    })();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    result
}
