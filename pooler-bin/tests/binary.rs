//! End-to-end tests of the `pooler` binary as a user runs it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pooler_testkit::Cluster;

mod common;
use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_pooler");

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("pooler.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// The pooler process; killed on drop if still running.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(config: &Path, port: u16) -> Running {
        Running::start_logging(config, port, "warn")
    }

    /// Like [`Running::start`], logging at `level` (to the piped stderr).
    fn start_logging(config: &Path, port: u16, level: &str) -> Running {
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pooler");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pooler did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Running { child }
    }

    /// Peak resident set size of the pooler process (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Stops the pooler with SIGTERM and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        self.signal("TERM");
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        assert!(self.child.wait().unwrap().success(), "{stderr}");
        stderr
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }
}

fn config_for(cluster: &Cluster, port: u16, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"5s\"\n{extra}\n[auth]\nmethod = \"trust\"\n\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
        cluster.primary().port()
    )
}

/// psql through the pooler as postgres; panics with psql's stderr on failure.
fn psql(port: u16, sql: &str) -> String {
    pooler_testkit::psql_at(port, "postgres", "postgres", sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
}

/// Runs psql through the pooler and reads its output as it comes, returning
/// the bytes and the lines received (so the test itself holds no result).
fn stream_psql(cluster: &Cluster, port: u16, extra: &[&str], sql: &str) -> (usize, usize) {
    let mut child = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(extra)
        .arg("-c")
        .arg(sql)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut bytes, mut lines) = (0usize, 0usize);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes += n;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    assert!(child.wait().unwrap().success(), "psql failed on {sql}");
    (bytes, lines)
}

#[test]
fn invalid_config_fails_at_start_naming_the_key() {
    let dir = TempDir::new("badconf");
    let path = write_config(&dir, "[pool]\nsize = 0\n[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\n");
    let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pool.size") && err.contains("at least 1"), "{err}");

    let path = write_config(&dir, "[pool]\nmode = \"sessoin\"\n[[nodes]]\nhost = \"h\"\n");
    let out = Command::new(BIN).arg("check").arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode") && err.contains("sessoin"), "{err}");

    let out = Command::new(BIN).arg("--config").arg(dir.join("missing.toml")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn check_refuses_a_password_file_that_start_would_refuse_naming_the_file() {
    let dir = TempDir::new("check-passfile");
    let path = write_config(
        &dir,
        "[server]\nlisten = \"127.0.0.1:1\"\n[auth]\nmethod = \"md5\"\npassword_file = \"users.txt\"\n\
         [[nodes]]\nhost = \"127.0.0.1\"\nport = 1\n",
    );
    let passfile = dir.join("users.txt");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--config").arg(&path).env("RUST_LOG", "warn").output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let refused = |what: &str, needle: &str| {
        // `check` and a start fail alike, naming the file and what is wrong.
        for args in [&["check"][..], &[][..]] {
            let (ok, stdout, stderr) = run(args);
            assert!(!ok, "{what}: {args:?} succeeded: {stdout}");
            let line = stderr.lines().find(|l| l.contains(&passfile.display().to_string()));
            assert!(line.is_some_and(|l| l.contains(needle)), "{what}: {args:?}: {stderr}");
        }
    };
    refused("missing", "cannot read");
    std::fs::create_dir(&passfile).unwrap();
    refused("a directory", "cannot read");
    std::fs::remove_dir(&passfile).unwrap();
    std::fs::write(&passfile, "alice:secret\n\"carol\" \"unterminated\n").unwrap();
    refused("malformed", "line 2: unterminated quoted string");
    std::fs::write(&passfile, "alice:secret\nbob:md5zzzz\n").unwrap();
    refused("malformed md5", "line 2: md5 secret must be");

    std::fs::write(&passfile, "alice:secret\n").unwrap();
    let (ok, stdout, stderr) = run(&["check"]);
    assert!(ok && stdout.contains("OK"), "{stdout}{stderr}");
}

/// A pooler configuration listening on `port` that logs clients in with trust;
/// its node is never reached by the tests that use it.
fn config_without_server(port: u16, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n[auth]\nmethod = \"trust\"\n\
         [[nodes]]\nhost = \"127.0.0.1\"\nport = 1\n"
    )
}

