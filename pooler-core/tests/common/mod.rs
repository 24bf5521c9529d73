//! Shared pieces of the end-to-end tests: a real cluster, an in-process pooler
//! in front of it, and real clients.
#![allow(dead_code)]

pub mod tls;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pooler_core::config::{AuthMethod, NodeConfig};
use pooler_core::PasswordFile;
use pooler_core::{Config, Pooler};
use pooler_testkit::Cluster;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A pooler serving on a loopback port in this process.
pub struct TestPooler {
    pub addr: SocketAddr,
    pub pooler: std::sync::Arc<Pooler>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestPooler {
    /// Starts `Pooler::run` on a fresh loopback port.
    pub async fn start(config: Config, passwords: Option<PasswordFile>) -> TestPooler {
        TestPooler::start_with(config, passwords, |p| p).await
    }

    /// Like [`TestPooler::start`], with the pooler adjusted by `f` (hooks).
    pub async fn start_with(
        config: Config,
        passwords: Option<PasswordFile>,
        f: impl FnOnce(Pooler) -> Pooler,
    ) -> TestPooler {
        TestPooler::serve(f(Pooler::with_passwords(config, passwords).expect("valid config"))).await
    }

    /// Like [`TestPooler::start`], for a pooler built with `Pooler::builder`.
    pub async fn start_built(builder: pooler_core::PoolerBuilder) -> TestPooler {
        TestPooler::serve(builder.build().expect("valid config")).await
    }

    /// Runs `pooler` on a fresh loopback port, once its first health checks are in.
    async fn serve(pooler: Pooler) -> TestPooler {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        TestPooler::serve_on(pooler, listener.into()).await
    }

    /// Runs `pooler` on `listeners` (which must include TCP: `addr` is its
    /// address), once its first health checks are in.
    pub async fn serve_on(pooler: Pooler, listener: pooler_core::Listeners) -> TestPooler {
        let addr = listener.tcp_addr().expect("a TCP listener");
        let pooler = std::sync::Arc::new(pooler);
        let (tx, rx) = oneshot::channel::<()>();
        let p = pooler.clone();
        let task = tokio::spawn(async move {
            p.run(listener, async {
                let _ = rx.await;
            })
            .await
        });
        // Standbys serve reads only once a health check has seen them: wait
        // for the first round, so tests start from a checked cluster.
        let p = pooler.clone();
        eventually(Duration::from_secs(10), || {
            p.cluster().nodes.iter().all(|n| n.status != pooler_core::Status::Waiting)
        })
        .await;
        TestPooler { addr, pooler, stop: Some(tx), task: Some(task) }
    }

    /// Asks for a graceful shutdown and returns the task that completes when it
    /// is done.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("shutdown called twice")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A tokio-postgres config pointing at the pooler.
    pub fn pg_config(&self, user: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port()).user(user).dbname(db).connect_timeout(Duration::from_secs(10));
        c
    }

    /// Connects with tokio-postgres as `user` (no password) to database postgres.
    pub async fn connect(&self, user: &str) -> tokio_postgres::Client {
        connect_with(self.pg_config(user, "postgres")).await.expect("connect through the pooler")
    }
}

