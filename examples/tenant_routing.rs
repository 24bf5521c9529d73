//! A routing policy by tenant: `tenant_a` reads from standby 1, `tenant_b`
//! from standby 2, everyone else as configured; writes stay on the primary.
//! Starts a throwaway primary and two standbys (the code: `src/tenant.rs`).
//!
//! `cargo run -p pooler-examples --example tenant_routing`

use std::collections::BTreeMap;

use pooler_examples::{demo, tenant};

#[tokio::main]
async fn main() -> Result<(), demo::BoxError> {
    let cluster = demo::cluster(2, tenant::INIT_SQL).await?;
    let ports: Vec<u16> = cluster.nodes().map(|n| n.port()).collect();
    println!("nodes: primary {}, standbys {} and {}", ports[0], ports[1], ports[2]);
    let outcome = tenant::demo(&cluster, 20).await?;
    for (user, reads) in &outcome.reads {
        let mut by_port = BTreeMap::new();
        for p in reads {
            *by_port.entry(p).or_insert(0) += 1;
        }
        println!("{user}: reads by server port {by_port:?}");
    }
    for (user, port, standby) in &outcome.writes {
        println!("{user}: write on port {port} (standby: {standby})");
    }
    Ok(())
}
