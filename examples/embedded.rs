//! Embedding the pooler in your own service: build the configuration in code,
//! bind the listener yourself, and stop the pooler with your own shutdown
//! signal. Nothing here is special to the binary; `pooler-bin` does the same.
//!
//! Run against a PostgreSQL on 127.0.0.1:5432 that trusts local connections:
//! `cargo run -p pooler-examples --example embedded -- 127.0.0.1:5432`
//! then `psql -h 127.0.0.1 -p 6433 -U postgres`.

use std::time::Duration;

use pooler_core::config::{AuthMethod, NodeConfig};
use pooler_core::{Config, Pooler};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5432".into());
    let (host, port) = backend.rsplit_once(':').ok_or("expected host:port")?;

    let mut config = Config::with_nodes(vec![NodeConfig::new(host, port.parse()?)]);
    config.auth.method = AuthMethod::Trust;
    config.server.listen = "127.0.0.1:6433".into();
    config.pool.size = 5;
    config.pool.checkout_timeout = Duration::from_secs(10);

    let listener = tokio::net::TcpListener::bind(config.listen_addr()?).await?;
    let pooler = Pooler::new(config)?;
    println!("embedded pooler on 127.0.0.1:6433 in front of {backend}; Ctrl-C stops it");
    pooler
        .run(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
