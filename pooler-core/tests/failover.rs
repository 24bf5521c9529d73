//! End-to-end: the primary dies; the pooler's failover command promotes a
//! standby, its follow-primary command re-points the other standby, and
//! clients carry on against the new primary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pooler_core::cluster::NodeCommandError;
use pooler_core::config::{NodeConfig, PoolMode};
use pooler_core::Config;
use pooler_testkit::Cluster;

/// `command`, run as the PostgreSQL server user when the pooler runs as root.
fn as_server_user(command: String) -> String {
    match pooler_testkit::server_os_user() {
        Some((user, _, _)) => format!("runuser -u {user} -- {command}"),
        None => command,
    }
}

/// Transaction pooling over every node of `cluster`, data directories known
/// (for `%D` / `%R`), health checks every 100 ms.
fn failover_config(cluster: &Cluster) -> Config {
    let nodes = cluster
        .nodes()
        .map(|n| NodeConfig {
            host: n.host().to_owned(),
            port: n.port(),
            weight: 1.0,
            data_dir: Some(n.data_dir().display().to_string()),
            application_name: None,
        })
        .collect();
    let mut config = Config::with_nodes(nodes);
    config.auth.method = pooler_core::config::AuthMethod::Trust;
    config.server.log_connections = false;
    config.pool.mode = PoolMode::Transaction;
    config.health.period = Duration::from_millis(100);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_death_runs_the_failover_and_follow_commands_and_clients_carry_on() {
    let cluster = replicated(2).await;
    let mut config = failover_config(&cluster);
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(100);
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    let bin = cluster.bin_dir().display().to_string();
    config.failover.command = as_server_user(format!("{bin}/pg_ctl promote -w -D %R"));
    config.failover.follow_primary_command = format!(
        "{bin}/psql -h %h -p %p -U postgres -d postgres -v ON_ERROR_STOP=1 \
         -c \"ALTER SYSTEM SET primary_conninfo = 'host=%H port=%r user=postgres'\" -c 'SELECT pg_reload_conf()'"
    );
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
