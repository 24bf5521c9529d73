//! The entry point: accept clients on a listener until a shutdown future
//! resolves, then drain gracefully.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;

use crate::auth::PasswordFile;
use crate::backend::ServerAddr;
use crate::cancel::CancelRegistry;
use crate::cluster::{FailoverHook, HealthCheck, NodeCommandError};
use crate::config::Config;
use crate::metrics as m;
use crate::pool::Pools;
use crate::protocol::write::{self as w, Severity};
use crate::protocol::{split_startup, StartupPacket};
use crate::route::{NodeStats, RoutingPolicy};
use crate::runtime::{ParamSets, Phase, Shared};
use crate::topology::{Snapshot, Topology};

/// Why a pooler could not be built ([`PoolerBuilder::build`], [`Pooler::new`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The password file could not be loaded.
    #[error("auth.password_file: {0}")]
    PasswordFile(#[from] crate::auth::PasswordFileError),
    /// The hba file could not be loaded (the message names file and line).
    #[error("auth.hba_file: {0}")]
    Hba(#[from] crate::hba::HbaError),
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// `[coordination]` names a backend but no store was given
    /// ([`PoolerBuilder::coordination_store`]; the binary gives one when
    /// built with its `etcd` feature).
    #[error("coordination.backend = {0:?} but this pooler has no client for it (the binary needs its `etcd` feature: cargo build --release -p pooler-bin --features etcd)")]
    NoCoordinationStore(String),
}

/// What [`Pooler::adopt_clients`] took over from the predecessor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Clients now served here, with their sessions.
    pub clients: usize,
    /// Idle server connections now in this process's pools.
    pub servers: usize,
}

/// A configured pooler, ready to serve a listener.
///
/// Built with [`Pooler::builder`] (or [`Pooler::new`] for the defaults),
/// then served with [`Pooler::run`]; meanwhile the same value answers the
/// inspection methods ([`Pooler::cluster`], [`Pooler::node_stats`],
/// [`Pooler::pools`]) and takes operator commands ([`Pooler::detach_node`],
/// [`Pooler::attach_node`], [`Pooler::promote_node`]): share it in an
/// [`Arc`] to do both.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pooler_core::{Config, Pooler};
/// let config = Config::load(std::path::Path::new("pooler.toml"))?;
/// let listener = pooler_core::Listeners::bind(&config).await?;
/// let pooler = Pooler::builder(config).build()?;
/// // Any future works as the shutdown signal: a channel, ctrl_c(), a timer...
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// pooler.run(listener, async { let _ = stopped.await; }).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pooler {
    shared: Arc<Shared>,
    phase_tx: watch::Sender<Phase>,
    hooks: Arc<crate::cluster::Hooks>,
}

/// Builds a [`Pooler`] from its configuration and, optionally, the password
/// file in memory and the hooks that replace the built-in behaviour. Any
/// setter may be left out: [`PoolerBuilder::build`] then uses the default
/// that setter names.
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn example(check: Arc<dyn pooler_core::HealthCheck>, hook: Arc<dyn pooler_core::FailoverHook>,
/// #            policy: Arc<dyn pooler_core::RoutingPolicy>) -> Result<(), pooler_core::StartError> {
/// # let config = pooler_core::Config::with_nodes(vec![pooler_core::config::NodeConfig::new("127.0.0.1", 5432)]);
/// let pooler = pooler_core::Pooler::builder(config)
///     .health_check(check)
///     .failover_hook(hook)
///     .routing_policy(policy)
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolerBuilder {
    config: Config,
    passwords: Option<PasswordFile>,
    health_check: Option<Arc<dyn HealthCheck>>,
    failover_hook: Option<Arc<dyn FailoverHook>>,
    routing_policy: Option<Arc<dyn RoutingPolicy>>,
    config_file: Option<std::path::PathBuf>,
    store: Option<Arc<dyn crate::CoordinationStore>>,
}

impl std::fmt::Debug for PoolerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolerBuilder")
            .field("config", &self.config)
            .field("passwords", &self.passwords.is_some())
            .field("health_check", &self.health_check.is_some())
            .field("failover_hook", &self.failover_hook.is_some())
            .field("routing_policy", &self.routing_policy.is_some())
            .field("coordination_store", &self.store.is_some())
            .finish()
    }
}

