//! What every session shares at run time: the configuration, the pools,
//! the router, the way to the cluster controller, the cancel registry and
//! the pooler's lifecycle phase. Built by [`crate::server::Pooler`]; the
//! listener only hands it to each session.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::PasswordFile;
use crate::backend::ServerAddr;
use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::metrics as m;
use crate::pool::Pools;

/// Longest time a forwarded cancel may take to reach its server.
pub(crate) const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Lifecycle of the whole pooler (defined with the client registry, which
/// announces it to every session).
pub(crate) use crate::clients::Phase;

/// What every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration in force; a reload swaps it whole ([`Shared::config`]).
    pub(crate) live_config: arc_swap::ArcSwap<Config>,
    /// The password file in force; a reload swaps it whole.
    pub(crate) live_passwords: arc_swap::ArcSwapOption<PasswordFile>,
    /// The password file was given in memory (a reload keeps it rather
    /// than read `auth.password_file`).
    pub(crate) passwords_in_memory: bool,
    /// Per node slot, removed by a reload; held while a reload runs (one
    /// at a time).
    pub(crate) removed_nodes: std::sync::Mutex<Vec<bool>>,
    /// The file `RELOAD` reads again (`None`: built from memory).
    pub(crate) config_file: Option<std::path::PathBuf>,
    pub(crate) pools: Arc<Pools>,
    pub(crate) cancels: Arc<CancelRegistry>,
    /// Every node's address by index ([`Shared::node`]); a reload adds to it.
    pub(crate) node_addrs: crate::backend::NodeAddrs,
    pub(crate) phase: watch::Receiver<Phase>,
    /// Prepared statements of transaction-mode clients, by content.
    pub(crate) statements: crate::prepared::Registry,
    /// What the catalog said of unlisted functions, per database.
    pub(crate) functions: Arc<crate::classify::catalog::FunctionCatalog>,
    /// Chooses nodes for requests; holds the latest cluster snapshot.
    pub(crate) router: crate::route::Router,
    /// The way to the cluster controller.
    pub(crate) cluster: Arc<crate::cluster::Cluster>,
    /// Parameter sets clients share (most clients of a pool report the same).
    pub(crate) param_sets: ParamSets,
    /// The hba rules in force (`None`: no `auth.hba_file`, `auth.method`
    /// applies); swapped whole by a reload (`access::reload`).
    pub(crate) hba: arc_swap::ArcSwapOption<crate::hba::HbaRules>,
    /// Looks up users missing from the password file (`auth.auth_user` set).
    pub(crate) auth_query: Option<crate::auth_query::AuthQuery>,
    /// TLS towards clients and servers (reloadable).
    pub(crate) tls: crate::tls::TlsContexts,
    /// Every connected client (the admin console's views, KILL_CLIENT).
    pub(crate) clients: crate::clients::Clients,
    /// The relay buffers' memory and `server.max_memory`.
    pub(crate) memory: crate::memory::MemoryBudget,
    /// What operators change at run time (disabled databases, shutdown).
    pub(crate) control: crate::control::Control,
    /// `server.max_client_connections`: a place per client session.
    pub(crate) client_slots: crate::clients::ClientSlots,
    /// Where idle clients go while this process hands over to a successor.
    pub(crate) handover: arc_swap::ArcSwapOption<crate::upgrade::ClientSink>,
}

/// A few distinct client parameter sets, each held once: clients whose
/// reported parameters are equal share one copy (an idle client then costs
/// a pointer instead of a dozen strings).
#[derive(Debug, Default)]
pub(crate) struct ParamSets(std::sync::Mutex<Vec<SharedParams>>);

/// Reported parameters (name, value), shared between clients (defined with
/// the server connection, which remembers the set it was found equal to).
pub(crate) use crate::backend::SharedParams;

impl ParamSets {
    const MAX: usize = 32;

    /// `params`, as a shared copy if an equal set is known.
    pub(crate) fn share(&self, params: Vec<(String, String)>) -> SharedParams {
        let Ok(mut sets) = self.0.lock() else {
            return Arc::new(params);
        };
        if let Some(found) = sets.iter().find(|s| ***s == params) {
            return found.clone();
        }
        let set = Arc::new(params);
        if sets.len() >= Self::MAX {
            sets.remove(0);
        }
        sets.push(set.clone());
        set
    }
}

impl Shared {
    /// The configuration in force now. Read it where it is used: a reload
    /// may put another one in place at any time.
    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.live_config.load()
    }

    /// The address of node `node` (`None`: no such node).
    pub(crate) fn node(&self, node: usize) -> Option<ServerAddr> {
        self.node_addrs.load().get(node).cloned()
    }

    /// How many node slots there are (removed nodes included).
    pub(crate) fn node_count(&self) -> usize {
        self.node_addrs.load().len()
    }

    /// The password file in force now (`None`: none is configured).
    pub(crate) fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.live_passwords.load_full()
    }

    /// Forwards a client's CancelRequest to the server connection serving the
    /// client that holds `key`; an unknown key or wrong secret does nothing,
    /// as in PostgreSQL.
    pub(crate) async fn forward_cancel(&self, key: crate::protocol::CancelKey) {
        // The ticket keeps the session from handing its server connection to
        // another client until this cancel has reached the server.
        let Some(ticket) = self.cancels.begin(key) else {
            return;
        };
        let target = ticket.target();
        metrics::counter!(m::CANCELS_FORWARDED).increment(1);
        if let Err(e) = crate::backend::send_cancel(&target.addr, target.key, CANCEL_TIMEOUT).await {
            tracing::warn!(server = %target.addr, error = %e, "forwarding cancel request failed");
        }
        drop(ticket);
    }

    /// The Query that answers `SHOW pool_nodes` for a session on `node`.
    pub(crate) fn show_pool_nodes(&self, node: usize) -> bytes::BytesMut {
        let snapshot = self.router.snapshot();
        crate::show::rewrite(&snapshot, &self.router.node_stats(), &self.config().health, node)
    }

    /// A session could not reach `node`, or lost its connection there: the
    /// cluster controller hears of it as a [`crate::cluster::BackendError`]
    /// (an immediate health check, or with `failover_on_backend_error` a
    /// failed one), and when the node could not be reached at all the read
    /// set backs off from it. Other failures (`e` not about the node) report
    /// nothing and return false.
    ///
    /// True when this is the first such report about `node` in a second:
    /// the caller logs it as a warning, and later ones at debug level, so a
    /// failover does not flood the log with one line per client.
    pub(crate) fn backend_failed(&self, node: usize, e: &crate::Error) -> bool {
        let Some(report) = crate::cluster::BackendError::of(e) else {
            return false;
        };
        if report.unreachable() {
            self.router.note_failure(node);
        }
        self.cluster.backend_error(node, report);
        self.router.first_report(node)
    }
}
