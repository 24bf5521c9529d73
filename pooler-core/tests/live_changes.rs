//! End-to-end: changing the pooler while it serves, against real
//! PostgreSQL: PAUSE and RESUME with a write load running.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pooler_core::config::PoolMode;

/// Clients writing one row per transaction until told to stop; counts
/// their commits and their errors.
struct WriteLoad {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteLoad {
    async fn start(pooler: &TestPooler, clients: usize, table: &str) -> WriteLoad {
        WriteLoad::holding(pooler, clients, table, 0).await
    }

    /// Each transaction also sleeps `hold_ms` on the server, holding its
    /// connection (the pool is then full).
    async fn holding(pooler: &TestPooler, clients: usize, table: &str, hold_ms: u32) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let client = pooler.connect("postgres").await;
            let (stop, commits, errors) = (stop.clone(), commits.clone(), errors.clone());
            let sql = format!("INSERT INTO {table} (client) VALUES ($1)");
            let hold = format!("SELECT pg_sleep({})", f64::from(hold_ms) / 1000.0);
            tasks.push(tokio::spawn(async move {
                let c = c as i32;
                while !stop.load(Ordering::Relaxed) {
                    let r = async {
                        client.batch_execute("BEGIN").await?;
                        client.execute(&sql, &[&c]).await?;
                        if hold_ms > 0 {
                            client.batch_execute(&hold).await?;
                        }
                        client.batch_execute("COMMIT").await
                    }
                    .await;
                    match r {
                        Ok(()) => {
                            commits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(format!("client {c}: {e} ({:?})", sqlstate(&e)));
                            return;
                        }
                    }
                }
            }));
        }
        WriteLoad { stop, commits, errors, tasks }
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stops the clients and waits for them.
    async fn finish(self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("a client hung").expect("client task");
        }
        let errors = self.errors.lock().unwrap().clone();
        Finished { errors, commits: self.commits.load(Ordering::Relaxed) }
    }
}

/// What a [`WriteLoad`] saw.
struct Finished {
    errors: Vec<String>,
    commits: u64,
}

/// `f`, or a panic after 30 s (a hang fails the test instead of CI).
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("hung for 30 s")
}

