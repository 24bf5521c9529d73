//! What every example needs around the part it shows: a throwaway
//! PostgreSQL cluster (through `pooler-testkit`), a configuration for it, a
//! pooler running on a loopback port, and clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pooler_core::config::{AuthMethod, NodeConfig, PoolMode};
use pooler_core::{Config, Pooler, Status};
use pooler_testkit::Cluster;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The error type of the examples.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Starts a primary with `standbys` streaming standbys, runs `init_sql` on
/// the primary first (the standbys are cloned after it), and waits until
/// the standbys have caught up.
pub async fn cluster(standbys: usize, init_sql: &str) -> Result<Cluster, BoxError> {
    let init_sql = init_sql.to_owned();
    let cluster = tokio::task::spawn_blocking(move || {
        let mut b = Cluster::builder().standbys(standbys);
        if !init_sql.is_empty() {
            b = b.init_sql(&init_sql);
        }
        b.start()
    })
    .await??;
    Ok(cluster)
}

/// Transaction pooling in front of every node of `cluster`, clients
/// trusted, reads load-balanced (equal weights), health checks every 200 ms.
pub fn config(cluster: &Cluster) -> Config {
    let nodes = cluster.nodes().map(|n| NodeConfig::new(n.host(), n.port())).collect();
    let mut config = Config::with_nodes(nodes);
    config.auth.method = AuthMethod::Trust;
    config.server.log_connections = false;
    config.pool.mode = PoolMode::Transaction;
    config.pool.size = 4;
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(200);
    config
}

/// A pooler serving a loopback port in this process.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The pooler, for inspection while it runs.
    pub pooler: Arc<Pooler>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Runs `pooler` on a fresh loopback port and waits (10 s at most)
    /// until every node has been checked once, so that reads can reach the
    /// standbys from the first query.
    pub async fn start(pooler: Pooler) -> std::io::Result<Running> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Running::start_on(pooler, listener).await)
    }

    /// [`Running::start`] on `listener`.
    pub async fn start_on(pooler: Pooler, listener: TcpListener) -> Running {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let pooler = Arc::new(pooler);
        let (stop, stopped) = oneshot::channel::<()>();
        let p = pooler.clone();
        let task = tokio::spawn(async move {
            p.run(listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let p = pooler.clone();
        eventually(Duration::from_secs(10), || {
            let checked = p.cluster().nodes.iter().all(|n| n.status != Status::Waiting);
            async move { checked }
        })
        .await;
        Running { addr, pooler, stop, task }
    }

    /// A client of the pooler: `user` on database `postgres`, with
    /// `application_name` set when not empty.
    pub async fn connect(&self, user: &str, application_name: &str) -> Result<tokio_postgres::Client, BoxError> {
        let mut c = tokio_postgres::Config::new();
        c.host(self.addr.ip().to_string())
            .port(self.addr.port())
            .user(user)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        if !application_name.is_empty() {
            c.application_name(application_name);
        }
        let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Shuts the pooler down gracefully and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The port of the server that answered, and whether it is a standby.
pub async fn served_by(client: &tokio_postgres::Client) -> Result<(u16, bool), BoxError> {
    let row = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]).await?;
    Ok((u16::try_from(row.get::<_, i32>(0))?, row.get(1)))
}
