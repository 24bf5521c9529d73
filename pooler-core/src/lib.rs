//! pooler-core: a PostgreSQL connection pooler and query router engine, as a library.
//!
//! The entry point is [`Pooler`]: build it from a [`Config`], then hand it a
//! listener and a shutdown future with [`Pooler::run`]. The library never sets
//! up logging, installs signal handlers or builds a runtime; the binary
//! (`pooler-bin`) does that.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
mod buffers;
pub mod cancel;
pub mod classify;
pub mod cluster;
pub mod config;
pub mod error;
mod lsn;
pub mod metrics;
mod params;
pub mod pool;
mod prepared;
pub mod protocol;
pub mod route;
mod runtime;
mod server;
mod session;
mod show;
mod sql;
pub mod topology;
mod txn;

pub use config::Config;
pub use error::Error;
pub use route::{RequestClass, RouteChoice, RouteRequest, RoutingPolicy};
pub use server::{Pooler, PoolerBuilder, StartError};

/// Entry points for the fuzz targets into parsers that are not public API.
#[doc(hidden)]
pub mod fuzzing {
    /// Runs the transaction-pooling SQL reader over `sql`; returns whether it
    /// decided to pin (so the optimizer keeps the call).
    pub fn session_facts(sql: &[u8]) -> bool {
        let f = crate::txn::facts::analyze(sql);
        for name in &f.parameters {
            assert!(!name.is_empty());
        }
        f.pin.is_some() || f.reserved_name
    }

    /// Reads `data` as the health probe's row (fields split at NUL bytes, an
    /// empty field being SQL NULL), and as a Query body for `SHOW pool_nodes`.
    pub fn cluster_inputs(data: &[u8]) -> bool {
        let row: Vec<Option<String>> =
            data.split(|&b| b == 0).map(|f| (!f.is_empty()).then(|| String::from_utf8_lossy(f).into_owned())).collect();
        let o = crate::cluster::fuzz_probe_row(&row);
        crate::show::is_show_pool_nodes(data) || o.in_recovery
    }
}
