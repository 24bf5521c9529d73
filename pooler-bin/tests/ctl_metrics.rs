//! End-to-end: `pooler ctl` against a running binary, and the binary's
//! Prometheus endpoint (`/metrics` under load, `/health`).

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pooler_testkit::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pooler");

/// The pooler process and its temp dir; killed and removed on drop.
struct Running {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(cluster: &Cluster, port: u16, metrics_port: u16) -> Running {
    let dir = std::env::temp_dir().join(format!("pooler-ctl-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nlog_connections = false\n[pool]\nmode = \"transaction\"\n\
         [auth]\nmethod = \"trust\"\n[admin]\nadmin_users = [\"ops\"]\nstats_users = [\"grafana\"]\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
        cluster.primary().port()
    );
    let path = dir.join("pooler.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = Running { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(Instant::now() < deadline, "the pooler did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

fn ctl(port: u16, user: &str, args: &[&str]) -> Output {
    let port = port.to_string();
    Command::new(BIN).args(["ctl", "--port", &port, "--user", user]).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "ctl failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// GET `path` on the metrics endpoint: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// The value of the first sample of `series` whose line contains `filter`.
fn sample(body: &str, series: &str, filter: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| (l.starts_with(&format!("{series} ")) || l.starts_with(&format!("{series}{{"))) && l.contains(filter))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn psql(cluster: &Cluster, port: u16, sql: &str) {
    let out = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn ctl_shows_tables_and_json_runs_actions_and_metrics_change_under_load() {
    let cluster = Cluster::builder().start().expect("start PostgreSQL");
    let port = pooler_testkit::free_port().unwrap();
    let metrics_port = pooler_testkit::free_port().unwrap();
    let _pooler = start(&cluster, port, metrics_port);

    // /health: the listener is up and the (single) primary is known.
    let (code, body) = get(metrics_port, "/health");
    assert_eq!((code, body.trim()), (200, "ok"));
    assert_eq!(get(metrics_port, "/nothing").0, 404);

    let (_, before) = get(metrics_port, "/metrics");
    psql(&cluster, port, "SELECT 1");
    let table = stdout(&ctl(port, "grafana", &["show", "pools"]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').map(str::trim).collect();
    assert_eq!(&header[..4], ["database", "user", "cl_active", "cl_waiting"], "{table}");
    assert!(table.contains("postgres"), "{table}");

    let json = stdout(&ctl(port, "grafana", &["--json", "show", "databases"]));
    assert!(json.starts_with("[{\"name\":"), "{json}");
    assert!(json.contains("\"disabled\":\"0\""), "{json}");
    let json = stdout(&ctl(port, "grafana", &["show", "nodes", "--json"]));
    assert!(json.contains("\"status\":\"up\"") && json.contains("\"role\":\"primary\""), "{json}");

    // Load: the counters and gauges move.
    for _ in 0..20 {
        psql(&cluster, port, "SELECT 1; SELECT 2");
    }
    let (code, after) = get(metrics_port, "/metrics");
    assert_eq!(code, 200);
    for series in [
        "pooler_client_connections_total",
        "pooler_checkouts_total",
        "pooler_checkout_wait_seconds_bucket",
        "pooler_query_duration_seconds_bucket",
        "pooler_transaction_duration_seconds_bucket",
        "pooler_pool_servers_idle",
        "pooler_pool_clients_waiting",
        "pooler_node_up",
        "pooler_node_primary",
        "pooler_node_lag_bytes",
        "pooler_node_status",
    ] {
        assert!(after.lines().any(|l| l.starts_with(series)), "{series} missing from /metrics:\n{after}");
    }
    let checkouts = |body: &str| sample(body, "pooler_checkouts_total", "").unwrap_or(0.0);
    assert!(checkouts(&after) >= checkouts(&before) + 20.0, "checkouts moved with the load");
    assert_eq!(sample(&after, "pooler_node_up", "node=\"0\""), Some(1.0));
    let assignments = sample(&after, "pooler_pool_server_assignments", "database=\"postgres\"").unwrap();
    assert!(assignments >= 20.0, "{assignments}");
    // The SHOW STATS figures, as counters: 20 Queries, 20 transactions.
    let transactions = sample(&after, "pooler_pool_transactions_total", "database=\"postgres\"").unwrap_or(0.0);
    assert!(transactions >= 20.0, "{transactions}");
    let sent = sample(&after, "pooler_pool_sent_bytes_total", "database=\"postgres\"").unwrap_or(0.0);
    assert!(sent > 0.0, "{sent}");
    // With the endpoint on, requests and transactions are timed.
    let timed = sample(&after, "pooler_transaction_duration_seconds_count", "").unwrap_or(0.0);
    assert!(timed >= 20.0, "transactions timed: {timed}");

    // Actions: a stats user is refused, an admin is obeyed.
    let refused = ctl(port, "grafana", &["disable", "postgres"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("42501"), "{:?}", refused);
    assert_eq!(stdout(&ctl(port, "ops", &["disable", "postgres"])).trim(), "OK");
    let refused_login = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!refused_login.status.success(), "disabled database refuses logins");
    assert_eq!(stdout(&ctl(port, "ops", &["--json", "enable", "postgres"])).trim(), "{\"ok\":true}");
    psql(&cluster, port, "SELECT 1");
    let (_, body) = get(metrics_port, "/metrics");
    assert_eq!(sample(&body, "pooler_logins_refused_total", "reason=\"disabled\""), Some(1.0));
    // PAUSE and RESUME through ctl; a client works again after RESUME.
    assert_eq!(stdout(&ctl(port, "ops", &["pause", "postgres"])).trim(), "OK");
    assert_eq!(stdout(&ctl(port, "ops", &["resume", "postgres"])).trim(), "OK");
    psql(&cluster, port, "SELECT 1");
}

#[test]
fn ctl_shutdown_stops_the_binary() {
    let cluster = Cluster::builder().start().expect("start PostgreSQL");
    let port = pooler_testkit::free_port().unwrap();
    let metrics_port = pooler_testkit::free_port().unwrap();
    let mut pooler = start(&cluster, port, metrics_port);
    assert_eq!(stdout(&ctl(port, "ops", &["shutdown"])).trim(), "OK");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = pooler.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the pooler did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut logs = String::new();
    pooler.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    let line = logs.lines().find(|l| l.contains("admin: SHUTDOWN")).unwrap_or_else(|| panic!("{logs}"));
    assert!(line.starts_with('{') && line.contains("\"actor\":\"ops\""), "a JSON line with the actor: {line}");
}
