//! End-to-end: the primary dies; the pooler's failover command promotes a
//! standby, its follow-primary command re-points the other standby, and
//! clients carry on against the new primary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};

use pooler_core::config::PoolMode;
use pooler_core::{CheckFuture, FailoverContext, FailoverHook, HealthCheck, HookFuture, HookOutcome, SqlHealthCheck};
use pooler_core::{NodeCommandError, Role, Status};

fn rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<&tokio_postgres::SimpleQueryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_death_runs_the_failover_and_follow_commands_and_clients_carry_on() {
    let cluster = replicated(2).await;
    let mut config = failover_config(&cluster);
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(100);
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    // The shipped example scripts do the work.
    config.failover.command = example_script(&cluster, "pg_failover.sh", "%d %h %p %D %m %H %r %R");
    config.failover.follow_primary_command = example_script(&cluster, "pg_follow_primary.sh", "%d %h %p %D %m %H %r");
    let pooler = TestPooler::start(config, None).await;
    let idle = pooler.connect("postgres").await;
    idle.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();

    let died = Instant::now();
    let old = cluster.primary().clone();
    tokio::task::block_in_place(|| old.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(30), || p.primary_node() != 0).await, "a standby was promoted");
    let new = p.primary_node();
    let recovered = died.elapsed();
    // The idle client's next transaction goes to the new primary without reconnecting.
    idle.batch_execute("INSERT INTO items (v) VALUES (2)").await.unwrap();
    let port: i32 =
        idle.query_one("INSERT INTO items (v) VALUES (3) RETURNING inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, cluster.standbys()[new - 1].port() as i32);
    // The other standby follows the new primary: it sees the new rows.
    let other = cluster.standbys()[2 - new].clone();
    let follows = eventually(Duration::from_secs(30), || {
        other.query_one("SELECT count(*) FROM items").map(|n| n.trim() == "3").unwrap_or(false)
    })
    .await;
    assert!(follows, "the other standby replays from the new primary");
    // Reads keep flowing (balanced over the new primary and the follower).
    for _ in 0..20 {
        let n: i64 = idle.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
        assert!(n >= 1);
    }
    // The old primary comes back, still believing it is a primary: it is
    // never written to or read from again (false primary).
    tokio::task::block_in_place(|| old.start()).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(p.primary_node(), new);
    assert!(p.node_stats()[0].detached, "{:?}", p.node_stats());
    assert_eq!(p.cluster().nodes[0].status, Status::Quarantine);
    for i in 0..30 {
        let port: i32 = idle
            .query_one("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", &[&(100 + i)])
            .await
            .unwrap()
            .get(0);
        assert_ne!(port, old.port() as i32, "no write reaches the old primary");
        let port: i32 = idle.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0);
        assert_ne!(port, old.port() as i32, "no read either");
    }
    eprintln!("failover: primary death to new primary known in {recovered:?}");
}

/// Switchover: an operator promotes a standby through the failover command
/// while the primary is healthy. The old primary (still up, still a primary)
/// is detached and gets no more writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_node_switches_writes_to_the_promoted_standby() {
    let cluster = replicated(1).await;
    let mut config = failover_config(&cluster);
    config.health.period = Duration::from_millis(100);
    let bin = cluster.bin_dir().display().to_string();
    config.failover.command = as_server_user(format!("{bin}/pg_ctl promote -w -D %R"));
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    client.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    assert_eq!(pooler.pooler.promote_node(0).await, Err(NodeCommandError::AlreadyPrimary(0)));
    pooler.pooler.promote_node(1).await.unwrap();
    // Writes move at once, though the old primary is still up and still a
    // primary: it is detached and never written to again.
    assert_eq!(pooler.pooler.primary_node(), 1);
    for i in 0..20 {
        let port: i32 = client
            .query_one("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", &[&(10 + i)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, cluster.standbys()[0].port() as i32);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pooler.pooler.primary_node(), 1, "the health checks keep the promoted node");
    assert!(pooler.pooler.node_stats()[0].detached);
}

