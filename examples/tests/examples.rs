//! Runs every example's logic against real PostgreSQL (throwaway clusters
//! from `pooler-testkit`) and checks what it shows.

use std::time::Duration;

use pooler_core::{Role, Status};
use pooler_examples::{demo, embedded, health, http, patroni, snapshot, tenant};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_serves_clients_until_its_shutdown_signal() {
    let cluster = demo::cluster(0, "").await.unwrap();
    let backend = format!("{}:{}", cluster.primary().host(), cluster.primary().port());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(embedded::serve(embedded::config(&backend).unwrap(), listener, async {
        let _ = stopped.await;
    }));
    let out =
        tokio::task::spawn_blocking(move || pooler_testkit::psql_at(port, "postgres", "postgres", "SELECT 40 + 2"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(out, "42");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), service).await.expect("drains").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_hook_calls_the_api_which_promotes_the_standby() {
    let cluster = demo::cluster(1, "").await.unwrap();
    let outcome = patroni::demo(&cluster).await.unwrap();
    assert_eq!(outcome.requests.len(), 1, "{:?}", outcome.requests);
    let r = &outcome.requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/failover"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = http::parse_flat_object(&r.body).expect("a JSON object");
    assert_eq!(body, vec![("leader".to_owned(), "pg0".to_owned()), ("candidate".to_owned(), "pg1".to_owned())]);
    // The standby really is a primary now, and took the write.
    let standby = cluster.standbys()[0].clone();
    let in_recovery =
        tokio::task::spawn_blocking(move || standby.query_one("SELECT pg_is_in_recovery()")).await.unwrap().unwrap();
    assert_eq!(in_recovery, "f");
    assert_eq!(outcome.primary, 1);
    assert_eq!(outcome.write_port, cluster.standbys()[0].port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_hook_reports_a_refusal_as_failure() {
    use pooler_core::{FailoverContext, FailoverHook, NodeInfo};
    // No member is called "pg1" here: the stand-in answers 412.
    let api = patroni::StandIn::start(Vec::new()).await.unwrap();
    let hook = patroni::PatroniHook::new(api.addr().to_string(), vec!["pg0".into(), "pg1".into()]);
    let node = |id| NodeInfo { id, host: "127.0.0.1".into(), port: 1, data_dir: None };
    let ctx = FailoverContext { subject: node(0), new_main: node(1), old_primary: node(0) };
    assert!(hook.promotes());
    assert!(!hook.failover(&ctx).await.succeeded());
    // Node 5 has no member name: nothing is sent.
    let ctx = FailoverContext { new_main: node(5), ..ctx };
    assert!(!hook.failover(&ctx).await.succeeded());
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_fails_a_standby_whose_replay_is_paused() {
    let cluster = demo::cluster(1, "").await.unwrap();
    let o = health::demo(&cluster).await.unwrap();
    assert!(o.standby_read_before, "{o:?}");
    assert_eq!(o.status_while_paused, Status::Down, "{o:?}");
    assert!(o.cause_while_paused.contains("WAL replay is paused"), "{o:?}");
    assert!(!o.standby_read_while_paused, "{o:?}");
    assert_eq!(o.status_after, Status::Up, "{o:?}");
    assert!(o.standby_read_after, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_routing_keeps_each_tenants_reads_on_its_standby_and_writes_on_the_primary() {
    let cluster = demo::cluster(2, tenant::INIT_SQL).await.unwrap();
    let ports: Vec<u16> = cluster.nodes().map(|n| n.port()).collect();
    let o = tenant::demo(&cluster, 20).await.unwrap();
    let reads = |user: &str| o.reads.iter().find(|(u, _)| u == user).map(|(_, r)| r.clone()).unwrap();
    assert!(reads("tenant_a").iter().all(|&p| p == ports[1]), "{o:?}");
    assert!(reads("tenant_b").iter().all(|&p| p == ports[2]), "{o:?}");
    // Everyone else is balanced over all three as configured.
    let others = reads("postgres");
    assert_eq!(others.len(), 20);
    assert!(others.iter().any(|&p| p != others[0]), "spread: {others:?}");
    for (user, port, standby) in &o.writes {
        assert_eq!((*port, *standby), (ports[0], false), "{user}'s write on the primary");
    }
    // The policy's own rule: a tenant whose standby is down reads from the
    // primary, not from the other tenant's standby.
    use pooler_core::{RouteChoice, RouteRequest, RoutingPolicy};
    let policy = tenant::TenantRouting::new([("tenant_a", 1)]);
    let mut s = pooler_core::Snapshot::initial(&demo::config(&cluster), std::time::SystemTime::now());
    s.nodes[1].status = Status::Up;
    let ask = |s: &pooler_core::Snapshot, user| {
        policy.choose(&RouteRequest::new(pooler_core::RequestClass::Read, user, "postgres", "", s))
    };
    assert_eq!(ask(&s, "tenant_a"), RouteChoice::Node(1));
    assert_eq!(ask(&s, "someone"), RouteChoice::Default);
    s.nodes[1].status = Status::Down;
    assert_eq!(ask(&s, "tenant_a"), RouteChoice::Primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_service_lists_every_node_with_its_role() {
    let cluster = demo::cluster(1, "").await.unwrap();
    let pooler = pooler_core::Pooler::builder(demo::config(&cluster)).build().unwrap();
    let postgres = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(snapshot::run(pooler, postgres, api, async {
        let _ = stopped.await;
    }));
    let get = |path: &'static str| {
        let addr = api_addr.clone();
        async move { http::request(&addr, "GET", path, None, Duration::from_secs(5)).await.unwrap() }
    };
    // Until the first health checks are in, the nodes are "waiting".
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let json = loop {
        let (status, body) = get("/nodes").await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        if json["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "up") {
            break json;
        }
        assert!(std::time::Instant::now() < deadline, "nodes never all up: {json}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for (i, node) in cluster.nodes().enumerate() {
        assert_eq!(nodes[i]["id"], i);
        assert_eq!(nodes[i]["port"], node.port());
        assert_eq!(nodes[i]["host"], node.host());
    }
    assert_eq!(
        (nodes[0]["role"].as_str(), nodes[0]["pg_role"].as_str()),
        (Some(Role::Primary.as_str()), Some("primary"))
    );
    assert_eq!(
        (nodes[1]["role"].as_str(), nodes[1]["pg_role"].as_str()),
        (Some(Role::Standby.as_str()), Some("standby"))
    );
    assert_eq!(json["primary"], 0);
    assert_eq!(get("/primary").await, (200, "{\"primary\":0,\"available\":true}".to_owned()));
    assert_eq!(get("/elsewhere").await.0, 404);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), service).await.expect("stops").unwrap();
}