/// Sessions on the server other than the one asking.
fn server_sessions(port: u16) -> i64 {
    pooler_testkit::psql_at(
        port,
        "postgres",
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .expect("ask the server")
    .trim()
    .parse()
    .expect("a count")
}

fn rows(port: u16, table: &str) -> i64 {
    pooler_testkit::psql_at(port, "postgres", "postgres", &format!("SELECT count(*) FROM {table}"))
        .expect("count rows")
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_transactions_closes_server_connections_and_resume_lets_them_run_with_no_client_error() {
    let cluster = primary_only().await;
    let port = cluster.primary().port();
    cluster.primary().psql("postgres", "CREATE TABLE paused_writes (client int)").unwrap();
    let mut config = trust_config(&cluster);
    config.admin.admin_users = vec!["ops".into()];
    config.pool.mode = PoolMode::Transaction;
    config.pool.size = 4;
    let pooler = TestPooler::start(config, None).await;
    let load = WriteLoad::start(&pooler, 16, "paused_writes").await;
    assert!(eventually(Duration::from_secs(10), || load.commits() > 200).await, "the load runs");

    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    within(ops.simple_query("PAUSE postgres")).await.expect("PAUSE");
    // Paused: every transaction that ran has ended, none starts, and the
    // server connections are closed.
    let (held, commits) = (rows(port, "paused_writes"), load.commits());
    assert_eq!(server_sessions(port), 0, "PAUSE closed the server connections");
    let dbs = ops.query("SHOW DATABASES", &[]).await.unwrap();
    let row = dbs.iter().find(|r| r.get::<_, &str>("name") == "postgres").unwrap();
    assert_eq!(row.get::<_, i64>("paused"), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rows(port, "paused_writes"), held, "nothing was written while paused");
    assert_eq!(load.commits(), commits, "no transaction completed while paused");
    assert_eq!(server_sessions(port), 0, "no connection was opened while paused");

    ops.simple_query("RESUME postgres").await.expect("RESUME");
    assert!(eventually(Duration::from_secs(10), || load.commits() > commits + 200).await, "the load goes on");
    let load = load.finish().await;
    assert!(load.errors.is_empty(), "no client saw an error: {:?}", load.errors);
    assert_eq!(rows(port, "paused_writes") as u64, load.commits, "every acknowledged commit is there, once");
    let e = ops.simple_query("RESUME").await.expect_err("nothing is paused");
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_an_open_transaction_to_end_and_new_clients_wait_connected_until_resume() {
    let cluster = primary_only().await;
    cluster.primary().psql("postgres", "CREATE TABLE pause_open (n int)").unwrap();
    let mut config = trust_config(&cluster);
    config.admin.admin_users = vec!["ops".into()];
    config.pool.mode = PoolMode::Transaction;
    let pooler = TestPooler::start(config, None).await;
    let app = pooler.connect("postgres").await;
    app.batch_execute("BEGIN; INSERT INTO pause_open VALUES (1)").await.unwrap();

    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    let pause = tokio::spawn(async move {
        within(ops.simple_query("PAUSE")).await.expect("PAUSE");
        ops
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!pause.is_finished(), "PAUSE waits for the open transaction");
    // The transaction in progress is not held: it runs to its end.
    app.batch_execute("INSERT INTO pause_open VALUES (2); COMMIT").await.expect("the open transaction finishes");
    let ops = tokio::time::timeout(Duration::from_secs(5), pause).await.expect("PAUSE returns").unwrap();
    let state = ops.query("SHOW STATE", &[]).await.unwrap();
    assert!(state.iter().any(|r| r.get::<_, &str>("key") == "paused" && r.get::<_, &str>("value") == "yes"));

    // A new client logs in and its query waits, connected.
    let late = pooler.connect("postgres").await;
    let waiting = tokio::spawn(async move { late.query_one("SELECT count(*) FROM pause_open", &[]).await });
    let next = tokio::spawn(async move { app.query_one("SELECT 1", &[]).await.map(|_| app) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiting.is_finished() && !next.is_finished(), "queries wait while paused");
    ops.simple_query("RESUME").await.expect("RESUME");
    let n: i64 = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap().get(0);
    assert_eq!(n, 2);
    tokio::time::timeout(Duration::from_secs(5), next).await.unwrap().unwrap().expect("the old client goes on");
}

/// A configuration file for `cluster`'s nodes (weights as given), trust
/// authentication, `ops` as the admin, with `extra` TOML appended.
fn config_text(cluster: &pooler_testkit::Cluster, weights: &[f64], extra: &str) -> String {
    let nodes: Vec<_> = cluster.nodes().zip(weights.iter().copied().chain(std::iter::repeat(1.0))).collect();
    config_of(&nodes, extra)
}

/// [`config_text`] for these nodes, with these weights.
fn config_of(nodes: &[(&pooler_testkit::Node, f64)], extra: &str) -> String {
    let mut t = String::from(
        "[server]\nlog_connections = false\n[auth]\nmethod = \"trust\"\n[admin]\nadmin_users = [\"ops\"]\n\
         [health]\nperiod = \"100ms\"\n",
    );
    t.push_str(extra);
    for (n, w) in nodes {
        t.push_str(&format!("\n[[nodes]]\nhost = \"{}\"\nport = {}\nweight = {w}\n", n.host(), n.port()));
    }
    t
}

/// A pooler built from the file `text` is written to, which RELOAD reads again.
async fn from_file(path: &std::path::Path, text: &str) -> TestPooler {
    std::fs::write(path, text).unwrap();
    let config = pooler_core::Config::load(path).expect("valid configuration");
    TestPooler::start_built(pooler_core::Pooler::builder(config).config_file(path)).await
}

/// `RELOAD` on the console.
async fn reload(ops: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    ops.simple_query("RELOAD").await.map(|_| ())
}

/// Removes a test's directory when the test ends.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory of its own for a test's files.
fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pooler-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pool's size as SHOW POOLS... reports it through SHOW DATABASES.
async fn pool_size(ops: &tokio_postgres::Client) -> i64 {
    let dbs = ops.query("SHOW DATABASES", &[]).await.unwrap();
    dbs.iter().find(|r| r.get::<_, &str>("name") == "postgres").map(|r| r.get::<_, i64>("pool_size")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_grows_and_shrinks_a_pool_under_load_without_a_client_error() {
    let cluster = primary_only().await;
    let port = cluster.primary().port();
    cluster.primary().psql("postgres", "CREATE TABLE resized (client int)").unwrap();
    let dir = tempdir("reload-size");
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("pooler.toml");
    let text = |size: usize| config_text(&cluster, &[], &format!("[pool]\nmode = \"transaction\"\nsize = {size}\n"));
    let pooler = from_file(&path, &text(2)).await;
    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    // Each transaction holds its connection a while, so the pool is full.
    let load = WriteLoad::holding(&pooler, 12, "resized", 50).await;
    assert!(eventually(Duration::from_secs(10), || server_sessions(port) == 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server_sessions(port), 2, "never more than the pool size");

    std::fs::write(&path, text(6)).unwrap();
    reload(&ops).await.expect("RELOAD");
    assert_eq!(pool_size(&ops).await, 6);
    assert!(eventually(Duration::from_secs(10), || server_sessions(port) == 6).await, "the pool grew at once");

    std::fs::write(&path, text(3)).unwrap();
    reload(&ops).await.expect("RELOAD");
    assert!(
        eventually(Duration::from_secs(10), || server_sessions(port) <= 3).await,
        "the pool shrank as connections came back"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server_sessions(port) <= 3, "and stays within its new size");
    let load = load.finish().await;
    assert!(load.errors.is_empty(), "no client saw an error: {:?}", load.errors);
    assert!(load.commits > 20, "the load ran: {}", load.commits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_an_invalid_file_changes_nothing_and_reports_what_needs_a_restart() {
    let cluster = primary_only().await;
    let dir = tempdir("reload-invalid");
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("pooler.toml");
    let text = config_text(&cluster, &[], "[pool]\nmode = \"transaction\"\nsize = 4\n");
    let pooler = from_file(&path, &text).await;
    let app = pooler.connect("postgres").await;
    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");

    for broken in [
        text.replace("size = 4", "size = \"many\""),
        text.replace("[pool]", "[pool]\nno_such_setting = 1"),
        text.replace("method = \"trust\"", "method = \"trust\"\nhba_file = \"/nonexistent/hba.conf\""),
    ] {
        std::fs::write(&path, &broken).unwrap();
        let e = reload(&ops).await.expect_err("an invalid file is refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("F0000"), "{e}");
        assert!(message(&e).contains("in force stays"), "{}", message(&e));
        assert_eq!(pool_size(&ops).await, 4, "nothing changed");
        app.simple_query("SELECT 1").await.expect("clients go on");
    }

    // A listen address cannot move while the pooler runs: reported, and the
    // rest of the file still applies.
    let moved = text.replace("log_connections = false", "log_connections = false\nlisten = \"127.0.0.1:1\"");
    std::fs::write(&path, moved.replace("size = 4", "size = 5")).unwrap();
    let notices = notices_of(&cluster, &pooler, "RELOAD").await;
    assert!(
        notices.contains("pool.size") && notices.contains("need a restart") && notices.contains("server.listen"),
        "{notices}"
    );
    assert_eq!(pool_size(&ops).await, 5);
    let config = pooler.pooler.config();
    assert_ne!(config.server.listen, "127.0.0.1:1", "the address in force is still the old one");
    connect_with(pooler.pg_config("postgres", "postgres")).await.expect("new clients still come in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reweights_the_nodes_and_a_newly_listed_write_function_goes_to_the_primary_even_when_prepared_before() {
    let cluster = replicated(1).await;
    cluster
        .primary()
        .psql(
            "postgres",
            "CREATE FUNCTION where_am_i() RETURNS boolean LANGUAGE sql STABLE AS 'SELECT pg_is_in_recovery()'",
        )
        .unwrap();
    cluster.wait_for_replication(Duration::from_secs(10)).unwrap();
    let dir = tempdir("reload-routing");
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("pooler.toml");
    let routing = |list: &str| {
        format!("[pool]\nmode = \"transaction\"\n[routing]\nload_balance = true\nwrite_functions = [{list}]\n")
    };
    // All reads on the primary at first.
    let pooler = from_file(&path, &config_text(&cluster, &[1.0, 0.0], &routing(""))).await;
    let app = pooler.connect("postgres").await;
    let prepared = app.prepare("SELECT where_am_i()").await.unwrap();
    let on_standby = |rows: Vec<bool>| rows.iter().filter(|&&b| b).count();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(app.query_one(&prepared, &[]).await.unwrap().get::<_, bool>(0));
    }
    assert_eq!(on_standby(seen), 0, "weight 0: no read on the standby");

    // Re-weighted: reads go to the standby.
    std::fs::write(&path, config_text(&cluster, &[0.0, 1.0], &routing(""))).unwrap();
    let notices = notices_of(&cluster, &pooler, "RELOAD").await;
    assert!(notices.contains("nodes[0].weight") && notices.contains("nodes[1].weight"), "{notices}");
    // The snapshot shows the new weights once the controller has taken them;
    // the router uses them at once, for reads whose functions the catalog
    // has vouched for (until its answer is in, they go to the primary).
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[1].weight == 1.0).await, "{:?}", p.cluster());
    let mut first = false;
    for _ in 0..200 {
        if app.query_one(&prepared, &[]).await.unwrap().get::<_, bool>(0) {
            first = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(first, "reads reach the standby: {:?}", p.cluster());
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(app.query_one(&prepared, &[]).await.unwrap().get::<_, bool>(0));
    }
    assert_eq!(on_standby(seen), 20, "weight 0 on the primary: every read on the standby: {:?}", p.cluster());

    // Listed as a write function: the statement prepared before the reload,
    // and new ones, go to the primary.
    std::fs::write(&path, config_text(&cluster, &[0.0, 1.0], &routing("\"where_am_i\""))).unwrap();
    let notices = notices_of(&cluster, &pooler, "RELOAD").await;
    assert!(notices.contains("routing.write_functions"), "{notices}");
    for _ in 0..10 {
        assert!(!app.query_one(&prepared, &[]).await.unwrap().get::<_, bool>(0), "prepared before: primary");
        assert!(!app.query_one("SELECT where_am_i()", &[]).await.unwrap().get::<_, bool>(0), "new: primary");
        let simple = app.simple_query("SELECT where_am_i()").await.unwrap();
        let value = simple.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(value.as_deref(), Some("f"), "simple protocol: primary");
    }
}

/// Runs `sql` on the console as `ops` with psql; what psql printed, the
/// notices included (it must succeed).
async fn notices_of(cluster: &pooler_testkit::Cluster, pooler: &TestPooler, sql: &str) -> String {
    let port = pooler.port().to_string();
    let args = ["-X", "-h", "127.0.0.1", "-p", &port, "-U", "ops", "-d", "pooler", "-c", sql];
    let out = run_client(cluster, "psql", &args, None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{sql}: {text}");
    text
}

fn server_port_of(messages: &[tokio_postgres::SimpleQueryMessage]) -> u16 {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .expect("a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_glue_pause_promote_edit_reload_resume_loses_no_write_and_leaves_the_old_primary_untouched() {
    let cluster = replicated(1).await;
    let (old, new) = (cluster.primary(), &cluster.standbys()[0]);
    old.psql("postgres", "CREATE TABLE glue (client int)").unwrap();
    cluster.wait_for_replication(Duration::from_secs(10)).unwrap();
    let dir = tempdir("seed-004");
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("pooler.toml");
    let extra = "[pool]\nmode = \"transaction\"\nsize = 4\n";
    let pooler = from_file(&path, &config_of(&[(old, 1.0), (new, 1.0)], extra)).await;
    let load = WriteLoad::start(&pooler, 8, "glue").await;
    assert!(eventually(Duration::from_secs(10), || load.commits() > 100).await, "the load runs");

    // The glue, as a repmgr promote_command would run it around `repmgr
    // standby promote`: PAUSE, promote, point the configuration at the new
    // primary, RELOAD, RESUME. The old primary stays up (the worst case:
    // it would still take writes).
    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    within(ops.simple_query("PAUSE")).await.expect("PAUSE");
    let on_old = rows(old.port(), "glue");
    cluster.wait_for_replication(Duration::from_secs(10)).unwrap();
    new.promote().unwrap();
    std::fs::write(&path, config_of(&[(new, 1.0)], extra)).unwrap();
    let notices = notices_of(&cluster, &pooler, "RELOAD").await;
    assert!(notices.contains("node 0") && notices.contains("removed"), "{notices}");
    ops.simple_query("RESUME").await.expect("RESUME");
    let resumed = load.commits();
    assert!(eventually(Duration::from_secs(15), || load.commits() > resumed + 200).await, "writes go on after RESUME");

    let load = load.finish().await;
    assert!(load.errors.is_empty(), "no client saw an error: {:?}", load.errors);
    assert_eq!(rows(old.port(), "glue"), on_old, "nothing reached the old primary after PAUSE");
    assert_eq!(rows(new.port(), "glue") as u64, load.commits, "every acknowledged write is on the new primary, once");
    let sessions = old
        .psql("postgres", "SELECT usename, application_name, state, backend_start, query FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        .unwrap();
    // Closing is asynchronous (a Terminate each, then the backend exits): on
    // a loaded machine pg_stat_activity may list them for a moment.
    let closed = eventually(Duration::from_secs(5), || server_sessions(old.port()) == 0).await;
    assert!(closed, "the pooler holds no connection to the old primary: {sessions}");
    let snapshot = pooler.pooler.cluster();
    assert_eq!((snapshot.primary, snapshot.nodes[0].status), (1, pooler_core::Status::Removed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_node_that_serves_once_checked_and_a_removed_one_drains_its_open_transaction() {
    let cluster = replicated(2).await;
    let (primary, s1, s2) = (cluster.primary(), &cluster.standbys()[0], &cluster.standbys()[1]);
    let dir = tempdir("reload-nodes");
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("pooler.toml");
    let extra = "[pool]\nmode = \"transaction\"\n[routing]\nload_balance = true\n";
    // Reads only on the standby (the primary's weight is 0).
    let pooler = from_file(&path, &config_of(&[(primary, 0.0), (s1, 1.0)], extra)).await;
    let app = pooler.connect("postgres").await;
    let reader = pooler.connect("postgres").await;
    assert_eq!(server_port_of(&reader.simple_query("SELECT inet_server_port()").await.unwrap()), s1.port());
    app.batch_execute("BEGIN READ ONLY").await.unwrap();
    assert_eq!(server_port_of(&app.simple_query("SELECT inet_server_port()").await.unwrap()), s1.port());

    std::fs::write(&path, config_of(&[(primary, 0.0), (s2, 1.0)], extra)).unwrap();
    let notices = notices_of(&cluster, &pooler, "RELOAD").await;
    assert!(notices.contains("node 1") && notices.contains("node 2") && notices.contains("added"), "{notices}");
    // The transaction in progress on the removed node finishes there.
    assert_eq!(server_port_of(&app.simple_query("SELECT inet_server_port()").await.unwrap()), s1.port());
    app.batch_execute("COMMIT").await.expect("the open transaction commits");
    assert!(
        eventually(Duration::from_secs(10), || server_sessions(s1.port()) == 0).await,
        "the removed node's connections close as they come back"
    );
    // Reads move to the new node once it is checked; never to the removed one.
    let mut on_new = false;
    for _ in 0..100 {
        let port = server_port_of(&reader.simple_query("SELECT inet_server_port()").await.unwrap());
        assert_ne!(port, s1.port(), "no read on the removed node");
        if port == s2.port() {
            on_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(on_new, "the added node serves reads");
    assert_eq!(server_sessions(s1.port()), 0);
    let snapshot = pooler.pooler.cluster();
    assert_eq!(
        snapshot.nodes.iter().map(|n| n.status).collect::<Vec<_>>(),
        [pooler_core::Status::Up, pooler_core::Status::Removed, pooler_core::Status::Up]
    );
}

/// A row of SHOW MEM: (used, free).
async fn mem_row(ops: &tokio_postgres::Client, name: &str) -> (i64, i64) {
    let rows = ops.query("SHOW MEM", &[]).await.unwrap();
    let r = rows.iter().find(|r| r.get::<_, &str>("name") == name).expect("a SHOW MEM row");
    (r.get("used"), r.get("free"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_memory_new_logins_and_transactions_get_53200_and_running_ones_go_on_until_memory_comes_back() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.admin.admin_users = vec!["ops".into()];
    config.pool.mode = PoolMode::Transaction;
    config.pool.checkout_timeout = Duration::from_millis(300);
    config.server.max_memory = 48 << 10;
    let pooler = TestPooler::start(config, None).await;
    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    let idle = pooler.connect("postgres").await;
    let big = pooler.connect("postgres").await;
    assert_eq!(mem_row(&ops, "max_memory").await.0, 48 << 10);

    // A transaction open holds its buffers (a large result streams through them).
    big.batch_execute("BEGIN").await.unwrap();
    let n: i32 = big.query_one("SELECT length(repeat('x', 300000))", &[]).await.unwrap().get(0);
    assert_eq!(n, 300000);
    let ops_ref = &ops;
    assert!(
        eventually_async(Duration::from_secs(5), || async move { mem_row(ops_ref, "buffers").await.0 > 48 << 10 })
            .await,
        "the open transaction's buffers are counted: {:?}",
        mem_row(&ops, "buffers").await
    );

    // Past the limit: a new login is refused...
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.err().expect("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("53200"), "{e}");
    assert!(message(&e).contains("server.max_memory"), "{}", message(&e));
    // ...a new transaction waits, then is refused...
    let started = std::time::Instant::now();
    let e = idle.simple_query("SELECT 1").await.expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("53200"), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited first");
    // ...and the transaction running goes on to its end.
    big.simple_query("SELECT 1").await.expect("the running transaction goes on");
    big.batch_execute("COMMIT").await.expect("and commits");
    assert!(mem_row(&ops, "memory_refusals").await.0 >= 2);

    // Memory given back: new work is admitted again.
    assert!(
        eventually_async(Duration::from_secs(5), || async move { mem_row(ops_ref, "buffers").await.0 <= 48 << 10 })
            .await
    );
    let again = connect_with(pooler.pg_config("postgres", "postgres")).await.expect("admitted again");
    again.simple_query("SELECT 1").await.expect("a transaction runs");
    big.simple_query("SELECT 1").await.expect("so does the big client's next one");
}
