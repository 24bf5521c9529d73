//! A failover hook calling a Patroni-style REST API (`POST /failover`), with
//! a local stand-in for the API that promotes the standby with
//! `pg_promote()`. Starts a throwaway primary and standby, kills the primary
//! and shows the failover (the code: `src/patroni.rs`).
//!
//! `cargo run -p pooler-examples --example patroni_hook`

use pooler_examples::{demo, patroni};

#[tokio::main]
async fn main() -> Result<(), demo::BoxError> {
    let cluster = demo::cluster(1, "").await?;
    println!("primary on port {}, standby on port {}", cluster.primary().port(), cluster.standbys()[0].port());
    println!("killing the primary; the pooler's failover hook calls the stand-in API...");
    let outcome = patroni::demo(&cluster).await?;
    for r in &outcome.requests {
        println!("API received: {} {} {}", r.method, r.path, r.body);
    }
    println!("writes now go to node {}; a write landed on port {}", outcome.primary, outcome.write_port);
    Ok(())
}
