//! Embedding examples for `pooler-core`. Each example is a file beside
//! `Cargo.toml` whose `main` calls the function here that does the work, so
//! the tests in `tests/` run exactly what the example runs:
//!
//! | example | shows | module |
//! |---|---|---|
//! | `embedded` | the pooler inside your own tokio service | [`embedded`] |
//! | `patroni_hook` | a failover hook calling a Patroni-style REST API (with a stand-in server) | [`patroni`] |
//! | `health_check` | a custom health check: the built-in one plus a rule | [`health`] |
//! | `tenant_routing` | a routing policy keeping each tenant's reads on its standby | [`tenant`] |
//! | `snapshot_service` | an HTTP service serving the node snapshot as JSON | [`snapshot`] |
//!
//! `cargo run -p pooler-examples --example tenant_routing` (PostgreSQL
//! installed: all but `embedded` start a throwaway cluster with
//! `pooler-testkit`, as root too).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod demo;
pub mod embedded;
pub mod health;
pub mod http;
pub mod patroni;
pub mod snapshot;
pub mod tenant;
