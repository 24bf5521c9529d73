//! Cluster state: which node is the primary, which nodes are up, how far each
//! standby lags, and what runs when that changes.
//!
//! One controller task owns the state machine ([`machine`]). Everything that
//! can change a node's state reaches it as an event: the result of a health
//! check, a backend error seen by a client session, an operator's attach,
//! detach or promote. After each event it publishes an immutable
//! [`Snapshot`] that the router and every session read without locks, and
//! runs what the transition asks for (failover, follow-primary and failback
//! hooks, an immediate re-check) in order. Every transition is logged with
//! its cause.
//!
//! Health checks run one task per node ([`check`]), each with its own
//! connection, through the [`HealthCheck`] trait; the built-in
//! [`SqlHealthCheck`] asks PostgreSQL. Failover actions go through the
//! [`FailoverHook`] trait; the built-in [`CommandHook`] runs pgpool-style
//! commands.

mod check;
mod hook;
pub(crate) mod machine;
pub(crate) mod show;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, Notify};

pub use check::{CheckFuture, HealthCheck, Observation, ReplicaState, SqlHealthCheck};
pub use hook::{CommandHook, FailoverContext, FailoverHook, HookFuture, NodeInfo};

use machine::{Action, Event, Machine};

/// A node's role, as the pooler holds it (`role` in `SHOW pool_nodes`) or as
/// the node itself last said (`pg_role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes writes (not in recovery).
    Primary,
    /// In recovery: a standby.
    Standby,
    /// Not known: never checked, or the last check failed.
    Unknown,
}

impl Role {
    /// The name `SHOW pool_nodes` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Unknown => "unknown",
        }
    }
}

/// Whether a node is in service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not checked yet (at start, or just attached by an operator): the
    /// primary takes writes, no reads go to a standby in this state.
    Waiting,
    /// In service.
    Up,
    /// Out of service: failed its health checks, or detached by an operator.
    Down,
    /// Kept out of service whatever it answers: a former primary, or a node
    /// that claims to be primary while another one is. No reads, no writes,
    /// until it returns as a streaming standby (with `failover.auto_failback`)
    /// or an operator attaches it.
    Quarantine,
}

impl Status {
    /// The name `SHOW pool_nodes` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Up => "up",
            Status::Down => "down",
            Status::Quarantine => "quarantine",
        }
    }
}

/// One node in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct NodeState {
    /// Index in `[[nodes]]`.
    pub id: usize,
    /// Configured host.
    pub host: String,
    /// Configured port.
    pub port: u16,
    /// Configured load-balancing weight.
    pub weight: f64,
    /// The role the pooler holds for the node.
    pub role: Role,
    /// In service or not.
    pub status: Status,
    /// The last health check reached the node.
    pub pg_up: bool,
    /// The role the node itself reported at its last check.
    pub pg_role: Role,
    /// Bytes of WAL behind the primary at the last check (standbys).
    pub lag_bytes: u64,
    /// Age of the last replayed transaction while the primary moves on (standbys).
    pub lag_time: Duration,
    /// Left out of the read set for lagging past a threshold.
    pub lagging: bool,
    /// Last WAL position seen: replayed (standby) or current (primary).
    pub lsn: u64,
    /// Replication state (`streaming`, ...) from the primary's
    /// `pg_stat_replication`, or the standby's own WAL receiver.
    pub replication_state: String,
    /// `async`, `sync`, `potential` or `quorum`, when the node's
    /// `application_name` is configured; empty otherwise.
    pub sync_state: String,
    /// Detached by an operator (stays down until attached).
    pub operator_detached: bool,
    /// When `status` last changed.
    pub last_status_change: SystemTime,
    /// Why `status` last changed.
    pub cause: String,
}

impl NodeState {
    /// May serve reads: up and not lagging.
    pub fn readable(&self) -> bool {
        self.status == Status::Up && !self.lagging
    }
}

/// The cluster as the controller saw it after one event. Immutable: a new one
/// is published for every change.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Counts published snapshots (0: the initial one).
    pub generation: u64,
    /// The node writes go to.
    pub primary: usize,
    /// Every configured node, by index.
    pub nodes: Vec<NodeState>,
}

