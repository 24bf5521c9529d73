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
mod recover;
mod report;
mod vip;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

pub use check::{CheckError, CheckFuture, HealthCheck, Observation, ReplicaState, SqlHealthCheck};
pub use hook::{CommandHook, FailoverContext, FailoverHook, HookFailure, HookFuture, HookOutcome, NodeInfo};

pub use crate::topology::{NodeState, Role, Snapshot, Status};
pub(crate) use recover::recover;
pub(crate) use report::BackendError;

use crate::config::Config;
use crate::coordination::{Ha, SharedState, Verdict};
use crate::pool::Pools;
use crate::topology::Topology;
use machine::{Action, Event, Machine, Now};

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
    /// The failover hook failed (how: for the built-in hook, how its
    /// command ended); nothing changed.
    #[error("the failover hook failed: {0}")]
    HookFailed(HookFailure),
    /// The hook succeeded but the node never answered as a primary.
    #[error("node {0} never answered as a primary; writes stay where they were")]
    NeverPromoted(usize),
    /// `RECOVER NODE` with no `[recovery] command` configured.
    #[error("no recovery command is configured ([recovery] command)")]
    NoRecoveryCommand,
    /// No primary is available to rebuild a node from.
    #[error("no primary is available to rebuild the node from")]
    NoPrimary,
    /// A recovery of this node is already running.
    #[error("node {0} is already being recovered")]
    Busy(usize),
    /// The recovery command succeeded but the node never answered as a
    /// streaming standby within `recovery.stream_timeout`; it stays detached.
    #[error("node {0} never answered as a streaming standby after the recovery command; it stays detached")]
    NeverStreamed(usize),
    /// Several poolers coordinate and this one is not their leader: only
    /// the leader promotes and recovers nodes (the reason names the leader).
    #[error("{0}; run it on the leader")]
    NotLeader(crate::coordination::NotLeader),
}

/// A request to the controller.
pub(crate) struct Command {
    event: Event,
    reply: Option<oneshot::Sender<Result<(), NodeCommandError>>>,
}