#[test]
fn logs_written_to_a_pipe_have_no_ansi_escapes() {
    let dir = TempDir::new("ansi");
    let port = pooler_testkit::free_port().unwrap();
    let running = Running::start_logging(&write_config(&dir, &config_without_server(port, "")), port, "info");
    let stderr = running.stop();
    assert!(stderr.contains("listening"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "ANSI escapes in a log written to a pipe: {stderr:?}");
}

#[test]
fn startup_packet_timeouts_are_logged_like_other_disconnections() {
    for log_connections in [true, false] {
        let dir = TempDir::new("timeout-log");
        let port = pooler_testkit::free_port().unwrap();
        let extra = format!("client_login_timeout = \"200ms\"\nlog_connections = {log_connections}");
        let running = Running::start_logging(&write_config(&dir, &config_without_server(port, &extra)), port, "info");
        // A client that connects and sends nothing is closed after the timeout.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("closed by the pooler in time");
        let stderr = running.stop();
        let logged = stderr.lines().any(|l| {
            l.contains(" INFO ") && l.contains("client disconnected") && l.contains("timeout") && l.contains("startup")
        });
        assert_eq!(logged, log_connections, "log_connections = {log_connections}:\n{stderr}");
    }
}

#[test]
fn large_results_and_huge_rows_stream_through_without_growing_pooler_memory() {
    let cluster = Cluster::builder().start().unwrap();
    let dir = TempDir::new("large");
    let port = pooler_testkit::free_port().unwrap();
    let running = Running::start(&write_config(&dir, &config_for(&cluster, port, "")), port);
    // Warm up, then note the pooler's peak memory before the big result.
    psql(port, "SELECT 1");
    let before = running.peak_rss_kib();

    // 120 MB through COPY TO STDOUT (psql streams it to us).
    let sql = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 120000)) TO STDOUT";
    assert_eq!(stream_psql(&cluster, port, &[], sql).0, 120_000 * 1001);

    // 110 MB as ordinary rows (DataRow messages), fetched by psql in batches.
    let sql = "SELECT repeat('y', 1000) FROM generate_series(1, 110000)";
    let (_, rows) = stream_psql(&cluster, port, &["-A", "-t", "-v", "FETCH_COUNT=1000"], sql);
    assert!(rows >= 110_000, "{rows} rows");

    // One single 100 MB message (a COPY row): streamed, never held whole.
    let sql = "COPY (SELECT repeat('z', 100000000)) TO STDOUT";
    assert_eq!(stream_psql(&cluster, port, &[], sql).0, 100_000_001);

    let after = running.peak_rss_kib();
    // The pooler relayed 330 MB, one message of it 100 MB; its peak memory grew
    // by far less than any one of them.
    assert!(after - before < 16 * 1024, "peak RSS grew from {before} KiB to {after} KiB");
}

#[test]
fn sighup_is_survived_and_sigterm_stops_the_binary_gracefully() {
    let cluster = Cluster::builder().start().unwrap();
    let dir = TempDir::new("sigterm");
    let port = pooler_testkit::free_port().unwrap();
    let mut running = Running::start(&write_config(&dir, &config_for(&cluster, port, "")), port);
    psql(port, "SELECT 1");
    // SIGHUP (a reload habit from pgbouncer) must not kill it.
    running.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert!(running.child.try_wait().unwrap().is_none(), "SIGHUP stopped the pooler");
    psql(port, "SELECT 1");
    running.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "pooler did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_serves_psql_and_cleans_up_on_ctrl_c() {
    let port = pooler_testkit::free_port().unwrap();
    let (mut child, data_dir, rest_of_output) = start_demo(port);
    let out = Command::new(pooler_testkit::pg_bin_dir().unwrap().join("psql"))
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "postgres", "-c"])
        .arg("SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_replication)")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The pooler serves the primary, which streams to one standby.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f|1");

    let ok = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(ok.success());
    assert!(child.wait().unwrap().success());
    let stdout = rest_of_output.join().unwrap();
    assert!(stdout.contains(&format!("psql -h 127.0.0.1 -p {port} -U postgres postgres")), "{stdout}");
    assert!(!data_dir.exists(), "{} is removed", data_dir.display());
}

