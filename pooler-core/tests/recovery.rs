//! End-to-end: online recovery (`RECOVER NODE`, pgpool's
//! `pcp_recovery_node`) with the shipped `pg_recover.sh`, against real
//! PostgreSQL.

mod common;

use std::time::Duration;

use common::*;
use pooler_core::Status;
use pooler_testkit::StopMode;

fn port_of(messages: &[tokio_postgres::SimpleQueryMessage]) -> u16 {
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .expect("a port")
}

/// Reads (weight 0 on the primary: the standby serves them while it is
/// up), `ops` as the admin, `pg_recover.sh` as the recovery command.
fn recovery_config(cluster: &pooler_testkit::Cluster) -> pooler_core::Config {
    let mut config = failover_config(cluster);
    config.routing.load_balance = true;
    config.nodes[0].weight = 0.0;
    config.admin.admin_users = vec!["ops".into()];
    config.recovery.command = example_script(cluster, "pg_recover.sh", "%d %h %p %D %m %H %r");
    config.recovery.stream_timeout = Duration::from_secs(30);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_node_rebuilds_a_killed_and_wiped_standby_which_then_serves_reads_with_the_primarys_data() {
    let cluster = replicated(1).await;
    let (primary, standby) = (cluster.primary(), &cluster.standbys()[0]);
    let pooler = TestPooler::start(recovery_config(&cluster), None).await;
    let app = pooler.connect("postgres").await;
    let read = || async { port_of(&app.simple_query("SELECT inet_server_port()").await.expect("a read")) };
    assert_eq!(read().await, standby.port(), "the standby serves reads");

    // The standby dies and loses its data directory.
    standby.stop(StopMode::Immediate).unwrap();
    let dir = standby.data_dir().to_path_buf();
    wipe_contents(&dir);
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[1].status == Status::Down).await);
    assert_eq!(read().await, primary.port(), "reads fall back to the primary, no error");
    app.batch_execute("INSERT INTO items (v) SELECT generate_series(1, 500)").await.unwrap();

    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    let e = ops.simple_query("RECOVER NODE 0").await.expect_err("the primary is not recovered");
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(120), ops.simple_query("RECOVER NODE 1"))
        .await
        .expect("RECOVER NODE returns")
        .expect("RECOVER NODE succeeds");
    println!("RECOVER NODE of a wiped standby took {} ms", started.elapsed().as_millis());
    assert_eq!(standby.query_one("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[1].status == Status::Up).await);
    let mut back = false;
    for _ in 0..50 {
        if read().await == standby.port() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the rebuilt standby serves reads again");
    let n: i64 = standby.query_one("SELECT count(*) FROM items").unwrap().parse().unwrap();
    assert!(n >= 500, "it has what was written while it was gone: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_recovery_command_is_reported_and_leaves_the_node_detached() {
    let cluster = replicated(1).await;
    let mut config = recovery_config(&cluster);
    config.recovery.command = "echo cannot rebuild %d from %m >&2; exit 3".into();
    let pooler = TestPooler::start(config, None).await;
    let ops = connect_with(pooler.pg_config("ops", "pooler")).await.expect("console");
    let e = ops.simple_query("RECOVER NODE 1").await.expect_err("the command fails");
    assert!(message(&e).contains("failed") || message(&e).contains("exit"), "{}", message(&e));
    let node = pooler.pooler.cluster().nodes[1].clone();
    assert!(node.operator_detached && node.status == Status::Down, "{node:?}");
    // An operator attaches it again once it is fixed.
    ops.simple_query("ATTACH NODE 1").await.unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[1].status == Status::Up).await);
}
