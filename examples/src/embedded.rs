//! The smallest embedding: the configuration built in code, the listener
//! bound by the service, the pooler stopped by the service's own signal.
//! Nothing here is special to the binary; `pooler-bin` does the same.

use std::future::Future;
use std::time::Duration;

use pooler_core::config::{AuthMethod, NodeConfig};
use pooler_core::{Config, Pooler};
use tokio::net::TcpListener;

use crate::demo::BoxError;

/// Session pooling in front of the PostgreSQL at `backend` (`host:port`),
/// trusting clients, at most 5 server connections per user and database.
pub fn config(backend: &str) -> Result<Config, BoxError> {
    let (host, port) = backend.rsplit_once(':').ok_or("expected host:port")?;
    let mut config = Config::with_nodes(vec![NodeConfig::new(host, port.parse()?)]);
    config.auth.method = AuthMethod::Trust;
    config.pool.size = 5;
    config.pool.checkout_timeout = Duration::from_secs(10);
    Ok(config)
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), BoxError> {
    let pooler = Pooler::builder(config).build()?;
    pooler.run(listener, shutdown).await;
    Ok(())
}