/// Starts `pooler demo` and returns it once it listens, with the data dir it
/// printed and a thread collecting the rest of its output (joined after exit).
fn start_demo(port: u16) -> (std::process::Child, PathBuf, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["demo", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = loop {
        let line = lines.next().expect("the demo prints its data directory").unwrap();
        if let Some(d) = line.strip_prefix("data in  ") {
            break PathBuf::from(d.trim());
        }
    };
    // Keep draining stdout so the demo never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "demo did not start listening");
        assert!(child.try_wait().unwrap().is_none(), "demo exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, dir, rest)
}

#[test]
fn clusters_of_killed_processes_are_reaped_by_the_next_start() {
    // A demo killed with SIGKILL cannot clean up: its cluster keeps running.
    let (mut first, orphan, _) = start_demo(pooler_testkit::free_port().unwrap());
    let postmaster: u32 = std::fs::read_to_string(orphan.join("primary/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(orphan.exists());
    // The next cluster started by another process stops and removes it.
    let (mut second, _, _) = start_demo(pooler_testkit::free_port().unwrap());
    assert!(!orphan.exists(), "{} reaped", orphan.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{postmaster}")).exists() {
        // A stopped postmaster may linger as a zombie of its (dead) parent for
        // a moment; wait for it to disappear.
        let state = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
        if state.contains(") Z") {
            break;
        }
        assert!(Instant::now() < deadline, "orphaned postmaster {postmaster} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").arg("-INT").arg(second.id().to_string()).status();
    assert!(second.wait().unwrap().success());
}

#[test]
fn sighup_rereads_the_hba_file_and_a_broken_one_leaves_the_rules_in_force() {
    let cluster = Cluster::builder().start().unwrap();
    let dir = TempDir::new("sighup-hba");
    let port = pooler_testkit::free_port().unwrap();
    let hba = dir.join("hba.conf");
    std::fs::write(&hba, "host all all 127.0.0.1/32 trust\n").unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"5s\"\n[auth]\nmethod = \"trust\"\nhba_file = \"{}\"\n\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
        hba.display(),
        cluster.primary().port()
    );
    let mut running = Running::start(&write_config(&dir, &config), port);
    psql(port, "SELECT 1");
    // A broken file is refused on SIGHUP: the rules in force stay.
    std::fs::write(&hba, "host all all 127.0.0.1/32 bogus\n").unwrap();
    running.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.child.try_wait().unwrap().is_none(), "SIGHUP with a broken hba file stopped the pooler");
    psql(port, "SELECT 1");
    // A valid one takes effect for new logins.
    std::fs::write(&hba, "host all all 127.0.0.1/32 reject\n").unwrap();
    running.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match pooler_testkit::psql_at(port, "postgres", "postgres", "SELECT 1") {
            Err(e) if e.to_string().contains("pg_hba.conf rejects connection") => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(refused, "after SIGHUP the reject rule applies to new logins");
    running.signal("TERM");
}

#[test]
fn sighup_reloads_the_configuration_file_and_a_broken_one_changes_nothing() {
    let cluster = Cluster::builder().start().unwrap();
    let dir = TempDir::new("sighup-config");
    let port = pooler_testkit::free_port().unwrap();
    let with_size = |size: usize| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"5s\"\n[auth]\nmethod = \"trust\"\n\
             [admin]\nadmin_users = [\"postgres\"]\n[pool]\nsize = {size}\n\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
            cluster.primary().port()
        )
    };
    let path = write_config(&dir, &with_size(7));
    let mut running = Running::start(&path, port);
    let size_now = || {
        let out = pooler_testkit::psql_at(port, "postgres", "pooler", "SHOW DATABASES").unwrap();
        // The first data row is the console's; find the pooled database's.
        out.lines().find(|l| l.starts_with("postgres|")).map(|l| l.split('|').nth(5).unwrap_or("").to_string())
    };
    psql(port, "SELECT 1");
    assert_eq!(size_now().as_deref(), Some("7"));
    std::fs::write(&path, with_size(3)).unwrap();
    running.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while size_now().as_deref() != Some("3") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(size_now().as_deref(), Some("3"), "SIGHUP applied the new pool size");
    // A broken file: logged, nothing changes, the pooler keeps serving.
    std::fs::write(&path, "[pool]\nsize = \"lots\"\n").unwrap();
    running.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.child.try_wait().unwrap().is_none(), "a broken file stopped the pooler");
    assert_eq!(size_now().as_deref(), Some("3"));
    psql(port, "SELECT 1");
    running.signal("TERM");
}