impl PoolerBuilder {
    /// Uses `passwords` as the password file: client authentication, and
    /// the secrets the pooler logs in to servers with. Default: the file
    /// `auth.password_file` names, loaded by [`PoolerBuilder::build`] (none
    /// when it is not set); given here, `auth.password_file` is neither
    /// required nor read.
    pub fn passwords(mut self, passwords: PasswordFile) -> PoolerBuilder {
        self.passwords = Some(passwords);
        self
    }

    /// Uses `check` to look at each node every `health.period`, and at once
    /// when a session saw the node fail (see [`HealthCheck`]). Default: the
    /// built-in [`crate::SqlHealthCheck`], asking each node over SQL as
    /// `health.user`.
    pub fn health_check(mut self, check: Arc<dyn HealthCheck>) -> PoolerBuilder {
        self.health_check = Some(check);
        self
    }

    /// Uses `hook` at failover, after a primary change (follow-primary) and
    /// at failback (see [`FailoverHook`]). Default: the built-in
    /// [`crate::CommandHook`], running the `[failover]` commands (with none
    /// configured the pooler only discovers a primary promoted by another
    /// tool).
    pub fn failover_hook(mut self, hook: Arc<dyn FailoverHook>) -> PoolerBuilder {
        self.failover_hook = Some(hook);
        self
    }

    /// Lets `policy` choose the node that serves each read, within the
    /// router's safety rule (see [`RoutingPolicy`]); it is asked only with
    /// `routing.load_balance` on. Default: none, reads are routed as
    /// `[routing]` says.
    pub fn routing_policy(mut self, policy: Arc<dyn RoutingPolicy>) -> PoolerBuilder {
        self.routing_policy = Some(policy);
        self
    }

    /// Names the file the configuration came from: the admin console's
    /// `RELOAD` (and [`Pooler::reload_file`]) read it again. Default: none,
    /// and `RELOAD` answers that there is no file to read.
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> PoolerBuilder {
        self.config_file = Some(path.into());
        self
    }

    /// Coordinates with the other poolers of the group through `store`
    /// (used only when `[coordination]` is on; see docs/HA.md). Default:
    /// none, and a configuration with coordination on fails to build.
    pub fn coordination_store(mut self, store: Arc<dyn crate::CoordinationStore>) -> PoolerBuilder {
        self.store = Some(store);
        self
    }

    /// Validates the configuration, loads the password file unless one was
    /// given, and builds the pooler. Nothing runs before [`Pooler::run`]: no
    /// connection is opened and no task spawned here.
    pub fn build(self) -> Result<Pooler, StartError> {
        let in_memory = self.passwords.is_some();
        let passwords = match (self.passwords, &self.config.auth.password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(PasswordFile::load(path)?),
            (None, None) => None,
        };
        let hooks = Hooks {
            check: self.health_check,
            failover: self.failover_hook,
            policy: self.routing_policy,
            store: self.store,
        };
        assemble(self.config, Passwords { file: passwords, in_memory, config_file: self.config_file }, hooks)
    }
}

impl Pooler {
    /// A builder for a pooler serving `config`; see [`PoolerBuilder`] for
    /// what it can take and the defaults.
    pub fn builder(config: Config) -> PoolerBuilder {
        PoolerBuilder {
            config,
            passwords: None,
            health_check: None,
            failover_hook: None,
            routing_policy: None,
            config_file: None,
            store: None,
        }
    }

    /// Validates `config` and loads its password file, with the built-in
    /// hooks: the same as `Pooler::builder(config).build()`.
    pub fn new(config: Config) -> Result<Pooler, StartError> {
        Pooler::builder(config).build()
    }

    /// Like [`Pooler::new`], with the password file given in memory (`None`:
    /// no password file, whatever `auth.password_file` says). Kept for
    /// existing callers; [`PoolerBuilder::passwords`] does the same.
    pub fn with_passwords(config: Config, passwords: Option<PasswordFile>) -> Result<Pooler, StartError> {
        assemble(config, Passwords { file: passwords, in_memory: true, config_file: None }, Hooks::default())
    }