/// What sessions and the API hold to talk to the controller, and what the
/// controller works with: the configuration, the [`Topology`] it publishes
/// to (the router only reads it) and the pools whose connections it cuts
/// when a node leaves service.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The configuration in force (a reload swaps it; its node list is
    /// every slot, removed ones included).
    config: arc_swap::ArcSwap<Config>,
    topology: Arc<Topology>,
    pools: Arc<Pools>,
    tx: mpsc::UnboundedSender<Command>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    check_now: Vec<Arc<Notify>>,
    /// More than one node: health checks run, so the state can change.
    checked: bool,
    /// Nodes an online recovery is rebuilding now.
    recovering: std::sync::Mutex<std::collections::HashSet<usize>>,
    /// This pooler's membership of a pooler group (`[coordination]`).
    ha: Option<Arc<Ha>>,
    /// This process handed its listeners to a successor, which runs the
    /// commands now: none runs here any more.
    retired: std::sync::atomic::AtomicBool,
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
    pub(crate) fn new(config: Arc<Config>, topology: Arc<Topology>, pools: Arc<Pools>, ha: Option<Arc<Ha>>) -> Cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        Cluster {
            // One per slot a reload may ever add (see MAX_NODE_SLOTS).
            check_now: (0..crate::topology::MAX_NODE_SLOTS.max(config.nodes.len()))
                .map(|_| Arc::new(Notify::new()))
                .collect(),
            checked: config.nodes.len() > 1,
            config: arc_swap::ArcSwap::new(config),
            recovering: Default::default(),
            ha,
            retired: Default::default(),
            topology,
            pools,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// A session could not reach `node`, lost its connection there, or saw
    /// it behave unlike its role: the controller checks it now (once until
    /// the check reports), or counts a [`hard`](BackendError::hard) error as
    /// a failed check (`failover.failover_on_backend_error`).
    pub(crate) fn backend_error(&self, node: usize, error: BackendError) {
        let event = Event::BackendError { node, error };
        let _ = self.tx.send(Command { event, reply: None });
    }

    /// Waits until the primary is available, or `timeout` passes; true
    /// when it is (at once with a single node, which is never checked).
    pub(crate) async fn wait_for_primary(&self, timeout: Duration) -> bool {
        !self.checked || self.topology.wait_for_primary(timeout).await
    }

    /// After a session failed to reach the primary `failed`: the primary
    /// that answers next, within `timeout` (see
    /// [`Topology::wait_for_primary_after`]). With a single node nothing is
    /// checked: no other primary can appear.
    pub(crate) async fn wait_for_primary_after(&self, failed: usize, timeout: Duration) -> Option<usize> {
        if !self.checked {
            return None;
        }
        self.topology.wait_for_primary_after(failed, timeout).await
    }

    /// More than one node: health checks run (a reload cannot change that).
    pub(crate) fn checked(&self) -> bool {
        self.checked
    }

    /// This pooler's membership of a pooler group, when coordinated.
    pub(crate) fn ha(&self) -> Option<&Arc<Ha>> {
        self.ha.as_ref()
    }

    /// Coordinated: proves this pooler leads before it runs `what` (always
    /// true when it runs alone). A retired pooler runs nothing.
    pub(crate) async fn fence(&self, what: &str) -> Result<(), NodeCommandError> {
        if self.retired.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::info!(what, "not run: this process handed over to its successor, which runs the commands");
            return Err(NodeCommandError::NotRunning);
        }
        match &self.ha {
            None => Ok(()),
            Some(ha) => ha.fence(what).await.map_err(NodeCommandError::NotLeader),
        }
    }

    /// A reload changed the node list: `config` (its nodes are every slot)
    /// is in force from now on, and the controller adds and removes nodes
    /// as `removed` says (see [`machine`]).
    pub(crate) fn reconfigure(&self, config: Arc<Config>, removed: Vec<bool>) {
        let nodes = config.nodes.clone();
        self.config.store(config);
        let event = Event::Reconfigure { nodes, removed };
        let _ = self.tx.send(Command { event, reply: None });
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

/// Publishes a new snapshot (waking whoever waits for a change) and cuts
/// the connections of nodes that left service.
fn publish(cluster: &Cluster, snapshot: Snapshot) {
    let before = cluster.topology.current();
    let in_service = |s: Status| matches!(s, Status::Up | Status::Waiting);
    let left: Vec<usize> = snapshot
        .nodes
        .iter()
        .filter(|n| !in_service(n.status) && before.nodes.get(n.id).is_some_and(|b| in_service(b.status)))
        .map(|n| n.id)
        .collect();
    let (removed, left): (Vec<usize>, Vec<usize>) =
        left.into_iter().partition(|&i| snapshot.nodes[i].status == Status::Removed);
    cluster.topology.publish(snapshot);
    if let Some(ha) = &cluster.ha {
        ha.wake();
    }
    // A node removed from the configuration drains: its transactions
    // finish, and each connection closes when it comes back.
    for node in removed {
        let idle = cluster.pools.retire_node(node);
        tracing::warn!(node, idle_closed = idle, "node removed: its connections close as their transactions end");
    }
    // Nothing new goes to a node out of service, and what was sent to it
    // fails now rather than whenever a hung server answers.
    for node in left {
        let cut = cluster.pools.cut_node(node);
        if cut > 0 {
            tracing::warn!(node, connections = cut, "node out of service: its server connections are closed");
        }
    }
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
pub(crate) async fn run(cluster: Arc<Cluster>, hooks: Arc<Hooks>) {
    let Some(mut rx) = cluster.rx.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let mut machine = Machine::new(&cluster.config.load(), Now::read());
    machine.set_promotes(hooks.failover.promotes());
    let mut tasks = tokio::task::JoinSet::new();
    // Per node, its checker (to stop when a reload removes the node).
    let mut checkers = Vec::new();
    if cluster.checked {
        for node in 0..cluster.config.load().nodes.len() {
            checkers.push(Some(tasks.spawn(check::run(cluster.clone(), hooks.check.clone(), node))));
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shared = cluster.ha.as_ref().map(|ha| ha.shared());
    if let Some(ha) = &cluster.ha {
        tasks.spawn(vip::run(ha.leading(), config_of(&cluster)));
    }
    loop {
        let command = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = tick.tick() => Command { event: Event::Tick, reply: None },
            Some(state) = next_shared(&mut shared) => Command { event: shared_event(&cluster, &state), reply: None },
        };
        if let Event::Reconfigure { nodes, removed } = &command.event {
            if cluster.checked {
                for node in checkers.len()..nodes.len() {
                    checkers.push(Some(tasks.spawn(check::run(cluster.clone(), hooks.check.clone(), node))));
                }
                for (node, checker) in checkers.iter_mut().enumerate() {
                    if removed.get(node).copied().unwrap_or(false) {
                        if let Some(c) = checker.take() {
                            c.abort();
                            hooks.check.node_removed(node);
                        }
                    }
                }
            }
        }
        let outcome = machine.apply(command.event, Now::read());
        if outcome.changed {
            publish(&cluster, machine.snapshot());
        }
        if let Some(reply) = command.reply {
            let _ = reply.send(outcome.result);
        }
        perform_all(&cluster, &hooks, &mut machine, outcome.actions).await;
    }
    // The receiver is given back so a later `run` can start again.
    if let Ok(mut slot) = cluster.rx.lock() {
        *slot = Some(rx);
    }
}

/// The coordination settings in force.
fn config_of(cluster: &Cluster) -> crate::config::CoordinationConfig {
    cluster.config.load().coordination.clone()
}

/// The leader's next state (never resolves when not coordinated).
async fn next_shared(
    rx: &mut Option<tokio::sync::watch::Receiver<Option<Arc<SharedState>>>>,
) -> Option<Arc<SharedState>> {
    let Some(rx) = rx.as_mut() else { return std::future::pending().await };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    rx.borrow_and_update().clone()
}

/// The leader's state in this pooler's node indexes (a node at an address
/// not configured here is left out, with a warning).
fn shared_event(cluster: &Cluster, state: &SharedState) -> Event {
    let config = cluster.config.load();
    let removed = cluster.topology.current();
    let index = |host: &str, port: u16| {
        let found = config.nodes.iter().enumerate().position(|(i, n)| {
            n.host == host && n.port == port && removed.nodes.get(i).is_none_or(|s| s.status != Status::Removed)
        });
        if found.is_none() {
            tracing::warn!(host, port, leader = %state.leader, "the leader pooler names a node not configured here: the poolers' node lists differ");
        }
        found
    };
    let primary = index(&state.primary_host, state.primary_port);
    let quarantined = state
        .nodes
        .iter()
        .filter(|n| n.status == Status::Quarantine.as_str())
        .filter_map(|n| index(&n.host, n.port))
        .collect();
    Event::Shared { leader: state.leader.clone(), primary, quarantined }
}

/// Carries out what transitions ask for, in order; the results go back into
/// the machine as events, and what those ask for is done next.
async fn perform_all(cluster: &Cluster, hooks: &Hooks, machine: &mut Machine, actions: Vec<Action>) {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        queue.extend(perform(cluster, hooks, machine, action).await);
    }
}

/// Applies `event` (publishing a change); what it asks for.
fn apply_now(cluster: &Cluster, machine: &mut Machine, event: Event) -> Vec<Action> {
    let outcome = machine.apply(event, Now::read());
    if outcome.changed {
        publish(cluster, machine.snapshot());
    }
    outcome.actions
}

/// Carries out one action; returns the actions its result led to.
async fn perform(cluster: &Cluster, hooks: &Hooks, machine: &mut Machine, action: Action) -> Vec<Action> {
    let config = cluster.config.load_full();
    let info = |i: usize| NodeInfo::of(i, &config.nodes[i]);
    match action {
        Action::CheckNow(node) => {
            if let Some(n) = cluster.check_now.get(node) {
                n.notify_one();
            }
        }
        Action::AskPositions { failed, candidates } => {
            // Every candidate at once, each bounded by the check timeout: the
            // failover waits for the slowest answer, not for their sum.
            let timeout = config.health.timeout;
            let mut looks = tokio::task::JoinSet::new();
            for &j in &candidates {
                let check = hooks.check.clone();
                looks.spawn(async move { (j, check::bounded(check.as_ref(), j, timeout).await) });
            }
            let mut seen = Vec::with_capacity(candidates.len());
            while let Some(r) = looks.join_next().await {
                // A check that panicked counts as no answer.
                if let Ok(v) = r {
                    seen.push(v);
                }
            }
            seen.sort_by_key(|(j, _)| *j);
            return apply_now(cluster, machine, Event::Positions { failed, seen });
        }
        Action::ConfirmDown { failed } => {
            let Some(ha) = cluster.ha.clone() else {
                return apply_now(cluster, machine, Event::QuorumDown { failed, agreed: true, why: "alone".into() });
            };
            let (host, port) = (config.nodes[failed].host.clone(), config.nodes[failed].port);
            let tx = cluster.tx.clone();
            // The controller goes on meanwhile: the answer comes back as an event.
            tokio::spawn(async move {
                let (agreed, why) = match ha.confirm_down(&host, port).await {
                    Verdict::Agreed(v) => (true, format!("{} of {} live poolers see it down", v.down, v.live)),
                    Verdict::Disagreed(v) => (false, format!("only {} of {} live poolers see it down", v.down, v.live)),
                    Verdict::NotLeader => (false, "this pooler is not the leader; the leader decides".into()),
                };
                let _ = tx.send(Command { event: Event::QuorumDown { failed, agreed, why }, reply: None });
            });
        }
        Action::Failover { failed, new_main } => {
            let ctx = FailoverContext { subject: info(failed), new_main: info(new_main), old_primary: info(failed) };
            if let Err(e) = cluster.fence("failover_command").await {
                tracing::warn!(failed, new_main, error = %e, "failover not run: this pooler cannot prove it leads");
                let outcome = HookOutcome::failed(e.to_string());
                return apply_now(cluster, machine, Event::FailoverDone { failed, outcome });
            }
            tracing::warn!(failed, new_main, "primary down: running the failover hook");
            metrics::counter!(crate::metrics::FAILOVERS).increment(1);
            let outcome = hooks.failover.failover(&ctx).await;
            let next = apply_now(cluster, machine, Event::FailoverDone { failed, outcome });
            // The new primary is taken when a check sees it out of recovery.
            if let Some(n) = cluster.check_now.get(new_main) {
                n.notify_one();
            }
            return next;
        }
        Action::Follow { standby, new_main, old_primary } => {
            let ctx =
                FailoverContext { subject: info(standby), new_main: info(new_main), old_primary: info(old_primary) };
            if cluster.fence("follow_primary_command").await.is_err() {
                tracing::debug!(standby, "follow-primary left to the leader pooler");
                return Vec::new();
            }
            if let HookOutcome::Failed { reason } = hooks.failover.follow_primary(&ctx).await {
                tracing::warn!(standby, new_main, %reason, "the follow-primary hook failed");
            }
        }
        Action::Failback { node } => {
            let primary = machine.primary();
            let ctx = FailoverContext { subject: info(node), new_main: info(primary), old_primary: info(primary) };
            if cluster.fence("failback_command").await.is_err() {
                tracing::debug!(node, "failback left to the leader pooler");
                return Vec::new();
            }
            if let HookOutcome::Failed { reason } = hooks.failover.failback(&ctx).await {
                tracing::warn!(node, %reason, "the failback hook failed");
            }
        }
    }
    Vec::new()
}

/// Switchover by an operator: the hook promotes `node` with the current
/// primary as the failed one; writes move only once `node` answers as a
/// primary (checked, not assumed), and the old primary is quarantined.
pub(crate) async fn promote(cluster: &Cluster, hooks: &Hooks, node: usize) -> Result<(), NodeCommandError> {
    let snapshot = cluster.topology.current();
    let primary = snapshot.primary;
    if snapshot.nodes.get(node).is_none_or(|n| n.status == Status::Removed) {
        return Err(NodeCommandError::UnknownNode(node));
    }
    if node == primary {
        return Err(NodeCommandError::AlreadyPrimary(node));
    }
    if !hooks.failover.promotes() {
        return Err(NodeCommandError::NoHook);
    }
    let config = cluster.config.load_full();
    let info = |i: usize| NodeInfo::of(i, &config.nodes[i]);
    let ctx = FailoverContext { subject: info(primary), new_main: info(node), old_primary: info(primary) };
    cluster.fence("failover_command (switchover)").await?;
    tracing::warn!(node, primary, "switchover requested by the operator: running the failover hook");
    if let HookOutcome::Failed { reason } = hooks.failover.failover(&ctx).await {
        return Err(NodeCommandError::HookFailed(reason));
    }
    let deadline = tokio::time::Instant::now() + config.failover.command_timeout;
    while tokio::time::Instant::now() < deadline {
        let seen = check::bounded(hooks.check.as_ref(), node, config.health.timeout).await;
        if matches!(seen, Ok(o) if !o.in_recovery) {
            return cluster.command(Event::Promoted { node }).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::error!(node, "promoted node never answered as a primary; writes stay where they were");
    Err(NodeCommandError::NeverPromoted(node))
}

/// This process handed its listeners to a successor: from now on it runs
/// no failover, follow-primary, failback, recovery or switchover command
/// (the successor, checking the same nodes, does), and it leaves its pooler
/// group at once so the successor can lead.
pub(crate) async fn retire(cluster: &Cluster) {
    cluster.retired.store(true, std::sync::atomic::Ordering::SeqCst);
    leave_group(cluster).await;
}

/// At shutdown: gives up the leadership and the lease at once (another
/// pooler takes over without waiting for the lease to expire), running
/// `if_down_command` if this pooler led.
pub(crate) async fn leave_group(cluster: &Cluster) {
    let Some(ha) = &cluster.ha else { return };
    let led = ha.term().is_some();
    ha.leave().await;
    if led {
        vip::bring_down(&cluster.config.load().coordination).await;
    }
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