impl Snapshot {
    /// The primary is known and in service: it answered as a primary at its
    /// last check (or has not been checked yet, at start).
    pub fn primary_available(&self) -> bool {
        primary_available(&self.nodes, self.primary)
    }
}

fn primary_available(nodes: &[NodeState], primary: usize) -> bool {
    nodes.get(primary).is_some_and(|n| match n.status {
        Status::Waiting => n.pg_role != Role::Standby,
        Status::Up => n.pg_role == Role::Primary,
        Status::Down | Status::Quarantine => false,
    })
}

/// Why an operator's node command was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeCommandError {
    /// No such node index.
    #[error("node {0} is not configured")]
    UnknownNode(usize),
    /// The primary cannot be detached; promote another node first.
    #[error("node {0} is the primary: promote another node first")]
    IsPrimary(usize),
    /// The node is already the primary.
    #[error("node {0} is already the primary")]
    AlreadyPrimary(usize),
    /// The pooler is not running (`Pooler::run` not started or finished).
    #[error("the pooler is not running")]
    NotRunning,
    /// No failover hook can promote a node.
    #[error("no failover command is configured to promote a node")]
    NoHook,
    /// The failover hook failed.
    #[error("the failover command failed")]
    HookFailed,
    /// The hook succeeded but the node never answered as a primary.
    #[error("node {0} never answered as a primary; writes stay where they were")]
    NeverPromoted(usize),
}

/// A request to the controller.
pub(crate) struct Command {
    event: Event,
    reply: Option<oneshot::Sender<Result<(), NodeCommandError>>>,
}

/// What sessions and the API hold to talk to the controller. (The latest
/// snapshot itself is held by the router, which reads it on every decision.)
#[derive(Debug)]
pub(crate) struct Cluster {
    changed: tokio::sync::watch::Sender<u64>,
    tx: mpsc::UnboundedSender<Command>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    check_now: Vec<Arc<Notify>>,
    /// More than one node: health checks run, so the state can change.
    checked: bool,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command").field("event", &self.event).finish()
    }
}