    /// Re-reads `auth.hba_file` and swaps the new rules in for the next
    /// logins, without touching connected clients, and forgets the secrets
    /// auth_query cached. On an error (named file and line) the rules in
    /// force stay. `Ok(false)`: no hba file is configured. What the reload
    /// of the whole configuration calls for its hba part.
    pub fn reload_access(&self) -> Result<bool, crate::HbaError> {
        crate::access::reload(&self.shared)
    }

    /// Puts `config` in force without a restart, without dropping a
    /// client: validated first, with every file it names (password file,
    /// hba file, certificates) loaded, then applied whole (see
    /// [`ReloadReport`] for what changed and what needs a restart). On an
    /// error nothing changes and the configuration in force stays.
    ///
    /// [`ReloadReport`]: crate::ReloadReport
    pub fn reload(&self, config: Config) -> Result<crate::ReloadReport, crate::ReloadError> {
        let report = crate::reload::apply(&self.shared, config)?;
        tracing::info!(%report, "configuration reloaded");
        Ok(report)
    }

    /// [`Pooler::reload`] of the file named by
    /// [`PoolerBuilder::config_file`], read again now.
    pub fn reload_file(&self) -> Result<crate::ReloadReport, crate::ReloadError> {
        let path = self.shared.config_file.as_deref().ok_or(crate::ReloadError::NoFile)?;
        let report = crate::reload::from_file(&self.shared, path)?;
        tracing::info!(file = %path.display(), %report, "configuration reloaded");
        Ok(report)
    }

    /// The shared context (the crate's own tests and fuzz entry points).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Replaces the health check with `check`; takes effect at
    /// [`Pooler::run`]. Kept for existing callers;
    /// [`PoolerBuilder::health_check`] does the same.
    pub fn with_health_check(mut self, check: Arc<dyn HealthCheck>) -> Pooler {
        self.hooks = Arc::new(crate::cluster::Hooks { check, failover: self.hooks.failover.clone() });
        self
    }

    /// Replaces the failover hook with `hook`; takes effect at
    /// [`Pooler::run`]. Kept for existing callers;
    /// [`PoolerBuilder::failover_hook`] does the same.
    pub fn with_failover_hook(mut self, hook: Arc<dyn FailoverHook>) -> Pooler {
        self.hooks = Arc::new(crate::cluster::Hooks { check: self.hooks.check.clone(), failover: hook });
        self
    }