/// A write sent right after the primary dies is not lost or failed: nothing
/// was sent to the dead primary, so it waits for the failover (bounded by
/// `search_primary_node_timeout`) and runs on the new primary. Here the
/// failover is done by an embedded `FailoverHook` written in Rust
/// (`SELECT pg_promote()` on the new main node), the checks go through an
/// embedded `HealthCheck` (the built-in one, counted), and no check runs on
/// its own: the session's failed connection is what triggers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_failover_waits_for_the_new_primary_promoted_by_an_embedded_hook() {
    struct PgPromote;
    impl FailoverHook for PgPromote {
        fn promotes(&self) -> bool {
            true
        }
        fn failover<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
            Box::pin(async move {
                let mut c = tokio_postgres::Config::new();
                c.host(&ctx.new_main.host).port(ctx.new_main.port).user("postgres").dbname("postgres");
                let (client, conn) = match c.connect(tokio_postgres::NoTls).await {
                    Ok(c) => c,
                    Err(e) => return HookOutcome::failed(format!("cannot reach the new main node: {e}")),
                };
                tokio::spawn(conn);
                match client.simple_query("SELECT pg_promote()").await {
                    Ok(_) => HookOutcome::Done,
                    Err(e) => HookOutcome::failed(format!("pg_promote() failed: {e}")),
                }
            })
        }
    }
    struct Counted(SqlHealthCheck, AtomicU64);
    impl HealthCheck for Counted {
        fn check(&self, node: usize) -> CheckFuture<'_> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.check(node)
        }
    }
    let cluster = replicated(1).await;
    let mut config = failover_config(&cluster);
    let checks = std::sync::Arc::new(Counted(SqlHealthCheck::new(&config, None), AtomicU64::new(0)));
    // Periodic checks too rare to matter: only the session's evidence counts.
    config.health.period = Duration::from_secs(600);
    config.health.max_retries = 0;
    config.failover.search_primary_node_timeout = Duration::from_secs(30);
    let pooler = TestPooler::start_with(config, None, |p| {
        p.with_failover_hook(std::sync::Arc::new(PgPromote)).with_health_check(checks.clone())
    })
    .await;
    let first_round = checks.1.load(Ordering::Relaxed);
    assert!(first_round >= 2, "every node checked once at start through the embedded check");
    let idle = pooler.connect("postgres").await;
    idle.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    let old = cluster.primary().clone();
    tokio::task::block_in_place(|| old.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    let started = Instant::now();
    let port: i32 =
        idle.query_one("INSERT INTO items (v) VALUES (2) RETURNING inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, cluster.standbys()[0].port() as i32, "the write ran on the promoted standby");
    assert!(started.elapsed() < Duration::from_secs(60));
    let snapshot = pooler.pooler.cluster();
    assert_eq!(snapshot.primary, 1);
    assert_eq!(snapshot.nodes[0].status, Status::Quarantine);
    let n: i64 = idle.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "the write ran exactly once");
    assert!(checks.1.load(Ordering::Relaxed) > first_round, "the failure was checked through it");
}

/// `SHOW pool_nodes` answers on a normal connection with pgpool 4.3's
/// columns, in plain session mode and in transaction mode, through psql as
/// pgpool's tutorials run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pool_nodes_answers_with_pgpools_columns_on_normal_connections() {
    let cluster = replicated(2).await;
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let mut config = failover_config(&cluster);
        config.pool.mode = mode;
        config.routing.load_balance = mode == PoolMode::Transaction;
        let pooler = TestPooler::start(config, None).await;
        let client = pooler.connect("postgres").await;
        for _ in 0..5 {
            client.simple_query("SELECT 1").await.unwrap();
        }
        let messages = client.simple_query("show POOL_NODES;").await.unwrap();
        let rows = self::rows(&messages);
        assert_eq!(rows.len(), 3, "{mode:?}");
        let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            columns,
            [
                "node_id",
                "hostname",
                "port",
                "status",
                "pg_status",
                "lb_weight",
                "role",
                "pg_role",
                "select_cnt",
                "load_balance_node",
                "replication_delay",
                "replication_state",
                "replication_sync_state",
                "last_status_change"
            ]
        );
        let get = |r: usize, c: &str| rows[r].get(c).unwrap_or_default().to_owned();
        for (i, node) in cluster.nodes().enumerate() {
            assert_eq!(get(i, "node_id"), i.to_string());
            assert_eq!(get(i, "port"), node.port().to_string());
            assert_eq!(get(i, "status"), "up", "{mode:?} node {i}");
            assert_eq!(get(i, "pg_status"), "up");
            assert_eq!(get(i, "lb_weight"), "0.333333");
            let role = if i == 0 { "primary" } else { "standby" };
            assert_eq!((get(i, "role"), get(i, "pg_role")), (role.to_owned(), role.to_owned()));
            assert_eq!(get(i, "replication_state"), if i == 0 { "" } else { "streaming" });
            assert_eq!(get(i, "last_status_change").len(), "2026-01-01 00:00:00".len());
        }
        // The same command through psql, and in the middle of a transaction.
        let out = tokio::task::block_in_place(|| {
            psql_through(&cluster, pooler.port(), &["-At", "-c", "SHOW pool_nodes"], None)
        });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().next().is_some_and(|l| l.starts_with("0|127.0.0.1|")), "{text}");
        client.batch_execute("BEGIN").await.unwrap();
        assert_eq!(self::rows(&client.simple_query("SHOW pool_nodes").await.unwrap()).len(), 3);
        client.batch_execute("COMMIT").await.unwrap();
    }
}

