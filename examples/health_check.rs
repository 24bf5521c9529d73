//! A custom health check: the built-in SQL check, plus "a standby whose WAL
//! replay is paused is failing". Starts a throwaway primary and standby,
//! pauses and resumes replay on the standby, and shows where reads go (the
//! code: `src/health.rs`).
//!
//! `cargo run -p pooler-examples --example health_check`

use pooler_examples::{demo, health};

#[tokio::main]
async fn main() -> Result<(), demo::BoxError> {
    let cluster = demo::cluster(1, "").await?;
    let o = health::demo(&cluster).await?;
    println!("before the pause: read served by a standby: {}", o.standby_read_before);
    println!(
        "replay paused: standby {} ({}); read served by a standby: {}",
        o.status_while_paused.as_str(),
        o.cause_while_paused,
        o.standby_read_while_paused
    );
    println!("replay resumed: standby {}; read served by a standby: {}", o.status_after.as_str(), o.standby_read_after);
    Ok(())
}