    /// Per-node routing counters: requests and reads routed, requests in
    /// flight, known replay positions, status and role. Cheap (atomics and
    /// the latest snapshot); callable at any time.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        self.shared.router.node_stats()
    }

    /// The cluster as the controller last published it: every node's
    /// status, role, lag, and which one is the primary. Before
    /// [`Pooler::run`] starts, or with a single node (never checked), the
    /// configured state ([`Snapshot::initial`]). A lock-free load.
    pub fn cluster(&self) -> Arc<Snapshot> {
        self.shared.router.snapshot()
    }

    /// Where the controller publishes its snapshots: to wait for a primary
    /// ([`Topology::wait_for_primary`]) or read the latest snapshot.
    pub fn topology(&self) -> &Arc<Topology> {
        self.shared.router.topology()
    }

    /// Detaches a standby: no reads go to it, and it stays down whatever its
    /// health checks say, until [`Pooler::attach_node`]. The primary cannot
    /// be detached. Needs [`Pooler::run`] to be running.
    pub async fn detach_node(&self, node: usize) -> Result<(), NodeCommandError> {
        self.shared.cluster.command(crate::cluster::detach_event(node)).await
    }

    /// Attaches a node again (after a detach, a failure without
    /// `auto_failback`, or a quarantined former primary rebuilt as a
    /// standby). It serves nothing until its next health check passes; the
    /// failback command runs. Needs [`Pooler::run`] to be running.
    pub async fn attach_node(&self, node: usize) -> Result<(), NodeCommandError> {
        self.shared.cluster.command(crate::cluster::attach_event(node)).await
    }

    /// Switchover: runs the failover hook with `node` as the new main node and
    /// the current primary as the failed one. Writes move only once `node`
    /// answers as a primary (checked, not assumed); the old primary is then
    /// quarantined, even if it still claims to be one, and the follow-primary
    /// hook runs for the other nodes. Needs [`Pooler::run`] to be running.
    pub async fn promote_node(&self, node: usize) -> Result<(), NodeCommandError> {
        crate::cluster::promote(&self.shared.cluster, &self.hooks, node).await
    }

    /// Online recovery (pgpool's `pcp_recovery_node`): detaches `node`,
    /// runs `[recovery] command` to rebuild it as a standby of the current
    /// primary, waits (`recovery.stream_timeout`) until it answers as a
    /// standby that streams, and attaches it again. On a failure the node
    /// stays detached. Needs [`Pooler::run`] to be running.
    pub async fn recover_node(&self, node: usize) -> Result<(), NodeCommandError> {
        let recovery = self.shared.config().recovery.clone();
        crate::cluster::recover(&self.shared.cluster, &self.hooks, node, &recovery).await
    }

    /// `database` is paused (`PAUSE` on the admin console): its clients'
    /// next transactions wait for `RESUME`.
    pub fn is_paused(&self, database: &str) -> bool {
        self.shared.control.pause.holds(database)
    }

    /// Index of the node that takes writes now (the first node until the
    /// cluster controller finds another primary).
    pub fn primary_node(&self) -> usize {
        self.shared.router.primary()
    }

    /// Tells the pooler that it handed its listeners to a successor process
    /// (an upgrade, [`crate::upgrade`]): it runs no more failover,
    /// follow-primary, failback, recovery or switchover commands, for the
    /// successor does, and leaves its pooler group at once. Its clients are
    /// served on until they leave; stop it as usual.
    pub async fn retire(&self) {
        crate::cluster::retire(&self.shared.cluster).await;
    }

    /// Hands the idle clients to the successor at the other end of
    /// `control` (after the listeners, [`crate::upgrade`]): when the shutdown
    /// future given to [`Pooler::run`] resolves, each client pooled by
    /// transaction or statement, on a plain socket, goes to the successor at
    /// its next idle point with its session (parameters, SET state, prepared
    /// statements, cancel key). The others (session mode, pinned, TLS) are
    /// served until they leave, as at a shutdown. A client the successor
    /// cannot take is served on here. The pools' idle server connections on
    /// plain sockets go too: at once, and those that came back idle once
    /// every client has left.
    pub fn hand_over_clients(&self, control: std::os::unix::net::UnixStream) {
        self.shared.handover.store(Some(Arc::new(crate::upgrade::ClientSink::new(control))));
    }

    /// The successor's side of [`Pooler::hand_over_clients`]: serves every
    /// client the predecessor sends on `control`, from its session, and
    /// lends every idle server connection it sends from the pool of the
    /// node with the same address (reset first, within the pool's size),
    /// until the predecessor closes it. Returns how many of each were taken.
    pub async fn adopt_clients(
        &self,
        control: std::os::unix::net::UnixStream,
    ) -> Result<Adopted, crate::upgrade::HandoverError> {
        use crate::upgrade::Record;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let reader = tokio::task::spawn_blocking(move || -> Result<(), crate::upgrade::HandoverError> {
            control.set_nonblocking(false)?;
            control.set_read_timeout(None)?;
            while let Some(record) = Record::receive(&control)? {
                if tx.blocking_send(record).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut taken = Adopted::default();
        let mut servers = tokio::task::JoinSet::new();
        while let Some((record, fd)) = rx.recv().await {
            match record {
                Record::Client(state) => match crate::session::adopt(self.shared.clone(), state, fd) {
                    Ok(()) => taken.clients += 1,
                    Err(e) => tracing::warn!(error = %e, "upgrade: a handed-over client's socket is unusable"),
                },
                // Each is reset with a round trip of its own: at once, side by side.
                Record::Server(state) => {
                    servers.spawn(crate::handover::adopt(self.shared.clone(), state, fd));
                }
            }
        }
        while let Some(kept) = servers.join_next().await {
            taken.servers += usize::from(kept.unwrap_or(false));
        }
        match reader.await {
            Ok(r) => r.map(|()| taken),
            Err(_) => Ok(taken),
        }
    }

    /// How this pooler stands in its group (`[coordination]`, docs/HA.md):
    /// its role, the leader, the term, the lease, whether the store answers.
    /// `None` when the pooler runs alone.
    pub fn ha_status(&self) -> Option<crate::HaStatus> {
        self.shared.cluster.ha().map(|ha| ha.status())
    }

    /// Every live pooler's view of every node (this pooler's own from its
    /// checks), sorted by pooler name; empty when the pooler runs alone.
    pub fn ha_views(&self) -> Vec<crate::coordination::View> {
        self.shared.cluster.ha().map(|ha| ha.views()).unwrap_or_default()
    }

    /// Reads the certificate, key and CA files of `[client_tls]` and
    /// `[server_tls]` again (a renewed certificate) and puts them in place:
    /// new connections use them; connected clients and open server
    /// connections keep the TLS session they have. On an error (a missing
    /// or malformed file) nothing changes. The TLS modes stay those of the
    /// configuration in force.
    pub fn reload_tls(&self) -> Result<(), crate::TlsError> {
        self.shared.tls.reload(&self.shared.config())?;
        tracing::info!("TLS certificates reloaded");
        Ok(())
    }

    /// The configuration in force (the one the last reload put in place).
    pub fn config(&self) -> Arc<Config> {
        self.shared.live_config.load_full()
    }

    /// Sets the gauges a metrics scrape reads (per pool: clients active and
    /// waiting, servers active and idle, the longest wait; per node: status,
    /// role, lag, requests routed; names in [`crate::metrics`]) from the
    /// state now. Call it before each render of the recorder's output.
    pub fn record_gauges(&self) {
        crate::admin::record_gauges(&self.shared)
    }

    /// The server connection pools, one per (node, user, database) seen so
    /// far, for inspection: [`Pools::all`], then each [`crate::Pool`]'s
    /// sizes and [`crate::PoolStats`] counters.
    pub fn pools(&self) -> &Pools {
        &self.shared.pools
    }

    /// Serves clients from `listeners` (a [`TcpListener`], or
    /// [`Listeners::bind`] for what the configuration names: TCP and the Unix
    /// socket) until `shutdown` resolves. Then it stops accepting, lets
    /// sessions finish their transaction for up to
    /// `server.shutdown_timeout`, closes the rest, and closes idle server
    /// connections before returning.
    ///
    /// [`Listeners::bind`]: crate::Listeners::bind
    pub async fn run(&self, listeners: impl Into<crate::Listeners>, shutdown: impl Future<Output = ()>) {
        let listener = listeners.into();
        let max_clients = self.shared.config().server.max_client_connections;
        let slots = &self.shared.client_slots;
        let maintenance = tokio::spawn(maintain(self.shared.clone()));
        // Which node is the primary, which are up and how far behind: needed as
        // soon as there is more than one node.
        let health = tokio::spawn(crate::cluster::run(self.shared.cluster.clone(), self.hooks.clone()));
        // Several poolers: this one's lease, its bid for the leadership, its view.
        let membership = self.shared.cluster.ha().map(|ha| tokio::spawn(ha.clone().run()));
        // The admin console's PROMOTE NODE runs the same hooks.
        self.shared.control.set_hooks(self.hooks.clone());
        tokio::pin!(shutdown);
        let mut requested = None;
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
                mode = self.shared.control.shutdown_requested() => {
                    requested = Some(mode);
                    break;
                }
            };
            metrics::counter!(m::CLIENT_CONNECTIONS).increment(1);
            match slots.try_take() {
                Some(permit) => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        crate::session::serve(stream, peer, shared).await;
                        drop(permit);
                    });
                }
                None => {
                    metrics::counter!(m::CLIENTS_REFUSED).increment(1);
                    tracing::warn!(client = %peer, max_clients, "too many clients; connection refused");
                    tokio::spawn(refuse_too_many(stream, self.shared.clone()));
                }
            }
        }
        drop(listener);
        let mut servers_going = None;
        if requested.is_some() {
            let phase = (&self.phase_tx, &self.shared.clients);
            Box::pin(crate::admin::shut_down(phase, slots, requested, shutdown)).await;
        } else if self.shared.handover.load().is_some() {
            tracing::info!("handing over: idle clients go to the successor; the others are served until they leave");
            self.shared.clients.announce(&self.phase_tx, Phase::HandingOver);
            // The idle server connections too, so that the successor does
            // not open its own for the clients that follow them.
            let shared = self.shared.clone();
            servers_going = Some(tokio::spawn(async move {
                let n = crate::handover::hand_over_idle(&shared).await;
                tracing::info!(servers = n, "upgrade: idle server connections handed over");
            }));
        } else {
            tracing::info!("shutting down: no new clients; waiting for transactions to finish");
            self.shared.clients.announce(&self.phase_tx, Phase::Draining);
        }
        let timeout = self.shared.config().server.shutdown_timeout;
        if tokio::time::timeout(timeout, slots.all_gone()).await.is_err() {
            tracing::warn!(?timeout, "shutdown timeout reached; closing remaining clients");
            self.shared.clients.announce(&self.phase_tx, Phase::Force);
            let _ = tokio::time::timeout(Duration::from_secs(5), slots.all_gone()).await;
        }
        // What the last transactions gave back goes too (after the first
        // batch is all sent: a connection taken out for it and not yet sent
        // would die with this process); then the successor learns that
        // everything that could go went.
        if let Some(first) = servers_going {
            let _ = first.await;
        }
        let n = crate::handover::hand_over_idle(&self.shared).await;
        if n > 0 {
            tracing::info!(servers = n, "upgrade: the last idle server connections handed over");
        }
        self.shared.handover.store(None);
        maintenance.abort();
        health.abort();
        if let Some(m) = membership {
            m.abort();
            crate::cluster::leave_group(&self.shared.cluster).await;
        }
        for pool in self.shared.pools.all() {
            pool.close_idle();
        }
        // Let the Terminate messages go out.
        tokio::task::yield_now().await;
        tracing::info!("shutdown complete");
    }
}