/// A session's failed connection is evidence at once: with periodic checks
/// ten minutes apart, a stopped standby is marked down within seconds of a
/// read failing to reach it, and the failback command runs when an operator
/// attaches it again after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_connection_triggers_a_check_and_attach_runs_the_failback_command() {
    let cluster = replicated(1).await;
    let mut config = failover_config(&cluster);
    config.routing.load_balance = true;
    config.nodes[0].weight = 0.0;
    config.health.period = Duration::from_secs(600);
    config.health.max_retries = 0;
    config.failover.auto_failback = false;
    let marker = std::env::temp_dir().join(format!("pooler-failback-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    config.failover.failback_command =
        format!("FAILBACK_LOG={} {}", marker.display(), example_script(&cluster, "failback.sh", "%d %h %p"));
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let standby = cluster.standbys()[0].clone();
    let port: i32 = client.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, standby.port() as i32);
    tokio::task::block_in_place(|| standby.stop(pooler_testkit::StopMode::Fast)).unwrap();
    let stopped = Instant::now();
    // The read finds the standby gone and is served by the primary.
    let port: i32 = client.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, cluster.primary().port() as i32);
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(20), || p.cluster().nodes[1].status == Status::Down).await);
    assert!(stopped.elapsed() < Duration::from_secs(30), "marked down long before the next periodic check");
    // Back, but without auto_failback it waits for the operator.
    tokio::task::block_in_place(|| standby.start()).unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(p.cluster().nodes[1].status, Status::Down);
    p.attach_node(1).await.unwrap();
    assert!(eventually(Duration::from_secs(20), || p.cluster().nodes[1].status == Status::Up).await);
    assert_eq!(p.cluster().nodes[1].role, Role::Standby);
    let logged = eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|t| t.contains(&format!("node 1 (127.0.0.1:{})", standby.port())))
    })
    .await;
    let _ = std::fs::remove_file(&marker);
    assert!(logged, "the failback command ran for node 1");
}

/// The failed primary is rebuilt as a standby of the new primary with the
/// shipped follow script (pg_rewind, then started as a standby): until then
/// it gets nothing; once it streams, auto-failback brings it back for reads,
/// and still no write reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_primary_rewound_as_a_standby_comes_back_for_reads_only() {
    let cluster = rewindable().await;
    let mut config = failover_config(&cluster);
    config.routing.load_balance = true;
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    config.failover.command = example_script(&cluster, "pg_failover.sh", "%d %h %p %D %m %H %r %R");
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    client.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    let (old, new) = (cluster.primary().clone(), cluster.standbys()[0].clone());
    tokio::task::block_in_place(|| old.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(30), || p.primary_node() == 1).await);
    client.batch_execute("INSERT INTO items (v) VALUES (2)").await.unwrap();

    // The DBA rebuilds the old primary with the follow script.
    let out = rebuild_as_standby(&cluster, &old, &new);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rewound and started as a standby"));
    assert!(
        eventually(Duration::from_secs(30), || {
            let n = &p.cluster().nodes[0];
            n.status == Status::Up && n.role == Role::Standby
        })
        .await,
        "auto-failback: {:?}\n{}\n{}\n{}",
        p.cluster().nodes[0],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(old.data_dir().join("follow-restart.log")).unwrap_or_default()
    );
    // Reads reach it (it replays the new primary's writes); writes never do.
    let mut read_there = false;
    for i in 0..60 {
        let r = client.query_one("SELECT count(*), inet_server_port() FROM items", &[]).await.unwrap();
        if r.get::<_, i32>(1) == old.port() as i32 {
            read_there = true;
            assert!(r.get::<_, i64>(0) >= 2, "the rebuilt node has the new primary's rows");
        }
        let port: i32 = client
            .query_one("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", &[&(10 + i)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, new.port() as i32);
    }
    assert!(read_there, "reads reach the rebuilt standby");
}
