//! pooler-core: a PostgreSQL connection pooler and query router engine, as a library.
//!
//! The entry point is [`Pooler`]: build it from a [`Config`] with
//! [`Pooler::builder`], optionally plugging in your own [`HealthCheck`],
//! [`FailoverHook`] and [`RoutingPolicy`] (each replaces a built-in one:
//! [`SqlHealthCheck`], [`CommandHook`], and the router's own choice), then
//! hand it a listener and a shutdown future with [`Pooler::run`]. While it
//! runs, [`Pooler::cluster`] gives the latest [`Snapshot`] of the nodes,
//! [`Pooler::node_stats`] the routing counters and [`Pooler::pools`] the
//! connection pools. The library never sets up logging, installs signal
//! handlers or builds a runtime; the binary (`pooler-bin`) does that.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = pooler_core::Config::load("pooler.toml".as_ref())?;
//! let listener = tokio::net::TcpListener::bind(config.listen_addr()?).await?;
//! let pooler = pooler_core::Pooler::builder(config).build()?;
//! // Any future is the shutdown signal: tokio::signal::ctrl_c(), a channel...
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! pooler.run(listener, async { let _ = stopped.await; }).await;
//! # Ok(()) }
//! ```
//!
//! What is public: [`Pooler`] and its builder, the configuration
//! ([`config`]), the errors, the hook traits with what they are given and
//! return, the cluster snapshot types, the statistics the pooler hands out,
//! and the metric names ([`metrics`]). Everything else (the wire protocol,
//! the classifier, pools' internals, the relay) is private and may change.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod access;
mod admin;
mod auth;
mod auth_query;
mod backend;
mod buffers;
mod cancel;
mod certificate;
mod classify;
mod clients;
mod cluster;
pub mod config;
mod control;
pub mod convert;
pub mod coordination;
mod error;
mod handover;
mod hba;
mod listen;
mod lsn;
mod memory;
pub mod metrics;
mod params;
mod pause;
mod pool;
mod prepared;
mod protocol;
mod relay;
mod reload;
mod route;
mod runtime;
mod server;
mod session;
mod show;
mod slots;
mod sql;
mod tls;
mod topology;
mod transport;
pub mod upgrade;

pub use auth::{PasswordFile, PasswordFileError};
pub use cluster::{
    CheckError, CheckFuture, CommandHook, FailoverContext, FailoverHook, HealthCheck, HookFailure, HookFuture,
    HookOutcome, NodeCommandError, NodeInfo, Observation, ReplicaState, SqlHealthCheck,
};
pub use config::{Config, ConfigError};
pub use coordination::{CoordinationStore, HaStatus, StoreError};
pub use error::{Error, Failure, Retry, Side, Stage};
pub use hba::{HbaError, HbaRules};
pub use listen::{HandedOver, ListenError, Listeners};
pub use pool::{Pool, PoolKey, PoolStats, Pools};
pub use protocol::ProtocolError;
pub use reload::{ReloadError, ReloadReport};
pub use route::{NodeStats, RequestClass, RouteChoice, RouteRequest, RoutingPolicy};
pub use server::{Adopted, Pooler, PoolerBuilder, StartError};
pub use tls::TlsError;
pub use topology::{NodeState, Role, Snapshot, Status, Topology};

/// Not API: what the benchmarks, fuzz targets and end-to-end tests reach
/// inside the crate (wire protocol codec, classifier, router). May change
/// at any commit.
#[doc(hidden)]
pub mod internals {
    pub use crate::classify::{Classifier, ClassifierLists, Flags};
    pub use crate::protocol::{split_frame, split_startup, StartupPacket, MAX_STARTUP_PACKET};
    pub use crate::route::Router;

    /// Writers of protocol messages.
    pub mod write {
        pub use crate::protocol::write::{backend_key_data, parameter_status, query, startup_message};
    }

    /// Typed views of protocol messages.
    pub mod messages {
        pub use crate::protocol::messages::{BackendKeyData, Bind, ErrorFields, Target};
    }
}

/// Entry points for the fuzz targets into parsers that are not public API.
#[doc(hidden)]
pub mod fuzzing {
    /// Runs the transaction-pooling SQL reader over `sql`; returns whether it
    /// decided to pin (so the optimizer keeps the call).
    pub fn session_facts(sql: &[u8]) -> bool {
        let f = crate::relay::facts::analyze(sql);
        for name in &f.parameters {
            assert!(!name.is_empty());
        }
        f.pin.is_some() || f.reserved_name
    }

    /// Feeds `client` and `server` bytes, in `chunk`-sized pieces, to a relay
    /// core in transaction (`mode` 0), statement (1) or session (2) mode,
    /// answering nothing: whatever the bytes, it relays or fails, never
    /// panics. Returns whether it failed.
    pub fn relay_core(mode: u8, client: &[u8], server: &[u8], chunk: usize) -> bool {
        crate::relay::fuzz(mode, client, server, chunk)
    }

    /// Parses `data` as an hba file (includes read as missing files) and,
    /// when it parses, decides for a TCP, a TLS and a Unix-socket client
    /// (twice, the same answer): never a panic, and an error always names
    /// the file and line.
    pub fn hba(data: &[u8]) -> bool {
        let text = String::from_utf8_lossy(data);
        let missing = |p: &std::path::Path| {
            Err(crate::hba::HbaError::Read {
                path: p.display().to_string(),
                source: std::io::ErrorKind::NotFound.into(),
            })
        };
        match crate::hba::HbaRules::parse_with(&text, "hba.conf", &missing) {
            Ok(rules) => {
                use crate::hba::{Connection, SelfOnly, Transport};
                let addr = std::net::IpAddr::from([10, 0, 0, 1]);
                let mut any = false;
                for transport in
                    [Transport::Host { addr, tls: false }, Transport::Host { addr, tls: true }, Transport::Local]
                {
                    let c = Connection { transport, database: "db", user: "user" };
                    let first = rules.decide(&c, &SelfOnly);
                    assert_eq!(first, rules.decide(&c, &SelfOnly), "the same client, decided twice");
                    any |= matches!(first, Ok(Some(_)));
                }
                any
            }
            Err(e) => {
                let s = e.to_string();
                assert!(s.starts_with("hba.conf:") || s.starts_with("cannot read"), "{s}");
                false
            }
        }
    }

    /// Reads `data` as a client's or server's X.509 certificate, for the
    /// two fields the pooler takes from one (the subject's common name, the
    /// signature hash of the channel binding). Returns whether either was
    /// found.
    pub fn certificate(data: &[u8]) -> bool {
        crate::certificate::subject_common_name(data).is_some() | crate::certificate::end_point(data).is_some()
    }

    /// Reads `data` as the records poolers of a group write to the store (a
    /// pooler's view, the leader's state): another pooler, or anyone with
    /// access to the store, writes them. Returns whether either parsed.
    pub fn coordination_records(data: &[u8]) -> bool {
        use crate::coordination::record::{decode, votes, SharedState, View};
        let view = decode::<View>(data);
        let state = decode::<SharedState>(data);
        if let Some(v) = &view {
            let _ = votes(std::slice::from_ref(v), v, "127.0.0.1", 5432).majority();
        }
        view.is_some() || state.is_some()
    }

    /// Reads `data` as a socket handover message (without descriptors).
    pub fn handover(data: &[u8]) -> bool {
        crate::upgrade::fuzz_parse(data)
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
