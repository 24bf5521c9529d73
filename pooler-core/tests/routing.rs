//! End-to-end: read/write routing and load balancing over a real primary and
//! two streaming standbys, in transaction pooling mode.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use pooler_core::config::{NodeConfig, PoolMode};
use pooler_core::Config;
use pooler_core::{NodeCommandError, Status};
use pooler_testkit::Cluster;

async fn three_nodes() -> Cluster {
    replicated(2).await
}

fn routed_config(cluster: &Cluster, weights: &[f64]) -> Config {
    let nodes = cluster
        .nodes()
        .zip(weights)
        .map(|(n, &weight)| NodeConfig { weight, ..NodeConfig::new(n.host(), n.port()) })
        .collect();
    let mut c = Config::with_nodes(nodes);
    c.auth.method = pooler_core::config::AuthMethod::Trust;
    c.server.log_connections = false;
    c.pool.mode = PoolMode::Transaction;
    c.pool.size = 4;
    c.routing.load_balance = true;
    c
}

async fn server_port(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_by_weight_and_writes_reach_only_the_primary() {
    let cluster = three_nodes().await;
    let pooler = TestPooler::start(routed_config(&cluster, &[1.0, 1.0, 2.0]), None).await;
    let client = pooler.connect("postgres").await;
    let mut by_port: HashMap<i32, usize> = HashMap::new();
    for _ in 0..400 {
        *by_port.entry(server_port(&client).await).or_default() += 1;
    }
    let count = |port: u16| by_port.get(&(port as i32)).copied().unwrap_or(0);
    let (p, s1, s2) =
        (count(cluster.primary().port()), count(cluster.standbys()[0].port()), count(cluster.standbys()[1].port()));
    // Expected 100 / 100 / 200; bounds are about 5 standard deviations.
    assert!((50..=150).contains(&p) && (50..=150).contains(&s1) && (140..=260).contains(&s2), "{p} {s1} {s2}");
    // Writes and sequence calls, simple and extended protocol: a single one
    // sent to a standby would fail there, so zero errors proves the routing.
    let stmt = client.prepare("INSERT INTO items (v) VALUES ($1) RETURNING id").await.unwrap();
    for i in 0..100 {
        client.query_one(&stmt, &[&i]).await.unwrap();
        client.batch_execute("UPDATE items SET v = v + 1 WHERE id = 1").await.unwrap();
        client.query_one("SELECT nextval('seq')", &[]).await.unwrap();
        client.query_one("SELECT pg_catalog.NEXTVAL('seq')", &[]).await.unwrap();
        client
            .batch_execute("WITH d AS (DELETE FROM items WHERE v < 0 RETURNING *) SELECT count(*) FROM d")
            .await
            .unwrap();
        client.query("SELECT * FROM items WHERE id = 1 FOR UPDATE", &[]).await.unwrap();
    }
    let stats = pooler.pooler.node_stats();
    assert!(stats[1].reads > 0 && stats[2].reads > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_keeps_reads_off_the_primary_and_transactions_stay_on_one_node() {
    let cluster = three_nodes().await;
    let pooler = TestPooler::start(routed_config(&cluster, &[0.0, 1.0, 1.0]), None).await;
    let client = pooler.connect("postgres").await;
    for _ in 0..100 {
        let standby: bool = client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
        assert!(standby, "reads stay off a primary of weight 0");
    }
    // A read-write transaction runs on the primary, all of it.
    for _ in 0..10 {
        client.batch_execute("BEGIN").await.unwrap();
        let ports: Vec<i32> = futures_util::future::join_all((0..5).map(|_| server_port(&client))).await;
        assert!(ports.iter().all(|&p| p == cluster.primary().port() as i32), "{ports:?}");
        client.batch_execute("INSERT INTO items (v) VALUES (1); COMMIT").await.unwrap();
    }
    // A read-only transaction may go to a standby (once the standbys have
    // replayed this session's writes), and stays there.
    let c = cluster.primary().clone();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    drop(c);
    for _ in 0..10 {
        client.batch_execute("BEGIN READ ONLY").await.unwrap();
        let first = server_port(&client).await;
        assert_ne!(first, cluster.primary().port() as i32);
        for _ in 0..4 {
            assert_eq!(server_port(&client).await, first);
        }
        client.batch_execute("COMMIT").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_always_reads_its_own_writes_even_from_a_paused_standby() {
    let cluster = three_nodes().await;
    let pooler = TestPooler::start(routed_config(&cluster, &[1.0, 1.0, 1.0]), None).await;
    let client = pooler.connect("postgres").await;
    // Standby 1 stops replaying: anything read there is stale.
    cluster.standbys()[0].query_one("SELECT pg_wal_replay_pause()").unwrap();
    for i in 0..60 {
        client.batch_execute(&format!("INSERT INTO items (v) VALUES ({})", 1000 + i)).await.unwrap();
        let n: i64 = client.query_one("SELECT count(*) FROM items WHERE v = $1", &[&(1000 + i)]).await.unwrap().get(0);
        assert_eq!(n, 1, "round {i}: the session sees its own write");
    }
    cluster.standbys()[0].query_one("SELECT pg_wal_replay_resume()").unwrap();
    // Reads reach the standbys again once they have caught up.
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    let before: u64 = pooler.pooler.node_stats()[1..].iter().map(|s| s.reads).sum();
    for _ in 0..30 {
        server_port(&client).await;
    }
    let after: u64 = pooler.pooler.node_stats()[1..].iter().map(|s| s.reads).sum();
    assert!(after > before, "{:?}", pooler.pooler.node_stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_standby_leaves_the_read_set_without_errors() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    // A "standby" where nothing listens: a port held by a socket that is bound
    // but never listens (connections are refused, and no other test's server
    // can take the port meanwhile).
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    config.nodes[1].port = holder.local_addr().unwrap().as_socket().unwrap().port();
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    for _ in 0..50 {
        let standby: bool = client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
        let _ = standby;
    }
    let stats = pooler.pooler.node_stats();
    assert_eq!(stats[1].outstanding, 0);
    assert!(stats[2].reads > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_only_over_three_nodes_has_no_failures() {
    let cluster = three_nodes().await;
    let primary = cluster.primary().port().to_string();
    let out = run_client(
        &cluster,
        "pgbench",
        &["-i", "-q", "-h", "127.0.0.1", "-p", &primary, "-U", "postgres", "postgres"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::task::spawn_blocking({
        let c = cluster.primary().clone();
        move || c.query_one("SELECT 1")
    })
    .await
    .unwrap()
    .unwrap();
    cluster.wait_for_replication(Duration::from_secs(30)).unwrap();
    let pooler = TestPooler::start(routed_config(&cluster, &[1.0, 1.0, 1.0]), None).await;
    let port = pooler.port().to_string();
    for mode in ["simple", "extended", "prepared"] {
        let args = [
            "-n",
            "-S",
            "-c",
            "8",
            "-j",
            "2",
            "-t",
            "100",
            "-M",
            mode,
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "postgres",
        ];
        let out = tokio::task::block_in_place(|| run_client(&cluster, "pgbench", &args, None));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mode}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("actually processed: 800/800"), "{stdout}");
    }
    // TPC-B-like writes through the router too.
    let args = [
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-t",
        "50",
        "-M",
        "prepared",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "postgres",
        "postgres",
    ];
    let out = tokio::task::block_in_place(|| run_client(&cluster, "pgbench", &args, None));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = pooler.pooler.node_stats();
    assert!(stats.iter().all(|s| s.reads > 100), "every node served reads: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_always_mode_keeps_the_session_on_the_primary() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[1.0, 1.0, 1.0]);
    config.routing.disable_load_balance_on_write = pooler_core::config::WriteStickiness::Always;
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let primary = cluster.primary().port() as i32;
    let mut before = Vec::new();
    for _ in 0..30 {
        before.push(server_port(&client).await);
    }
    assert!(before.iter().any(|&p| p != primary), "reads are balanced before any write");
    client.batch_execute("INSERT INTO items (v) VALUES (7)").await.unwrap();
    // Let the standbys replay it, so read-your-writes alone would not hold reads back.
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    for _ in 0..30 {
        assert_eq!(server_port(&client).await, primary);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_holds_the_primary_and_one_read_node_for_the_session() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    config.pool.mode = PoolMode::Session;
    let pooler = TestPooler::start(config, None).await;
    let primary = cluster.primary().port() as i32;
    let mut read_nodes = std::collections::HashSet::new();
    // 16 sessions: all on one standby by chance has probability 2^-15.
    for _ in 0..16 {
        let client = pooler.connect("postgres").await;
        // Reads: always the same standby within one session (pgpool's
        // per-session choice), and the same backend process.
        let first: (i32, i32) = {
            let r = client.query_one("SELECT inet_server_port(), pg_backend_pid()", &[]).await.unwrap();
            (r.get(0), r.get(1))
        };
        assert_ne!(first.0, primary);
        read_nodes.insert(first.0);
        for _ in 0..10 {
            let r = client.query_one("SELECT inet_server_port(), pg_backend_pid()", &[]).await.unwrap();
            assert_eq!((r.get::<_, i32>(0), r.get::<_, i32>(1)), first);
        }
        // Writes go to the primary, on one backend for the whole session.
        let w1: i32 =
            client.query_one("INSERT INTO items (v) VALUES (1) RETURNING pg_backend_pid()", &[]).await.unwrap().get(0);
        let w2: i32 =
            client.query_one("INSERT INTO items (v) VALUES (2) RETURNING pg_backend_pid()", &[]).await.unwrap().get(0);
        assert_eq!(w1, w2, "one primary connection per session");
        // A prepared statement works on whichever node runs it.
        let stmt = client.prepare("SELECT $1::int + 1").await.unwrap();
        for i in 0..5 {
            assert_eq!(client.query_one(&stmt, &[&i]).await.unwrap().get::<_, i32>(0), i + 1);
        }
        // SET reaches both connections of the session.
        client.batch_execute("SET application_name = 'two-nodes'").await.unwrap();
        let r = client.query_one("SELECT current_setting('application_name')", &[]).await.unwrap();
        assert_eq!(r.get::<_, String>(0), "two-nodes");
    }
    assert_eq!(read_nodes.len(), 2, "sessions are spread over both standbys: {read_nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_level_balancing_in_session_mode_spreads_one_sessions_reads() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    config.pool.mode = PoolMode::Session;
    config.routing.statement_level_load_balance = true;
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let mut ports = std::collections::HashSet::new();
    for _ in 0..40 {
        ports.insert(server_port(&client).await);
    }
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(!ports.contains(&(cluster.primary().port() as i32)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_transaction_read_only_transactions_are_balanced() {
    let cluster = three_nodes().await;
    let pooler = TestPooler::start(routed_config(&cluster, &[0.0, 1.0, 1.0]), None).await;
    let mut cfg = pooler.pg_config("postgres", "postgres");
    cfg.options("-c default_transaction_read_only=on");
    let client = connect_with(cfg).await.unwrap();
    for _ in 0..10 {
        client.batch_execute("BEGIN").await.unwrap();
        assert_ne!(server_port(&client).await, cluster.primary().port() as i32);
        client.batch_execute("COMMIT").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_standby_leaves_the_read_set_and_returns_when_caught_up() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    config.health.period = Duration::from_millis(100);
    config.health.lag_threshold_bytes = 1 << 20;
    config.routing.read_your_writes = false;
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let lagging_port = cluster.standbys()[0].port() as i32;
    cluster.standbys()[0].query_one("SELECT pg_wal_replay_pause()").unwrap();
    // A few MB of WAL on the primary, written directly.
    cluster
        .primary()
        .query_one("WITH x AS (INSERT INTO items (v) SELECT g FROM generate_series(1, 100000) g RETURNING 1) SELECT count(*) FROM x")
        .unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(20), || p.node_stats()[1].lagging).await, "{:?}", p.node_stats());
    for _ in 0..50 {
        assert_ne!(server_port(&client).await, lagging_port, "no reads on the lagging standby");
    }
    cluster.standbys()[0].query_one("SELECT pg_wal_replay_resume()").unwrap();
    assert!(eventually(Duration::from_secs(20), || !p.node_stats()[1].lagging).await, "{:?}", p.node_stats());
    let mut back = false;
    for _ in 0..60 {
        back |= server_port(&client).await == lagging_port;
    }
    assert!(back, "the standby serves reads again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_leaves_the_read_set_and_rejoins_when_back() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    for _ in 0..10 {
        server_port(&client).await;
    }
    let standby = cluster.standbys()[0].clone();
    tokio::task::block_in_place(|| standby.stop(pooler_testkit::StopMode::Fast)).unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(10), || !p.node_stats()[1].up).await, "{:?}", p.node_stats());
    // Reads keep flowing, with no errors, to the other standby.
    for _ in 0..50 {
        assert_eq!(server_port(&client).await, cluster.standbys()[1].port() as i32);
    }
    tokio::task::block_in_place(|| standby.start()).unwrap();
    assert!(eventually(Duration::from_secs(20), || p.node_stats()[1].up).await, "{:?}", p.node_stats());
    let mut back = false;
    for _ in 0..60 {
        back |= server_port(&client).await == standby.port() as i32;
    }
    assert!(back, "the standby serves reads again");
}

/// Passive discovery: another tool (here pg_ctl) promotes a standby after the
/// primary died; the pooler finds the new primary and routes writes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_done_outside_the_pooler_is_discovered_and_idle_clients_write_to_the_new_primary() {
    let cluster = replicated(1).await;
    let mut config = routed_config(&cluster, &[1.0, 1.0]);
    config.routing.load_balance = false;
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let idle = pooler.connect("postgres").await;
    idle.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();

    let (old, new) = (cluster.primary().clone(), cluster.standbys()[0].clone());
    tokio::task::block_in_place(|| old.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    tokio::task::block_in_place(|| new.promote()).unwrap();
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(20), || p.primary_node() == 1).await, "new primary discovered");
    // The idle client's next transaction goes to the new primary, no reconnect.
    idle.batch_execute("INSERT INTO items (v) VALUES (2)").await.unwrap();
    let r = idle.query_one("SELECT count(*), inet_server_port() FROM items", &[]).await.unwrap();
    assert_eq!(r.get::<_, i64>(0), 2);
    assert_eq!(r.get::<_, i32>(1), new.port() as i32);
    // New clients too.
    let fresh = pooler.connect("postgres").await;
    fresh.batch_execute("INSERT INTO items (v) VALUES (3)").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_detaches_and_attaches_a_standby() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[0.0, 1.0, 1.0]);
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    assert_eq!(pooler.pooler.detach_node(0).await, Err(NodeCommandError::IsPrimary(0)));
    pooler.pooler.detach_node(1).await.unwrap();
    assert_eq!(pooler.pooler.cluster().nodes[1].status, Status::Down);
    // Health checks keep running; the operator's word holds.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..40 {
        assert_eq!(server_port(&client).await, cluster.standbys()[1].port() as i32);
    }
    pooler.pooler.attach_node(1).await.unwrap();
    let port = cluster.standbys()[0].port() as i32;
    let back = eventually_async(Duration::from_secs(10), || async { server_port(&client).await == port }).await;
    assert!(back, "reads reach the attached standby again");
}

/// The primary is dead and nothing promotes a standby: clients still log in
/// and read from the standbys; writes fail with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_dead_clients_still_log_in_and_read_from_standbys() {
    let cluster = three_nodes().await;
    let mut config = routed_config(&cluster, &[1.0, 1.0, 1.0]);
    config.health.period = Duration::from_millis(100);
    // Writes wait this long for a new primary before they fail.
    config.failover.search_primary_node_timeout = Duration::from_secs(1);
    let pooler = TestPooler::start(config, None).await;
    let before = pooler.connect("postgres").await;
    assert_eq!(before.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get::<_, i64>(0), 0);
    let primary = cluster.primary().clone();
    tokio::task::block_in_place(|| primary.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    for _ in 0..10 {
        let client = pooler.connect("postgres").await;
        let r = client.query_one("SELECT count(*), pg_is_in_recovery() FROM items", &[]).await.unwrap();
        assert!(r.get::<_, bool>(1), "served by a standby");
        // A client from before the death reads on too.
        let n: i64 = before.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
        assert_eq!(n, 0);
    }
    let e = before.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap_err();
    assert!(sqlstate(&e).is_some() || e.is_closed(), "{e}");
}

/// A tenant routing policy (by application_name) keeps each tenant's reads
/// on its own standby, simple and extended protocol, read-only blocks too;
/// its writes still go to the primary, and after a write its reads never
/// miss it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_policy_pins_a_tenants_reads_but_never_its_writes() {
    use pooler_core::{RouteChoice, RouteRequest, RoutingPolicy};
    struct ByTenant;
    impl RoutingPolicy for ByTenant {
        fn choose(&self, r: &RouteRequest<'_>) -> RouteChoice {
            match r.application_name {
                "tenant-a" => RouteChoice::Node(1),
                "tenant-b" => RouteChoice::Node(2),
                "admin" => RouteChoice::Primary,
                _ => RouteChoice::Default,
            }
        }
    }
    let cluster = three_nodes().await;
    let builder = pooler_core::Pooler::builder(routed_config(&cluster, &[1.0, 1.0, 1.0]))
        .routing_policy(std::sync::Arc::new(ByTenant));
    let pooler = TestPooler::start_built(builder).await;
    let ports: Vec<i32> = cluster.nodes().map(|n| n.port() as i32).collect();
    let connect = |app: &str| {
        let mut c = pooler.pg_config("postgres", "postgres");
        c.application_name(app);
        connect_with(c)
    };
    let (a, b, admin) =
        (connect("tenant-a").await.unwrap(), connect("tenant-b").await.unwrap(), connect("admin").await.unwrap());
    for _ in 0..30 {
        assert_eq!(port_and_recovery(&a).await, (ports[1], true));
        assert_eq!(port_and_recovery(&b).await, (ports[2], true));
        assert_eq!(port_and_recovery(&admin).await, (ports[0], false));
        let extended: i32 = b.query_one("SELECT inet_server_port() WHERE $1::int > 0", &[&1i32]).await.unwrap().get(0);
        assert_eq!(extended, ports[2]);
    }
    a.batch_execute("BEGIN READ ONLY").await.unwrap();
    assert_eq!(server_port(&a).await, ports[1], "a read-only block goes where the policy says");
    a.batch_execute("COMMIT").await.unwrap();
    // A write through the same policy: on the primary (a standby would refuse it).
    for i in 0..5 {
        let r = a
            .query_one("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port(), pg_is_in_recovery()", &[&i])
            .await
            .unwrap();
        assert_eq!((r.get::<_, i32>(0), r.get::<_, bool>(1)), (ports[0], false));
        // Read-your-writes wins over the policy: the tenant's node once it has the write, else the primary.
        let n: i64 = a.query_one("SELECT count(*) FROM items WHERE v = $1", &[&i]).await.unwrap().get(0);
        assert!(n >= 1, "the session sees its own write");
        assert_ne!(server_port(&a).await, ports[2]);
    }
    let stats = pooler.pooler.node_stats();
    assert!(stats[1].reads >= 30 && stats[2].reads >= 60, "{stats:?}");
}

async fn port_and_recovery(client: &tokio_postgres::Client) -> (i32, bool) {
    let r = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]).await.unwrap();
    (r.get(0), r.get(1))
}