/// The hooks given to a builder; `None`: the built-in one (no policy).
#[derive(Default)]
struct Hooks {
    check: Option<Arc<dyn HealthCheck>>,
    failover: Option<Arc<dyn FailoverHook>>,
    policy: Option<Arc<dyn RoutingPolicy>>,
    store: Option<Arc<dyn crate::CoordinationStore>>,
}

/// The password file, whether it was given in memory (a reload then keeps
/// it), and the configuration file a reload reads.
struct Passwords {
    file: Option<PasswordFile>,
    in_memory: bool,
    config_file: Option<std::path::PathBuf>,
}

/// Validates `config` (knowing whether the password file is in memory) and
/// puts the pooler together.
fn assemble(config: Config, given_passwords: Passwords, given: Hooks) -> Result<Pooler, StartError> {
    let Passwords { file: passwords, in_memory, config_file } = given_passwords;
    match passwords {
        Some(_) => config.validate_with_passwords_in_memory()?,
        None => config.validate()?,
    }
    let tls = crate::tls::TlsContexts::load(&config)?;
    let nodes: crate::backend::NodeAddrs =
        Arc::new(arc_swap::ArcSwap::from_pointee(ServerAddr::of_nodes(&config, &tls)));
    let (phase_tx, phase) = watch::channel(Phase::Running);
    let node_count = config.nodes.len();
    let max_memory = config.server.max_memory;
    let client_slots = crate::clients::ClientSlots::new(config.server.max_client_connections);
    let config = Arc::new(config);
    let topology = Arc::new(Topology::new(Snapshot::initial(&config, std::time::SystemTime::now())));
    let ha = match (config.coordination.enabled(), given.store) {
        (false, _) => None,
        (true, None) => {
            return Err(StartError::NoCoordinationStore(format!("{:?}", config.coordination.backend).to_lowercase()))
        }
        (true, Some(store)) => Some(Arc::new(crate::coordination::Ha::new(
            &config.coordination,
            &config.server.listen,
            store,
            topology.clone(),
        ))),
    };
    let mut router = crate::route::Router::with_topology(&config, topology.clone()).map_err(|e| {
        crate::config::ConfigError::Invalid { key: format!("routing.{}", e.list), problem: e.to_string() }
    })?;
    if given.policy.is_some() && !router.balancing() {
        tracing::warn!("a routing policy is set, but with routing.load_balance off (or one node) it is never asked");
    }
    router.set_policy(given.policy);
    let hooks = crate::cluster::Hooks {
        check: given.check.unwrap_or_else(|| {
            Arc::new(crate::cluster::SqlHealthCheck::with_nodes(&config, passwords.as_ref(), nodes.clone()))
        }),
        failover: given.failover.unwrap_or_else(|| Arc::new(crate::cluster::CommandHook::new(&config.failover))),
    };
    let functions = Arc::new(crate::classify::catalog::FunctionCatalog::new(config.routing.function_cache_ttl));
    let control = crate::control::Control::default();
    let pools = Arc::new(Pools::new(config.pool.clone(), config.server.max_message_size, control.pause.clone()));
    let hba = config.auth.hba_file.as_deref().map(crate::hba::HbaRules::load).transpose()?.map(Arc::new);
    let auth_query = crate::auth_query::AuthQuery::from_config(&config.auth, config.server.max_message_size);
    let shared = Shared {
        hba: arc_swap::ArcSwapOption::new(hba),
        auth_query,
        cluster: Arc::new(crate::cluster::Cluster::new(config.clone(), topology, pools.clone(), ha)),
        param_sets: ParamSets::default(),
        router,
        pools,
        live_config: arc_swap::ArcSwap::new(config),
        live_passwords: arc_swap::ArcSwapOption::new(passwords.map(Arc::new)),
        passwords_in_memory: in_memory,
        removed_nodes: std::sync::Mutex::new(vec![false; node_count]),
        config_file,
        cancels: Arc::new(CancelRegistry::new()),
        node_addrs: nodes,
        phase,
        statements: Default::default(),
        functions,
        tls,
        clients: Default::default(),
        memory: crate::memory::MemoryBudget::new(max_memory),
        control,
        handover: Default::default(),
        client_slots,
    };
    Ok(Pooler { shared: Arc::new(shared), phase_tx, hooks: Arc::new(hooks) })
}

