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
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let client = pooler.connect("postgres").await;
            let (stop, commits, errors) = (stop.clone(), commits.clone(), errors.clone());
            let sql = format!("INSERT INTO {table} (client) VALUES ($1)");
            tasks.push(tokio::spawn(async move {
                let c = c as i32;
                while !stop.load(Ordering::Relaxed) {
                    let r = async {
                        client.batch_execute("BEGIN").await?;
                        client.execute(&sql, &[&c]).await?;
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
    ops.simple_query("PAUSE postgres").await.expect("PAUSE");
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
        ops.simple_query("PAUSE").await.expect("PAUSE");
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
