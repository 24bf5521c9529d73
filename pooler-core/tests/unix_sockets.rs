//! End-to-end: the pooler on a Unix domain socket (`psql -h <dir>` and
//! pgbench find it as they find PostgreSQL's), `peer` authentication by the
//! client's OS user, and nodes reached through their socket directory.

mod common;

use std::path::PathBuf;

use common::*;
use pooler_core::config::{AuthMethod, ClientTlsMode, NodeConfig};
use pooler_core::{Listeners, Pooler};
use pooler_testkit::Cluster;

/// A fresh directory anyone may connect in (the server's OS user too).
fn socket_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pooler-sock-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Starts `config`'s pooler on loopback TCP and on a Unix socket in `dir`
/// with the TCP port's number.
async fn start_with_socket(config: pooler_core::Config, dir: &std::path::Path) -> TestPooler {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listeners = Listeners::from(tcp).with_unix_socket(dir, port, 0o777).await.expect("Unix socket");
    TestPooler::serve_on(Pooler::new(config).expect("valid config"), listeners).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_pgbench_reach_the_pooler_through_its_unix_socket() {
    let cluster = primary_only().await;
    let dir = socket_dir("psql");
    let pooler = start_with_socket(trust_config(&cluster), &dir).await;
    let port = pooler.port().to_string();
    let host = dir.display().to_string();
    assert!(dir.join(format!(".s.PGSQL.{port}")).exists(), "named as PostgreSQL names its socket");
    let out = run_client(&cluster, "psql", &["-h", &host, "-p", &port, "-U", "postgres", "-XAtc", "SELECT 7"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    let p = cluster.primary().port().to_string();
    let init = run_client(
        &cluster,
        "pgbench",
        &["-h", "127.0.0.1", "-p", &p, "-U", "postgres", "-i", "-s", "1", "-q", "postgres"],
        None,
    );
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let bench = run_client(
        &cluster,
        "pgbench",
        &["-h", &host, "-p", &port, "-U", "postgres", "-c", "4", "-j", "2", "-t", "50", "-S", "postgres"],
        None,
    );
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "{text}{}", String::from_utf8_lossy(&bench.stderr));
    assert!(text.contains("number of transactions actually processed: 200/200"), "{text}");
    drop(pooler);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_auth_admits_the_clients_os_user_and_refuses_any_other_and_tcp() {
    let Some((server_user, _, _)) = pooler_testkit::server_os_user() else {
        // Not root: the tests' own user is the server's; there is no second
        // OS user to be refused as. (CI runs as root.)
        eprintln!("skipped: needs root to run psql as another OS user");
        return;
    };
    let cluster = primary_only().await;
    let dir = socket_dir("peer");
    let mut config = trust_config(&cluster);
    config.auth.method = AuthMethod::Peer;
    let pooler = start_with_socket(config, &dir).await;
    let (host, port) = (dir.display().to_string(), pooler.port().to_string());
    let psql_as = |os_user_is_server: bool, user: &str| {
        let mut cmd = std::process::Command::new(cluster.bin_dir().join("psql"));
        cmd.args(["-h", &host, "-p", &port, "-U", user, "-d", "postgres", "-XAtc", "SELECT current_user"]);
        cmd.env("PGCONNECT_TIMEOUT", "10").env_remove("PGPASSWORD");
        if os_user_is_server {
            pooler_testkit::run_as_server_user(&mut cmd);
        }
        let out = cmd.output().expect("psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The server's OS user logs in as the role of the same name.
    let (ok, out, err) = psql_as(true, &server_user);
    assert!(ok && out == server_user, "{err}");
    // root asking to be that role: refused, as PostgreSQL refuses.
    let (ok, _, err) = psql_as(false, &server_user);
    assert!(!ok && err.contains(&format!("Peer authentication failed for user \"{server_user}\"")), "{err}");
    // Over TCP there is no peer to ask.
    let e = connect_with(pooler.pg_config(&server_user, "postgres")).await.err().expect("peer over TCP refused");
    assert!(message(&e).contains("only supported on local"), "{}", message(&e));
    drop(pooler);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reached_through_their_socket_directory_serve_sessions_and_health_checks() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::builder().standbys(1).start().expect("start PostgreSQL"))
        .await
        .unwrap();
    let socket_dir = cluster.socket_dir().display().to_string();
    let nodes = cluster.nodes().map(|n| NodeConfig::new(socket_dir.clone(), n.port())).collect();
    let mut config = pooler_core::Config::with_nodes(nodes);
    config.auth.method = AuthMethod::Trust;
    config.server.log_connections = false;
    config.routing.load_balance = true;
    let pooler = TestPooler::start(config, None).await;
    let snapshot = pooler.pooler.cluster();
    assert!(snapshot.nodes.iter().all(|n| n.status == pooler_core::Status::Up), "{snapshot:?}");
    let client = pooler.connect("postgres").await;
    // A session over a Unix socket has no client address on the server.
    client.batch_execute("CREATE TABLE IF NOT EXISTS t_sock (x int)").await.unwrap();
    let row = client.query_one("SELECT inet_client_addr() IS NULL", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0), "the server connection runs over the Unix socket");
    let nodes = psql(pooler.port(), "postgres", "SHOW pool_nodes");
    assert!(nodes.contains(&socket_dir), "SHOW pool_nodes names the socket directory: {nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_over_tcp_does_not_apply_to_unix_socket_clients() {
    let cluster = primary_only().await;
    let certs = common::tls::Certs::new("unix-tls");
    let (cert, key) = certs.server("pooler", &["localhost"]);
    let mut config = trust_config(&cluster);
    config.client_tls.sslmode = ClientTlsMode::Require;
    config.client_tls.cert_file = Some(cert);
    config.client_tls.key_file = Some(key);
    let dir = socket_dir("tls");
    let pooler = start_with_socket(config, &dir).await;
    let (host, port) = (dir.display().to_string(), pooler.port().to_string());
    let out = run_client(&cluster, "psql", &["-h", &host, "-p", &port, "-U", "postgres", "-XAtc", "SELECT 1"], None);
    assert!(out.status.success(), "local clients are not asked for TLS: {}", String::from_utf8_lossy(&out.stderr));
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.err().expect("plain TCP refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    drop(pooler);
    let _ = std::fs::remove_dir_all(&dir);
}