impl Drop for TestPooler {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Connects and spawns the connection task.
pub async fn connect_with(config: tokio_postgres::Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A cluster with just a primary (started on a blocking thread).
pub async fn primary_only() -> Cluster {
    tokio::task::spawn_blocking(|| Cluster::builder().start().expect("start PostgreSQL")).await.expect("cluster task")
}

/// A configuration for `cluster` with trust authentication towards clients.
pub fn trust_config(cluster: &Cluster) -> Config {
    let nodes = cluster.nodes().map(|n| NodeConfig::new(n.host(), n.port())).collect();
    let mut c = Config::with_nodes(nodes);
    c.auth.method = AuthMethod::Trust;
    c.server.log_connections = false;
    c
}

/// Runs a client binary (psql, pgbench) from the cluster's bin dir.
pub fn run_client(cluster: &Cluster, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(cluster.bin_dir().join(program));
    cmd.args(args)
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait for client")
}

/// psql through the pooler; panics with its stderr on failure.
pub fn psql(port: u16, user: &str, sql: &str) -> String {
    pooler_testkit::psql_at(port, user, "postgres", sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Like [`eventually`], for a condition that must await.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

/// SQLSTATE of a tokio-postgres error, if the server (or pooler) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// The server's (or pooler's) message of a tokio-postgres error, else its text.
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string())
}

/// A raw client socket logged in (trust) as postgres, after its first
/// ReadyForQuery: for tests that must control every byte or vanish abruptly.
pub async fn raw_login(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the pooler");
    let mut startup = bytes::BytesMut::new();
    pooler_core::internals::write::startup_message(&mut startup, 0, &[("user", "postgres"), ("database", "postgres")]);
    s.write_all(&startup).await.expect("send startup");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("login in time")
            .expect("read");
        assert!(n > 0, "closed during login");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// One protocol message: tag, length, body.
pub fn message_bytes(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// True when `sql`, run directly on the server at `port`, prints `expected`.
pub fn server_says(port: u16, sql: &str, expected: &str) -> bool {
    pooler_testkit::psql_at(port, "postgres", "postgres", sql).map(|s| s.trim() == expected).unwrap_or(false)
}

/// Waits until the server at `port` has no session idle in a transaction.
pub async fn no_open_transactions(port: u16) -> bool {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'";
    eventually(Duration::from_secs(10), || server_says(port, sql, "0")).await
}

/// psql through the pooler at `port` with `args` after the connection options.
pub fn psql_through(cluster: &pooler_testkit::Cluster, port: u16, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres"];
    all.extend_from_slice(args);
    run_client(cluster, "psql", &all, stdin)
}

/// Reads from `s` until what arrived contains `pattern` (10 s at most per read).
pub async fn read_until(s: &mut tokio::net::TcpStream, pattern: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(pattern.len()).any(|w| w == pattern) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before {pattern:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A primary with `standbys` streaming standbys, an `items` table and a
/// sequence `seq`, replication caught up (started on a blocking thread).
pub async fn replicated(standbys: usize) -> Cluster {
    tokio::task::spawn_blocking(move || {
        let c = Cluster::builder()
            .standbys(standbys)
            .init_sql("CREATE TABLE items (id serial PRIMARY KEY, v int); CREATE SEQUENCE seq;")
            .start()
            .expect("start PostgreSQL");
        c.wait_for_replication(Duration::from_secs(30)).expect("standbys catch up");
        c
    })
    .await
    .expect("cluster task")
}

/// `command`, run as the PostgreSQL server user when the pooler runs as root.
pub fn as_server_user(command: String) -> String {
    match pooler_testkit::server_os_user() {
        Some((user, _, _)) => format!("runuser -u {user} -- {command}"),
        None => command,
    }
}

/// The shipped example script `name` (examples/failover/) with `args`, with
/// the environment it needs here: where the PostgreSQL binaries are, and the
/// OS user that owns the data directories when the tests run as root.
pub fn example_script(cluster: &Cluster, name: &str, args: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/failover");
    let os_user = pooler_testkit::server_os_user().map(|(u, _, _)| format!("PG_OS_USER={u} ")).unwrap_or_default();
    format!("PGBIN={} {os_user}sh {dir}/{name} {args}", cluster.bin_dir().display())
}

/// Deletes everything inside `dir`, keeping the directory (a node that lost
/// its disk; the directory stays owned by the server user).
pub fn wipe_contents(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove a directory");
        } else {
            std::fs::remove_file(&path).expect("remove a file");
        }
    }
}

/// Transaction pooling over every node of `cluster`, data directories known
/// (for `%D` / `%R`), health checks every 100 ms.
pub fn failover_config(cluster: &Cluster) -> Config {
    let nodes = cluster
        .nodes()
        .map(|n| NodeConfig {
            data_dir: Some(n.data_dir().display().to_string()),
            ..NodeConfig::new(n.host(), n.port())
        })
        .collect();
    let mut config = Config::with_nodes(nodes);
    config.auth.method = pooler_core::config::AuthMethod::Trust;
    config.server.log_connections = false;
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.health.period = Duration::from_millis(100);
    config
}

/// Reads the next whole message from `s` (10 s at most), keeping whatever
/// follows it in `pending`: `None` when the connection closed first.
pub async fn read_message(s: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    loop {
        if pending.len() >= 5 {
            let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
            assert!(len >= 4, "bad message length {len}");
            if pending.len() > len {
                let tag = pending[0];
                let body = pending[5..1 + len].to_vec();
                pending.drain(..1 + len);
                return Some((tag, body));
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a message in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Reads messages up to and including the next ReadyForQuery; returns them.
pub async fn read_to_ready(s: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        let m = read_message(s, pending).await.expect("closed before ReadyForQuery");
        let ready = m.0 == b'Z';
        got.push(m);
        if ready {
            return got;
        }
    }
}

/// A raw client socket logged in (trust) as postgres after its first
/// ReadyForQuery, with the BackendKeyData it was given: `(socket, pid, secret)`.
pub async fn raw_login_key(addr: SocketAddr) -> (tokio::net::TcpStream, i32, i32) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the pooler");
    let mut startup = bytes::BytesMut::new();
    pooler_core::internals::write::startup_message(&mut startup, 0, &[("user", "postgres"), ("database", "postgres")]);
    s.write_all(&startup).await.expect("send startup");
    let mut pending = Vec::new();
    let mut key = None;
    for (tag, body) in read_to_ready(&mut s, &mut pending).await {
        match tag {
            b'K' => {
                let k = pooler_core::internals::messages::BackendKeyData::parse(&body).expect("8-byte BackendKeyData");
                key = Some((k.pid, k.secret));
            }
            b'E' => panic!("login failed: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
    assert!(pending.is_empty(), "nothing follows the first ReadyForQuery");
    let (pid, secret) = key.expect("BackendKeyData before ReadyForQuery");
    (s, pid, secret)
}

/// Runs `sql` as a simple Query on a raw socket; returns the messages up to
/// ReadyForQuery.
pub async fn raw_query(s: &mut tokio::net::TcpStream, pending: &mut Vec<u8>, sql: &str) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncWriteExt;
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    s.write_all(&message_bytes(b'Q', &body)).await.expect("send query");
    read_to_ready(s, pending).await
}

/// The first column of the first DataRow among `messages`, as text.
pub fn first_value(messages: &[(u8, Vec<u8>)]) -> Option<String> {
    let (_, row) = messages.iter().find(|(t, _)| *t == b'D')?;
    let len = i32::from_be_bytes(row.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8_lossy(row.get(6..6 + len)?).into_owned())
}

/// A NotificationResponse body: `(pid, channel, payload)`.
pub fn notification(body: &[u8]) -> (i32, String, String) {
    let pid = i32::from_be_bytes(body[..4].try_into().expect("pid"));
    let mut parts = body[4..].split(|&b| b == 0);
    let channel = String::from_utf8_lossy(parts.next().expect("channel")).into_owned();
    let payload = String::from_utf8_lossy(parts.next().expect("payload")).into_owned();
    (pid, channel, payload)
}

/// Sends a CancelRequest with `(pid, secret)` and waits until the pooler
/// has dealt with it (it closes the socket once the cancel is forwarded).
pub async fn send_cancel(addr: SocketAddr, pid: i32, secret: i32) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the pooler");
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&16u32.to_be_bytes());
    pkt.extend_from_slice(&80877102u32.to_be_bytes());
    pkt.extend_from_slice(&pid.to_be_bytes());
    pkt.extend_from_slice(&secret.to_be_bytes());
    s.write_all(&pkt).await.expect("send cancel request");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
}

/// Every message `s` receives until the peer closes (a reset counts as a
/// close), 10 s at most per message.
pub async fn read_until_closed(s: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(m) = read_message(s, pending).await {
        got.push(m);
    }
    assert!(pending.is_empty(), "closed in the middle of a message: {pending:?}");
    got
}

/// Messages as text for assertion output: the tag, and for an
/// ErrorResponse its severity, SQLSTATE and message.
pub fn describe(messages: &[(u8, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .map(|(tag, body)| match tag {
            b'E' | b'N' => {
                let f = pooler_core::internals::messages::ErrorFields::new(body);
                let (s, c, m) = (f.severity(), f.code(), f.message());
                format!("{} {} {} {}", char::from(*tag), s.unwrap_or("?"), c.unwrap_or("?"), m.unwrap_or("?"))
            }
            t => char::from(*t).to_string(),
        })
        .collect()
}

/// The pid of the backend running `pg_sleep` (other than the asker), asked
/// directly on the server at `port`; waits up to 10 s for one.
pub async fn sleeping_backend(port: u16) -> i32 {
    let sql = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid() \
               AND state = 'active'";
    let mut pid = None;
    eventually(Duration::from_secs(10), || {
        pid = pooler_testkit::psql_at(port, "postgres", "postgres", sql).ok().and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .await;
    pid.expect("a backend runs pg_sleep")
}

/// `pg_terminate_backend(pid)` on a direct connection to the server at `port`.
pub fn terminate_backend(port: u16, pid: i32) {
    let sql = format!("SELECT pg_terminate_backend({pid})");
    let r = pooler_testkit::psql_at(port, "postgres", "postgres", &sql).expect("psql");
    assert_eq!(r.trim(), "t", "backend {pid} terminated");
}

/// What a raw client is doing when its backend is terminated
/// (`pg_terminate_backend` from a direct connection), in
/// [`terminated_while`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    /// Nothing: idle after a query.
    Idle,
    /// Running `SELECT pg_sleep(5)`, with `SELECT 1` queued behind it in the same write.
    SleepingWithQueued,
    /// Running `SELECT pg_sleep(5)`, and sending `SELECT 1` once the backend is terminated.
    SleepingThenSending,
    /// The Execute of a named prepared statement (Parse/Bind/Execute/Sync of `pg_sleep(5)`).
    ExecutingNamed,
    /// `SELECT pg_sleep(5)` inside a transaction block (BEGIN answered first).
    SleepingInTransaction,
    /// Idle after `LISTEN`, which pins a transaction-pooled connection.
    IdleAfterListen,
}

/// Logs a raw client in at `addr` (PostgreSQL itself or a pooler in front of
/// the server at `server_port`), has its backend terminated while it is
/// `doing` something, and returns every message it gets after that until the
/// connection closes.
pub async fn terminated_while(addr: SocketAddr, server_port: u16, doing: Doing) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncWriteExt;
    let mut s = raw_login(addr).await;
    let mut pending = Vec::new();
    let query = |sql: &str| message_bytes(b'Q', format!("{sql}\0").as_bytes());
    let pid = match doing {
        Doing::Idle | Doing::IdleAfterListen => {
            if doing == Doing::IdleAfterListen {
                raw_query(&mut s, &mut pending, "LISTEN last_words").await;
            }
            let got = raw_query(&mut s, &mut pending, "SELECT pg_backend_pid()").await;
            first_value(&got).and_then(|v| v.parse().ok()).expect("pg_backend_pid()")
        }
        Doing::SleepingWithQueued => {
            s.write_all(&[query("SELECT pg_sleep(5)"), query("SELECT 1")].concat()).await.unwrap();
            sleeping_backend(server_port).await
        }
        Doing::SleepingThenSending => {
            s.write_all(&query("SELECT pg_sleep(5)")).await.unwrap();
            sleeping_backend(server_port).await
        }
        Doing::ExecutingNamed => {
            let extended = [
                message_bytes(b'P', b"last_words\0SELECT pg_sleep(5)\0\0\0"),
                message_bytes(b'B', b"\0last_words\0\0\0\0\0\0\0"),
                message_bytes(b'E', b"\0\0\0\0\0"),
                message_bytes(b'S', b""),
            ];
            s.write_all(&extended.concat()).await.unwrap();
            sleeping_backend(server_port).await
        }
        Doing::SleepingInTransaction => {
            raw_query(&mut s, &mut pending, "BEGIN").await;
            s.write_all(&query("SELECT pg_sleep(5)")).await.unwrap();
            sleeping_backend(server_port).await
        }
    };
    terminate_backend(server_port, pid);
    if doing == Doing::SleepingThenSending {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The peer may be gone already; what matters is what comes back.
        let _ = s.write_all(&query("SELECT 1")).await;
    }
    read_until_closed(&mut s, &mut pending).await
}

/// A primary and one standby with what pg_rewind needs (full_page_writes,
/// wal_log_hints) and an `items` table, replication caught up.
pub async fn rewindable() -> Cluster {
    tokio::task::spawn_blocking(|| {
        let c = Cluster::builder()
            .standbys(1)
            .setting("full_page_writes", "on")
            .setting("wal_log_hints", "on")
            .init_sql("CREATE TABLE items (id serial PRIMARY KEY, v int);")
            .start()
            .expect("start PostgreSQL");
        c.wait_for_replication(Duration::from_secs(30)).expect("standby catches up");
        c
    })
    .await
    .expect("cluster task")
}

/// Rebuilds node 0 (`old`) as a standby of node 1 (`new`) with the shipped
/// follow script (pg_rewind, then started as a standby), waiting for it to
/// start; its output.
pub fn rebuild_as_standby(cluster: &Cluster, old: &pooler_testkit::Node, new: &pooler_testkit::Node) -> Output {
    let script = example_script(
        cluster,
        "pg_follow_primary.sh",
        &format!("0 127.0.0.1 {} {} 1 127.0.0.1 {}", old.port(), old.data_dir().display(), new.port()),
    );
    let out = tokio::task::block_in_place(|| {
        Command::new("sh").arg("-c").arg(format!("FOLLOW_WAIT=1 {script}")).output().expect("run the follow script")
    });
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// For each of `doings`, the backend is terminated while a client does it,
/// once directly on the server at `server_port` and once through the pooler
/// at `pooler`: the client must get exactly the same bytes (the server's
/// FATAL 57P01 as its last message, nothing of the pooler's).
pub async fn terminations_look_as_direct(pooler: SocketAddr, server_port: u16, doings: &[Doing]) {
    let postgres: SocketAddr = format!("127.0.0.1:{server_port}").parse().expect("address");
    let fatal = "E FATAL 57P01 terminating connection due to administrator command";
    for &doing in doings {
        let direct = terminated_while(postgres, server_port, doing).await;
        let through = terminated_while(pooler, server_port, doing).await;
        assert_eq!(describe(&direct).last().map(String::as_str), Some(fatal), "{doing:?}: PostgreSQL");
        assert_eq!(describe(&through), describe(&direct), "{doing:?}: through the pooler, then directly");
        assert_eq!(through, direct, "{doing:?}: byte for byte");
    }
}
