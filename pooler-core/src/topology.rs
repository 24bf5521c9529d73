//! The cluster as the pooler knows it: the published [`Snapshot`] of every
//! node's role, status and lag, and [`Topology`], its one owner.
//!
//! The cluster controller ([`crate::cluster`]) is the only writer: after
//! each event it publishes a new immutable snapshot. The router, every
//! session and the API read the latest one without locks, and may wait for
//! the next. Nothing here does I/O.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::Config;

/// Most node indexes a pooler gives out over its life: a reload that adds
/// nodes past it needs a restart (indexes of removed nodes are not reused).
pub const MAX_NODE_SLOTS: usize = 128;

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
    /// Taken out of `[[nodes]]` by a configuration reload: never checked or
    /// used again; its connections closed as they came back. The index is
    /// not reused.
    Removed,
}

impl Status {
    /// The name `SHOW pool_nodes` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Up => "up",
            Status::Down => "down",
            Status::Quarantine => "quarantine",
            Status::Removed => "removed",
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

/// [`Snapshot::primary_available`] over a node list (the state machine's own).
pub(crate) fn primary_available(nodes: &[NodeState], primary: usize) -> bool {
    nodes.get(primary).is_some_and(|n| match n.status {
        Status::Waiting => n.pg_role != Role::Standby,
        Status::Up => n.pg_role == Role::Primary,
        Status::Down | Status::Quarantine | Status::Removed => false,
    })
}

impl Snapshot {
    /// The cluster of `config.nodes` before any check, at `now`: the first
    /// node is the primary and every node is waiting, except a single node
    /// (never checked), which is up.
    pub fn initial(config: &Config, now: SystemTime) -> Snapshot {
        let checked = config.nodes.len() > 1;
        let nodes = config
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| {
                let mut s = NodeState::unchecked(id, n, now, "configured");
                if id == 0 {
                    s.role = Role::Primary;
                }
                if !checked {
                    (s.status, s.pg_up, s.pg_role) = (Status::Up, true, Role::Primary);
                }
                s
            })
            .collect();
        Snapshot { generation: 0, primary: 0, nodes }
    }
}

impl NodeState {
    /// Node `id` as configured by `n`, before any check: waiting, role
    /// unknown, since `now` for `cause`.
    pub(crate) fn unchecked(id: usize, n: &crate::config::NodeConfig, now: SystemTime, cause: &str) -> NodeState {
        NodeState {
            id,
            host: n.host.clone(),
            port: n.port,
            weight: n.weight,
            role: Role::Unknown,
            status: Status::Waiting,
            pg_up: false,
            pg_role: Role::Unknown,
            lag_bytes: 0,
            lag_time: Duration::ZERO,
            lagging: false,
            lsn: 0,
            replication_state: String::new(),
            sync_state: String::new(),
            operator_detached: false,
            last_status_change: now,
            cause: cause.into(),
        }
    }
}

/// The one owner of the published snapshot: the cluster controller
/// publishes, everyone else reads (a lock-free load) or waits for a change.
#[derive(Debug)]
pub struct Topology {
    state: ArcSwap<Snapshot>,
    changed: watch::Sender<u64>,
}

impl Topology {
    /// Starts with `initial` (usually [`Snapshot::initial`]).
    pub fn new(initial: Snapshot) -> Topology {
        let generation = initial.generation;
        Topology { state: ArcSwap::from_pointee(initial), changed: watch::channel(generation).0 }
    }

    /// The latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// The latest snapshot, borrowed (no reference count touched): for
    /// decisions on the hot path.
    pub(crate) fn guard(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.state.load()
    }

    /// The node that takes writes now (no reference count touched).
    pub fn primary(&self) -> usize {
        self.state.load().primary
    }

    /// Replaces the snapshot and wakes whoever waits for a change. The
    /// cluster controller calls this after every change; it is public (and
    /// hidden) so that benchmarks of a router can set the state they need:
    /// anything published elsewhere is replaced at the controller's next
    /// change.
    #[doc(hidden)]
    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        self.state.store(Arc::new(snapshot));
        self.changed.send_replace(generation);
    }

    /// Waits until the primary is available, or `timeout` passes; true when
    /// it is.
    pub async fn wait_for_primary(&self, timeout: Duration) -> bool {
        if self.current().primary_available() {
            return true;
        }
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if self.current().primary_available() {
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
    pub async fn wait_for_primary_after(&self, failed: usize, timeout: Duration) -> Option<usize> {
        if timeout.is_zero() {
            return None;
        }
        let mut rx = self.changed.subscribe();
        let mut saw_out = false;
        let wait = async {
            loop {
                let s = self.current();
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
}