impl Cluster {
    /// The cluster of `config.nodes`, before any check: the first node is the
    /// primary, every node waiting (or up, when there is a single node,
    /// which is never checked).
    pub(crate) fn new(config: &crate::Config) -> Cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        Cluster {
            check_now: config.nodes.iter().map(|_| Arc::new(Notify::new())).collect(),
            checked: config.nodes.len() > 1,
            changed: tokio::sync::watch::channel(0).0,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// A session could not reach `node` (`hard`: refused, timed out or reset)
    /// or lost it (`hard` false: closed).
    pub(crate) fn backend_error(&self, node: usize, hard: bool, error: &crate::Error) {
        let event = Event::BackendError { node, hard, error: error.to_string() };
        let _ = self.tx.send(Command { event, reply: None });
    }

    /// A session saw `node` behave unlike its role (`why`): ask for a check
    /// of it now (once until it reports).
    pub(crate) fn suspect(&self, node: usize, why: &str) {
        let event = Event::BackendError { node, hard: false, error: why.to_owned() };
        let _ = self.tx.send(Command { event, reply: None });
    }

    /// Waits until the primary is available by `router`'s snapshot, or
    /// `timeout` passes; true when it is.
    pub(crate) async fn wait_for_primary(&self, router: &crate::route::Router, timeout: Duration) -> bool {
        if router.snapshot().primary_available() || !self.checked {
            return true;
        }
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if router.snapshot().primary_available() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// After a session failed to reach the primary `failed`: waits up to
    /// `timeout` until a primary is available again, either another node
    /// (a failover happened) or `failed` itself once it has been seen out of
    /// service and back (so a stale "up" is not trusted). The node, or
    /// `None` on timeout.
    pub(crate) async fn wait_for_primary_after(
        &self,
        router: &crate::route::Router,
        failed: usize,
        timeout: Duration,
    ) -> Option<usize> {
        // With a single node nothing is checked: no other primary can appear.
        if timeout.is_zero() || !self.checked {
            return None;
        }
        let mut rx = self.changed.subscribe();
        let mut saw_out = false;
        let wait = async {
            loop {
                let s = router.snapshot();
                if s.primary_available() && (s.primary != failed || saw_out) {
                    return Some(s.primary);
                }
                saw_out |= s.nodes.get(failed).is_none_or(|n| matches!(n.status, Status::Down | Status::Quarantine));
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Sends an operator's command and waits for the controller's answer.
    pub(crate) async fn command(&self, event: Event) -> Result<(), NodeCommandError> {
        let (reply, answer) = oneshot::channel();
        if self.rx.lock().map(|r| r.is_some()).unwrap_or(true) {
            return Err(NodeCommandError::NotRunning);
        }
        self.tx.send(Command { event, reply: Some(reply) }).map_err(|_| NodeCommandError::NotRunning)?;
        answer.await.unwrap_or(Err(NodeCommandError::NotRunning))
    }
}

/// Hands a new snapshot to the router and wakes whoever waits for a change.
fn publish(shared: &crate::server::Shared, snapshot: Snapshot) {
    let generation = snapshot.generation;
    let before = shared.router.snapshot();
    let in_service = |s: Status| matches!(s, Status::Up | Status::Waiting);
    let left: Vec<usize> = snapshot
        .nodes
        .iter()
        .filter(|n| !in_service(n.status) && before.nodes.get(n.id).is_some_and(|b| in_service(b.status)))
        .map(|n| n.id)
        .collect();
    shared.router.publish(snapshot);
    // Nothing new goes to a node out of service, and what was sent to it
    // fails now rather than whenever a hung server answers.
    for node in left {
        let cut = shared.pools.cut_node(node);
        if cut > 0 {
            tracing::warn!(node, connections = cut, "node out of service: its server connections are closed");
        }
    }
    shared.cluster.changed.send_replace(generation);
}

/// The hooks a pooler runs its cluster with.
pub(crate) struct Hooks {
    pub(crate) check: Arc<dyn HealthCheck>,
    pub(crate) failover: Arc<dyn FailoverHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// Runs the controller and, with more than one node, a checker per node,
/// until dropped. Returns at once (doing nothing) if already started.
pub(crate) async fn run(shared: Arc<crate::server::Shared>, hooks: Arc<Hooks>) {
    let Some(mut rx) = shared.cluster.rx.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let mut machine = Machine::new(&shared.config);
    machine.set_promotes(hooks.failover.promotes());
    let mut tasks = tokio::task::JoinSet::new();
    if shared.nodes.len() > 1 {
        for node in 0..shared.nodes.len() {
            tasks.spawn(check::run(shared.clone(), hooks.check.clone(), node));
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let command = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = tick.tick() => Command { event: Event::Tick, reply: None },
        };
        let outcome = machine.apply(command.event, std::time::Instant::now());
        if outcome.changed {
            publish(&shared, machine.snapshot());
        }
        if let Some(reply) = command.reply {
            let _ = reply.send(outcome.result);
        }
        perform_all(&shared, &hooks, &mut machine, outcome.actions).await;
    }
    // The receiver is given back so a later `run` can start again.
    if let Ok(mut slot) = shared.cluster.rx.lock() {
        *slot = Some(rx);
    }
}

/// Carries out what transitions ask for, in order; the results go back into
/// the machine as events, and what those ask for is done next.
async fn perform_all(shared: &crate::server::Shared, hooks: &Hooks, machine: &mut Machine, actions: Vec<Action>) {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        queue.extend(perform(shared, hooks, machine, action).await);
    }
}

/// Applies `event` (publishing a change); what it asks for.
fn apply_now(shared: &crate::server::Shared, machine: &mut Machine, event: Event) -> Vec<Action> {
    let outcome = machine.apply(event, std::time::Instant::now());
    if outcome.changed {
        publish(shared, machine.snapshot());
    }
    outcome.actions
}

/// Carries out one action; returns the actions its result led to.
async fn perform(shared: &crate::server::Shared, hooks: &Hooks, machine: &mut Machine, action: Action) -> Vec<Action> {
    let info = |i: usize| NodeInfo::of(i, &shared.config.nodes[i]);
    match action {
        Action::CheckNow(node) => {
            if let Some(n) = shared.cluster.check_now.get(node) {
                n.notify_one();
            }
        }
        Action::AskPositions { failed, candidates } => {
            // Every candidate at once, each bounded by the check timeout: the
            // failover waits for the slowest answer, not for their sum.
            let timeout = shared.config.health.timeout;
            let mut looks = tokio::task::JoinSet::new();
            for &j in &candidates {
                let check = hooks.check.clone();
                looks.spawn(async move {
                    let r = match tokio::time::timeout(timeout, check.check(j)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {timeout:?}")),
                    };
                    (j, r)
                });
            }
            let mut seen = Vec::with_capacity(candidates.len());
            while let Some(r) = looks.join_next().await {
                // A check that panicked counts as no answer.
                if let Ok(v) = r {
                    seen.push(v);
                }
            }
            seen.sort_by_key(|(j, _)| *j);
            return apply_now(shared, machine, Event::Positions { failed, seen });
        }
        Action::Failover { failed, new_main } => {
            let ctx = FailoverContext { subject: info(failed), new_main: info(new_main), old_primary: info(failed) };
            tracing::warn!(failed, new_main, "primary down: running the failover hook");
            let ok = hooks.failover.failover(&ctx).await;
            let next = apply_now(shared, machine, Event::FailoverDone { failed, ok });
            // The new primary is taken when a check sees it out of recovery.
            if let Some(n) = shared.cluster.check_now.get(new_main) {
                n.notify_one();
            }
            return next;
        }
        Action::Follow { standby, new_main, old_primary } => {
            let ctx =
                FailoverContext { subject: info(standby), new_main: info(new_main), old_primary: info(old_primary) };
            hooks.failover.follow_primary(&ctx).await;
        }
        Action::Failback { node } => {
            let primary = machine.primary();
            let ctx = FailoverContext { subject: info(node), new_main: info(primary), old_primary: info(primary) };
            hooks.failover.failback(&ctx).await;
        }
    }
    Vec::new()
}

/// Switchover by an operator: the hook promotes `node` with the current
/// primary as the failed one; writes move only once `node` answers as a
/// primary (checked, not assumed), and the old primary is quarantined.
pub(crate) async fn promote(
    shared: &crate::server::Shared,
    hooks: &Hooks,
    node: usize,
) -> Result<(), NodeCommandError> {
    let snapshot = shared.router.snapshot();
    let primary = snapshot.primary;
    if node >= snapshot.nodes.len() {
        return Err(NodeCommandError::UnknownNode(node));
    }
    if node == primary {
        return Err(NodeCommandError::AlreadyPrimary(node));
    }
    if !hooks.failover.promotes() {
        return Err(NodeCommandError::NoHook);
    }
    let info = |i: usize| NodeInfo::of(i, &shared.config.nodes[i]);
    let ctx = FailoverContext { subject: info(primary), new_main: info(node), old_primary: info(primary) };
    tracing::warn!(node, primary, "switchover requested by the operator: running the failover hook");
    if !hooks.failover.failover(&ctx).await {
        return Err(NodeCommandError::HookFailed);
    }
    let deadline = tokio::time::Instant::now() + shared.config.failover.command_timeout;
    while tokio::time::Instant::now() < deadline {
        let seen = tokio::time::timeout(shared.config.health.timeout, hooks.check.check(node)).await;
        if matches!(seen, Ok(Ok(o)) if !o.in_recovery) {
            return shared.cluster.command(Event::Promoted { node }).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::error!(node, "promoted node never answered as a primary; writes stay where they were");
    Err(NodeCommandError::NeverPromoted(node))
}

/// The health probe's row reader, for the fuzz target.
#[doc(hidden)]
pub fn fuzz_probe_row(row: &[Option<String>]) -> Observation {
    check::parse_row(row)
}

/// Attaches `node` again (see [`machine`]).
pub(crate) fn attach_event(node: usize) -> Event {
    Event::Attach { node }
}

/// Detaches `node` (see [`machine`]).
pub(crate) fn detach_event(node: usize) -> Event {
    Event::Detach { node }
}
