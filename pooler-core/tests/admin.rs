//! End-to-end: the admin console (virtual database `pooler` / `pgbouncer`)
//! through psql (simple protocol) and tokio-postgres (extended protocol),
//! against real PostgreSQL.

mod common;
#[path = "common/admin.rs"]
mod console;

use std::time::Duration;

use common::*;
use console::*;
use pooler_core::config::PoolMode;
use pooler_core::Config;

/// `ops` may run everything, `grafana` only SHOW.
fn console_config(cluster: &pooler_testkit::Cluster) -> Config {
    let mut c = trust_config(cluster);
    c.admin.admin_users = vec!["ops".into()];
    c.admin.stats_users = vec!["grafana".into()];
    c
}

async fn on_console(pooler: &TestPooler, user: &str, db: &str) -> tokio_postgres::Client {
    connect_with(pooler.pg_config(user, db)).await.expect("console login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_answers_in_both_protocols_with_pgbouncers_columns() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(console_config(&cluster), None).await;
    // A pooled client, so the views have a pool and a client to show.
    let app = pooler.connect("postgres").await;
    app.simple_query("SELECT 1").await.unwrap();
    let extended = on_console(&pooler, "grafana", "pgbouncer").await;
    for (view, expected) in PGBOUNCER_COLUMNS.iter().chain(OWN_VIEWS) {
        let sql = format!("SHOW {view}");
        // Simple protocol, through psql.
        let (header, rows) = tokio::task::block_in_place(|| console_psql(&cluster, pooler.port(), "grafana", &sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(&header[..expected.len()], *expected, "{sql} through psql");
        for r in &rows {
            assert_eq!(r.len(), header.len(), "{sql}: {r:?}");
        }
        // Extended protocol (Parse/Describe/Bind/Execute, binary results).
        let stmt = extended.prepare(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
        assert_eq!(&names[..expected.len()], *expected, "{sql} extended");
        let extended_rows = extended.query(&stmt, &[]).await.unwrap();
        if !matches!(
            *view,
            "CLIENTS"
                | "SERVERS"
                | "MEM"
                | "LISTS"
                | "POOLS"
                | "USERS"
                | "DATABASES"
                | "STATS"
                | "STATS_TOTALS"
                | "STATS_AVERAGES"
                | "pool_processes"
        ) {
            assert_eq!(extended_rows.len(), rows.len(), "{sql}: the same rows either way");
        }
    }
    // The numbers are what they say: the pooled client is there.
    let (h, rows) = tokio::task::block_in_place(|| console_psql(&cluster, pooler.port(), "ops", "SHOW POOLS")).unwrap();
    let i = rows.iter().position(|r| r[0] == "postgres").expect("a row for database postgres");
    assert_eq!(column(&h, &rows, "cl_active")[i], "1");
    // Session mode: the client holds its server connection.
    assert_eq!(column(&h, &rows, "sv_active")[i], "1");
    let row = extended.query_one("SHOW CLIENTS", &[]).await;
    assert!(row.is_err(), "several clients (app, two consoles): query_one refuses");
    let clients = extended.query("SHOW CLIENTS", &[]).await.unwrap();
    let app_row = clients.iter().find(|r| r.get::<_, &str>("database") == "postgres").expect("the app client");
    assert_eq!(app_row.get::<_, &str>("state"), "pinned", "a session-mode client holds its connection");
    assert!(app_row.get::<_, i64>("id") > 0);
    // psql's several commands in one Query.
    let out = psql_console(&cluster, pooler.port(), "grafana", "SHOW VERSION; SHOW STATE");
    assert!(out.contains("pooler ") && out.contains("active"), "{out}");
}

fn psql_console(cluster: &pooler_testkit::Cluster, port: u16, user: &str, sql: &str) -> String {
    let port = port.to_string();
    let out = tokio::task::block_in_place(|| {
        run_client(
            cluster,
            "psql",
            &["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port, "-U", user, "-d", "pooler", "-c", sql],
            None,
        )
    });
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_user_is_refused_every_action_and_strangers_cannot_log_in() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(console_config(&cluster), None).await;
    let app = pooler.connect("postgres").await;
    app.simple_query("SELECT 1").await.unwrap();
    let stats = on_console(&pooler, "grafana", "pooler").await;
    let clients = stats.query("SHOW CLIENTS", &[]).await.unwrap();
    let id = clients.iter().find(|r| r.get::<_, &str>("database") == "postgres").unwrap().get::<_, i64>("id");
    for action in [
        format!("KILL_CLIENT {id}"),
        "KILL postgres".into(),
        "RECONNECT".into(),
        "RECONNECT postgres".into(),
        "DISABLE postgres".into(),
        "ENABLE postgres".into(),
        "PAUSE".into(),
        "RESUME".into(),
        "SUSPEND".into(),
        "WAIT_CLOSE".into(),
        "RELOAD".into(),
        "SHUTDOWN".into(),
        "SHUTDOWN WAIT_FOR_CLIENTS".into(),
        "SET pool.size = 1".into(),
        "ATTACH NODE 0".into(),
        "DETACH NODE 0".into(),
        "PROMOTE NODE 0".into(),
        "RECOVER NODE 0".into(),
    ] {
        let e = stats.simple_query(&action).await.expect_err(&action);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{action}: {e}");
        let e = stats.query(action.as_str(), &[]).await.expect_err(&action);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{action} (extended): {e}");
    }
    // Nothing happened: the client still works, the pooler still runs.
    app.simple_query("SELECT 1").await.expect("the client was not killed");
    assert!(connect_with(pooler.pg_config("postgres", "postgres")).await.is_ok(), "nothing disabled or shut down");
    // A user in neither list gets PostgreSQL's 28000 at login.
    let e = connect_with(pooler.pg_config("postgres", "pooler")).await.err().expect("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    // Admin actions that are not built yet refuse, never pretend.
    let ops = on_console(&pooler, "ops", "pooler").await;
    for action in ["SUSPEND", "WAIT_CLOSE"] {
        let e = ops.simple_query(action).await.expect_err(action);
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{action}: {e}");
    }
    let e = ops.simple_query("SHOW nothing").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_ends_that_session_only() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(console_config(&cluster), None).await;
    // The victim is a raw socket: an idle client's driver may see the close
    // before it reads the error, so the bytes themselves are the proof.
    let mut victim = raw_login(pooler.addr).await;
    let bystander = connect_with(pooler.pg_config("postgres", "template1")).await.unwrap();
    let ops = on_console(&pooler, "ops", "pooler").await;
    let clients = ops.query("SHOW CLIENTS", &[]).await.unwrap();
    let id = clients.iter().find(|r| r.get::<_, &str>("database") == "postgres").unwrap().get::<_, i64>("id");
    ops.simple_query(&format!("KILL_CLIENT {id}")).await.unwrap();
    let got = read_until_closed(&mut victim, &mut Vec::new()).await;
    // The client is told why (PostgreSQL's words for pg_terminate_backend),
    // then the connection closes.
    let said = describe(&got);
    assert!(said.iter().any(|m| m.contains("FATAL") && m.contains("57P01")), "{said:?}");
    bystander.simple_query("SELECT 1").await.expect("other clients are untouched");
    let e = ops.simple_query(&format!("KILL_CLIENT {}", id + 1000)).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42704"));
    let gone = eventually_async(Duration::from_secs(5), || async {
        let rows = ops.query("SHOW CLIENTS", &[]).await.unwrap();
        !rows.iter().any(|r| r.get::<_, i64>("id") == id)
    })
    .await;
    assert!(gone, "the killed client leaves SHOW CLIENTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_ends_a_session_waiting_for_a_connection_and_one_inside_a_transaction() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let mut config = console_config(&cluster);
    config.pool.mode = PoolMode::Transaction;
    config.pool.size = 1;
    let pooler = TestPooler::start(config, None).await;
    // The holder keeps the pool's only connection in an open transaction.
    let mut holder = raw_login(pooler.addr).await;
    holder.write_all(&simple_query("BEGIN; SELECT 1")).await.unwrap();
    // The waiter asks for a connection and waits for it.
    let mut waiter = raw_login(pooler.addr).await;
    waiter.write_all(&simple_query("SELECT 2")).await.unwrap();
    let ops = on_console(&pooler, "ops", "pooler").await;
    let id_in = |state: &'static str| {
        let ops = &ops;
        async move {
            let rows = ops.query("SHOW CLIENTS", &[]).await.unwrap();
            rows.iter()
                .find(|r| r.get::<_, &str>("database") == "postgres" && r.get::<_, &str>("state") == state)
                .map(|r| r.get::<_, i64>("id"))
        }
    };
    let mut waiting = None;
    for _ in 0..100 {
        waiting = id_in("waiting").await;
        if waiting.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = waiting.expect("a client waits for the pool's only connection");
    ops.simple_query(&format!("KILL_CLIENT {waiting}")).await.unwrap();
    let said = describe(&read_until_closed(&mut waiter, &mut Vec::new()).await);
    assert!(said.iter().any(|m| m.contains("FATAL") && m.contains("57P01")), "the waiter: {said:?}");
    assert!(!said.iter().any(|m| m.starts_with('T') || m.starts_with('D')), "the waiter's query never ran: {said:?}");
    let holding = id_in("active").await.expect("the holder is in its transaction");
    ops.simple_query(&format!("KILL_CLIENT {holding}")).await.unwrap();
    let said = describe(&read_until_closed(&mut holder, &mut Vec::new()).await);
    assert!(said.iter().any(|m| m.contains("FATAL") && m.contains("57P01")), "the holder: {said:?}");
    // Its transaction is gone and the connection serves the next client.
    let next = tokio::time::timeout(Duration::from_secs(10), pooler.connect("postgres")).await.expect("login");
    let open = next.query_one("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'", &[]);
    let open: i64 = tokio::time::timeout(Duration::from_secs(10), open).await.expect("served").unwrap().get(0);
    assert_eq!(open, 0, "the killed client's transaction was rolled back");
}

/// A simple-protocol Query message.
fn simple_query(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_server_connections_and_disable_refuses_new_clients_until_enable() {
    let cluster = primary_only().await;
    let mut config = console_config(&cluster);
    config.pool.mode = PoolMode::Transaction;
    let pooler = TestPooler::start(config, None).await;
    let app = pooler.connect("postgres").await;
    let before: i32 = app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_eq!(before, app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
    let ops = on_console(&pooler, "ops", "pooler").await;
    ops.simple_query("RECONNECT postgres").await.unwrap();
    let after: i32 = app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(before, after, "RECONNECT closed the old server connection");
    // Mid-transaction, RECONNECT waits for the connection to come back.
    app.batch_execute("BEGIN").await.unwrap();
    let inside: i32 = app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    ops.simple_query("RECONNECT").await.unwrap();
    assert_eq!(inside, app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
    app.batch_execute("COMMIT").await.unwrap();
    assert_ne!(inside, app.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));

    ops.simple_query("DISABLE postgres").await.unwrap();
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.err().expect("refused while disabled");
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    app.simple_query("SELECT 1").await.expect("connected clients go on");
    let dbs = ops.query("SHOW DATABASES", &[]).await.unwrap();
    let row = dbs.iter().find(|r| r.get::<_, &str>("name") == "postgres").unwrap();
    assert_eq!(row.get::<_, i64>("disabled"), 1);
    connect_with(pooler.pg_config("postgres", "template1")).await.expect("other databases are open");
    ops.simple_query("ENABLE postgres").await.unwrap();
    connect_with(pooler.pg_config("postgres", "postgres")).await.expect("accepted again after ENABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wait_for_clients_stops_accepting_and_ends_when_the_last_client_leaves() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(console_config(&cluster), None).await;
    let app = pooler.connect("postgres").await;
    let ops = on_console(&pooler, "ops", "pooler").await;
    ops.simple_query("SHUTDOWN WAIT_FOR_CLIENTS").await.unwrap();
    drop(ops);
    // No new clients...
    let refused = eventually_async(Duration::from_secs(5), || async {
        connect_with(pooler.pg_config("postgres", "postgres")).await.is_err()
    })
    .await;
    assert!(refused, "the listener is closed");
    // ...but the connected one keeps working, even idle for a while, and
    // the pooler's run (which holds a reference to it) goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.simple_query("SELECT 1").await.expect("existing clients are not closed");
    assert_eq!(std::sync::Arc::strong_count(&pooler.pooler), 2, "Pooler::run still runs");
    drop(app);
    let stopped = eventually(Duration::from_secs(10), || std::sync::Arc::strong_count(&pooler.pooler) == 1).await;
    assert!(stopped, "Pooler::run returns once the last client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_detach_and_promote_node_through_the_console() {
    let cluster = replicated(1).await;
    let mut config = failover_config(&cluster);
    config.admin.admin_users = vec!["ops".into()];
    let bin = cluster.bin_dir().display().to_string();
    config.failover.command = as_server_user(format!("{bin}/pg_ctl promote -w -D %R"));
    let pooler = TestPooler::start(config, None).await;
    let ops = on_console(&pooler, "ops", "pooler").await;
    let status = |rows: &[tokio_postgres::Row], node: i64| {
        rows.iter().find(|r| r.get::<_, i64>("node") == node).map(|r| r.get::<_, String>("status")).unwrap()
    };
    let e = ops.simple_query("DETACH NODE 0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "the primary cannot be detached: {e}");
    let e = ops.simple_query("ATTACH NODE 7").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"), "{e}");
    ops.simple_query("DETACH NODE 1").await.unwrap();
    assert!(pooler.pooler.node_stats()[1].detached);
    assert_eq!(status(&ops.query("SHOW NODES", &[]).await.unwrap(), 1), "down");
    ops.simple_query("ATTACH NODE 1").await.unwrap();
    let up = eventually(Duration::from_secs(10), || pooler.pooler.cluster().nodes[1].status == pooler_core::Status::Up)
        .await;
    assert!(up, "node 1 is back after its next check");
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    ops.simple_query("PROMOTE NODE 1").await.unwrap();
    assert_eq!(pooler.pooler.primary_node(), 1);
    let nodes = ops.query("SHOW NODES", &[]).await.unwrap();
    let role = nodes.iter().find(|r| r.get::<_, i64>("node") == 1).unwrap().get::<_, String>("role");
    assert_eq!(role, "primary");
}

/// The `postgres` database's row of `SHOW STATS_TOTALS`, as (column, value).
fn stats_totals(cluster: &pooler_testkit::Cluster, port: u16) -> std::collections::HashMap<String, i64> {
    let (header, rows) = console_psql(cluster, port, "grafana", "SHOW STATS_TOTALS").expect("SHOW STATS_TOTALS");
    let row = rows.iter().find(|r| r[0] == "postgres").expect("a row for database postgres");
    header.iter().cloned().zip(row.iter().map(|v| v.parse().unwrap_or(-1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stats_counts_transactions_queries_and_bytes_in_transaction_and_session_mode() {
    let cluster = primary_only().await;
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let mut config = console_config(&cluster);
        config.pool.mode = mode;
        config.metrics.durations = Some(true);
        let pooler = TestPooler::start(config, None).await;
        let app = pooler.connect("postgres").await;
        for i in 0..20 {
            app.query_one("SELECT $1::int", &[&i]).await.unwrap();
        }
        // One explicit transaction of three requests counts once.
        app.batch_execute("BEGIN").await.unwrap();
        app.simple_query("SELECT 1").await.unwrap();
        app.batch_execute("COMMIT").await.unwrap();
        let port = pooler.port();
        let stats = tokio::task::block_in_place(|| stats_totals(&cluster, port));
        // Session mode reports as transactions end; the connection's own
        // startup queries (tokio-postgres asks none here) would add to both.
        assert!(stats["xact_count"] >= 21, "{mode:?}: {stats:?}");
        assert!(stats["query_count"] >= stats["xact_count"] + 2, "{mode:?}: {stats:?}");
        assert!(stats["bytes_received"] > 20 * 20, "{mode:?}: {stats:?}");
        assert!(stats["bytes_sent"] > stats["bytes_received"] / 2, "{mode:?}: {stats:?}");
        assert!(stats["server_assignment_count"] >= 1, "{mode:?}: {stats:?}");
        // metrics.durations on: the times are summed too (microseconds).
        assert!(stats["xact_time"] > 0 && stats["query_time"] > 0, "{mode:?}: {stats:?}");
        drop(app);
    }
}