/// Periodic pool upkeep: close idle connections past their timeouts, open
/// connections up to `min_size`, forget prepared statements no client holds.
async fn maintain(shared: Arc<Shared>) {
    let every = shared.pools.prune_interval();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.pools.prune();
        shared.statements.prune();
        shared.functions.prune(std::time::Instant::now());
    }
}

/// Answers a client over the connection limit the way PostgreSQL does: read
/// its startup packet (declining TLS), then FATAL 53300. A cancel request is
/// still forwarded: cancelling matters most when the pooler is full.
async fn refuse_too_many(mut stream: crate::transport::Stream, shared: Arc<Shared>) {
    let work = async {
        let mut buf = BytesMut::new();
        loop {
            match split_startup(&mut buf) {
                Ok(Some(StartupPacket::SslRequest)) | Ok(Some(StartupPacket::GssEncRequest)) => {
                    stream.write_all(b"N").await?;
                }
                Ok(Some(StartupPacket::Startup(_))) => break,
                Ok(Some(StartupPacket::Cancel(key))) => {
                    shared.forward_cancel(key).await;
                    return Ok(());
                }
                Err(_) => return Ok(()),
                Ok(None) => {
                    if stream.read_some(&mut buf).await? == 0 {
                        return Ok(());
                    }
                }
            }
        }
        let mut out = BytesMut::new();
        let refusal = crate::error::Failure::too_many_clients();
        w::error_response(&mut out, Severity::Fatal, refusal.sqlstate, &refusal.message());
        stream.write_all(&out).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_without_a_store_fails_to_build_and_says_how_to_get_one() {
        let mut config = Config::with_nodes(vec![crate::config::NodeConfig::new("127.0.0.1", 5432)]);
        config.auth.method = crate::config::AuthMethod::Trust;
        config.coordination.backend = crate::config::CoordinationBackend::Etcd;
        config.coordination.endpoints = vec!["http://127.0.0.1:2379".into()];
        let err = Pooler::builder(config.clone()).build().unwrap_err();
        assert!(matches!(err, StartError::NoCoordinationStore(ref b) if b == "etcd"), "{err}");
        assert!(err.to_string().contains("--features etcd"), "{err}");
        config.coordination.backend = crate::config::CoordinationBackend::None;
        assert!(Pooler::builder(config).build().is_ok(), "alone, no store is needed");
    }
}
