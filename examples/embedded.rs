//! Embedding the pooler in your own service: build the configuration in code,
//! bind the listener yourself, and stop the pooler with your own shutdown
//! signal (the code: `src/embedded.rs`).
//!
//! Run against a PostgreSQL on 127.0.0.1:5432 that trusts local connections:
//! `cargo run -p pooler-examples --example embedded -- 127.0.0.1:5432`
//! then `psql -h 127.0.0.1 -p 6433 -U postgres`.

use pooler_examples::demo::BoxError;
use pooler_examples::embedded;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backend = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5432".into());
    let config = embedded::config(&backend)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:6433").await?;
    println!("embedded pooler on 127.0.0.1:6433 in front of {backend}; Ctrl-C stops it");
    embedded::serve(config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
