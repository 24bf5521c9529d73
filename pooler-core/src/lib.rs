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
pub mod cancel;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pool;
pub mod protocol;
mod server;
mod session;
mod txn;

pub use config::Config;
pub use error::Error;
pub use server::{Pooler, StartError};
