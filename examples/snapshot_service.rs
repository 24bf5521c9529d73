//! The pooler embedded in a small HTTP service that serves the node snapshot
//! as JSON. Starts a throwaway primary and standby, the pooler on a loopback
//! port and the HTTP API on another, until Ctrl-C (the code:
//! `src/snapshot.rs`).
//!
//! `cargo run -p pooler-examples --example snapshot_service`
//! then `curl http://127.0.0.1:<port>/nodes`.

use pooler_examples::{demo, snapshot};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), demo::BoxError> {
    let cluster = demo::cluster(1, "").await?;
    let pooler = pooler_core::Pooler::builder(demo::config(&cluster)).build()?;
    let postgres = TcpListener::bind("127.0.0.1:0").await?;
    let api = TcpListener::bind("127.0.0.1:0").await?;
    println!("psql -h 127.0.0.1 -p {} -U postgres postgres", postgres.local_addr()?.port());
    println!("curl http://{}/nodes", api.local_addr()?);
    println!("Ctrl-C stops the service and removes the cluster");
    snapshot::run(pooler, postgres, api, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
