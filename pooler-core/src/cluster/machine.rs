//! The cluster state machine: events in, a new state and actions out. No I/O
//! and no clock of its own: every time it uses is the [`Now`] its caller
//! passes to [`Machine::new`] and [`Machine::apply`], so every transition,
//! timed ones included, is tested here without a server and without sleeping.
//!
//! The rules:
//! - A failed check (retries included) puts an up node `down`; a passing one
//!   brings a `down` node back `up` (a failed standby rejoins by itself),
//!   unless an operator detached it.
//! - The primary failing quarantines it and asks every up standby, there and
//!   then, how much WAL it has received; the failover hook then runs once, to
//!   promote the one that received the most (replay position as the
//!   tie-break; with `prefer_sync_standbys`, among the synchronous standbys
//!   first). Figures from earlier checks never decide: a standby whose replay
//!   is paused may have replayed less and received more, and only what was
//!   received survives a promotion. The failed primary gets no reads and no
//!   writes, whatever it says later, until it returns as a streaming standby
//!   (`auto_failback`) or an operator attaches it.
//! - A node answering as a primary becomes the primary only while the current
//!   one is not available as a primary (failed, quarantined, or in recovery).
//!   Two claimants at once: the configured rule picks one, the other is
//!   quarantined; writes never go to both.
//! - A new primary makes every other node the subject of the follow-primary hook.
//! - A backend error seen by a session asks for an immediate check, or (with
//!   `failover_on_backend_error`) counts as a failed check at once.

use std::time::{Duration, Instant, SystemTime};

use super::check::{CheckError, Observation};
use super::hook::HookOutcome;
use super::report::BackendError;
use super::{NodeCommandError, NodeState, Role, Snapshot, Status};
use crate::config::{Config, FalsePrimaryRule};

mod coordinated;

/// The time of an event, as the caller read it: the machine reads no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Now {
    /// For durations: how long the primary has been missing, whether it
    /// moved on since a standby's last replay.
    pub(crate) mono: Instant,
    /// For what is shown: a node's `last_status_change`.
    pub(crate) wall: SystemTime,
}

impl Now {
    /// Both clocks, read now (what the controller passes).
    pub(crate) fn read() -> Now {
        Now { mono: Instant::now(), wall: SystemTime::now() }
    }
}

/// What can happen to the cluster.
#[derive(Debug)]
pub(crate) enum Event {
    /// A check of `node` finished (after its retries).
    Checked { node: usize, result: Result<Observation, CheckError> },
    /// A session could not connect to `node`, lost its connection, or saw
    /// it behave unlike its role.
    BackendError { node: usize, error: BackendError },
    /// What the standbys said when asked at `failed`'s failover
    /// ([`Action::AskPositions`]), in the order asked.
    Positions { failed: usize, seen: Vec<(usize, Result<Observation, CheckError>)> },
    /// The failover hook for `failed` returned.
    FailoverDone { failed: usize, outcome: HookOutcome },
    /// An operator detaches `node`.
    Detach { node: usize },
    /// An operator attaches `node`.
    Attach { node: usize },
    /// An operator's switchover made `node` a primary (it answered as one).
    Promoted { node: usize },
    /// A reload changed the node list: `nodes` is every slot (the old
    /// ones first, at their indexes, then the new ones); `removed` says
    /// which slots left the configuration.
    Reconfigure { nodes: Vec<crate::config::NodeConfig>, removed: Vec<bool> },
    /// The leader pooler's verdict on the primary `failed` seen down here
    /// ([`Action::ConfirmDown`]): whether a majority of the live poolers
    /// see it down too.
    QuorumDown { failed: usize, agreed: bool, why: String },
    /// Another pooler, the leader, declared the cluster state: `primary` is
    /// its primary, `quarantined` the nodes it keeps out (indexes here).
    Shared { leader: String, primary: Option<usize>, quarantined: Vec<usize> },
    /// Time passes (the search for a primary has a deadline).
    Tick,
}

/// What a transition asks the controller to do, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Check `node` now.
    CheckNow(usize),
    /// The primary `failed` is down: look at each of `candidates` now (their
    /// received WAL) and report with [`Event::Positions`].
    AskPositions { failed: usize, candidates: Vec<usize> },
    /// Run the failover hook: `failed` primary, promote `new_main`.
    Failover { failed: usize, new_main: usize },
    /// Run the follow-primary hook for `standby`.
    Follow { standby: usize, new_main: usize, old_primary: usize },
    /// Run the failback hook for `node`.
    Failback { node: usize },
    /// Coordinated: ask whether a majority of the live poolers see the
    /// primary `failed` down, and report with [`Event::QuorumDown`].
    ConfirmDown { failed: usize },
}

/// The result of applying one event.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) actions: Vec<Action>,
    /// The state changed: publish a new snapshot.
    pub(crate) changed: bool,
    /// The answer to an operator's command.
    pub(crate) result: Result<(), NodeCommandError>,
}

/// Settings the machine follows.
#[derive(Debug, Clone)]
struct Rules {
    lag_bytes: u64,
    lag_time: Duration,
    failover_on_backend_error: bool,
    auto_failback: bool,
    search_timeout: Duration,
    false_primary: FalsePrimaryRule,
    prefer_sync: bool,
    application_names: Vec<Option<String>>,
    checked: bool,
    /// The failover hook can promote a node.
    promotes: bool,
    /// Several poolers coordinate (`[coordination]`): a failover needs the
    /// quorum's agreement, and the leader's state is followed.
    coordinated: bool,
}

/// The state machine.
#[derive(Debug)]
pub(crate) struct Machine {
    nodes: Vec<NodeState>,
    seen: Vec<Option<Observation>>,
    primary: usize,
    rules: Rules,
    generation: u64,
    /// The failover hook already ran for this failed primary.
    failover_ran_for: Option<usize>,
    /// The node that hook was asked to promote.
    promoting: Option<usize>,
    /// Since when no node has been available as the primary.
    primary_lost_at: Option<Instant>,
    search_reported: bool,
    /// Highest WAL position the primary reported, and when it last moved.
    primary_lsn: u64,
    primary_moved_at: Option<Instant>,
    /// False-primary warnings already given, per node.
    warned: Vec<bool>,
    /// Per node: quarantined as a former (failed or switched-over) primary,
    /// never to be taken as the primary again on its own word. A node
    /// quarantined only for claiming primary while another was one may be
    /// taken once that one is gone.
    former: Vec<bool>,
    /// Per node: an immediate check was asked for and has not reported yet.
    check_asked: Vec<bool>,
    /// Coordinated: the primary whose failure the quorum is being asked
    /// about, and the one it agreed is down.
    confirming: Option<usize>,
    confirmed: Option<usize>,
    /// Coordinated: the node the leader declared the primary, taken as soon
    /// as this pooler's own check sees it answer as one.
    pending_primary: Option<usize>,
    /// The time of the event being applied (of the creation before any):
    /// the only time the machine knows.
    now: Now,
}

impl Machine {
    /// Every node waiting since `now`, the first one the primary; with one
    /// node (never checked), that node is up.
    pub(crate) fn new(config: &Config, now: Now) -> Machine {
        let checked = config.nodes.len() > 1;
        let nodes = Snapshot::initial(config, now.wall).nodes;
        let f = &config.failover;
        Machine {
            seen: config.nodes.iter().map(|_| None).collect(),
            warned: vec![false; config.nodes.len()],
            former: vec![false; config.nodes.len()],
            check_asked: vec![false; config.nodes.len()],
            nodes,
            primary: 0,
            rules: Rules {
                lag_bytes: config.health.lag_threshold_bytes,
                lag_time: config.health.lag_threshold,
                failover_on_backend_error: f.failover_on_backend_error,
                auto_failback: f.auto_failback,
                search_timeout: f.search_primary_node_timeout,
                false_primary: f.false_primary,
                prefer_sync: f.prefer_sync_standbys,
                application_names: config.nodes.iter().map(|n| n.application_name.clone()).collect(),
                checked,
                promotes: !f.command.is_empty(),
                coordinated: config.coordination.enabled(),
            },
            confirming: None,
            confirmed: None,
            pending_primary: None,
            generation: 0,
            failover_ran_for: None,
            promoting: None,
            primary_lost_at: None,
            search_reported: false,
            primary_lsn: 0,
            primary_moved_at: None,
            now,
        }
    }

    /// Whether the failover hook can promote a node (else the machine only
    /// discovers a primary promoted elsewhere).
    pub(crate) fn set_promotes(&mut self, promotes: bool) {
        self.rules.promotes = promotes;
    }

    /// The node writes go to.
    pub(crate) fn primary(&self) -> usize {
        self.primary
    }

    /// The state as published.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot { generation: self.generation, primary: self.primary, nodes: self.nodes.clone() }
    }

    /// Applies one event, which happened at `now`.
    pub(crate) fn apply(&mut self, event: Event, now: Now) -> Outcome {
        self.now = now;
        let before = (self.primary, self.nodes.clone());
        let mut out = Outcome { actions: Vec::new(), changed: false, result: Ok(()) };
        match event {
            Event::Checked { node, .. } | Event::BackendError { node, .. }
                if self.nodes.get(node).is_some_and(|n| n.status == Status::Removed) =>
            {
                tracing::debug!(node, "event about a removed node ignored");
            }
            Event::Checked { node, result } if node < self.nodes.len() => {
                self.check_asked[node] = false;
                match result {
                    Ok(o) => self.checked_ok(node, o, &mut out),
                    Err(e) => self.failed(node, &format!("health check failed: {e}"), &mut out),
                }
            }
            Event::BackendError { node, error } if node < self.nodes.len() => {
                let in_service = matches!(self.nodes[node].status, Status::Up | Status::Waiting);
                if in_service && error.hard() && self.rules.failover_on_backend_error {
                    self.failed(node, &format!("backend error: {error}"), &mut out);
                } else if in_service && !self.check_asked[node] {
                    self.check_asked[node] = true;
                    tracing::info!(node, %error, "backend error seen by a session: checking the node now");
                    out.actions.push(Action::CheckNow(node));
                }
            }
            Event::Positions { failed, seen } => self.positions(failed, seen, &mut out),
            Event::FailoverDone { failed, outcome } => {
                let quarantined = self.nodes.get(failed).is_some_and(|n| n.status == Status::Quarantine);
                if let (HookOutcome::Failed { reason }, true) = (outcome, quarantined) {
                    // Nothing was promoted (as far as we know): the old
                    // primary may take writes again if it returns as one.
                    self.former[failed] = false;
                    self.set_status(failed, Status::Down, &format!("the failover hook failed: {reason}"), false);
                    tracing::error!(failed, %reason, "failover hook failed: writes wait for a primary to be found");
                }
            }
            Event::Detach { node } => out.result = self.detach(node),
            Event::Attach { node } => out.result = self.attach(node, &mut out.actions),
            Event::Promoted { node } => {
                if self.nodes.get(node).is_some_and(|n| n.status != Status::Removed) {
                    self.switch_primary(node, "switchover by the operator", &mut out.actions);
                } else {
                    out.result = Err(NodeCommandError::UnknownNode(node));
                }
            }
            Event::Reconfigure { nodes, removed } => self.reconfigure(&nodes, &removed, &mut out),
            Event::QuorumDown { failed, agreed, why } => self.quorum_down(failed, agreed, &why, &mut out),
            Event::Shared { leader, primary, quarantined } => self.shared(&leader, primary, &quarantined, &mut out),
            Event::Tick => {}
            Event::Checked { node, .. } | Event::BackendError { node, .. } => {
                tracing::debug!(node, "event about an unknown node ignored");
            }
        }
        self.watch_primary_search();
        out.changed = (self.primary, &self.nodes) != (before.0, &before.1);
        if out.changed {
            self.generation += 1;
        }
        out
    }

    fn checked_ok(&mut self, i: usize, o: Observation, out: &mut Outcome) {
        let pg_role = if o.in_recovery { Role::Standby } else { Role::Primary };
        {
            let n = &mut self.nodes[i];
            n.pg_up = true;
            n.pg_role = pg_role;
            n.lsn = o.lsn;
        }
        self.seen[i] = Some(o.clone());
        if i == self.primary {
            self.primary_checked(i, &o, out);
            return;
        }
        if o.in_recovery {
            self.standby_checked(i, &o, out);
        } else {
            self.claimant_checked(i, out);
        }
    }

    /// The current primary answered.
    fn primary_checked(&mut self, i: usize, o: &Observation, out: &mut Outcome) {
        if o.in_recovery {
            // Demoted by something else: writes will fail (read-only) until
            // another node answers as the primary; look at the others now
            // rather than at their next period.
            if self.nodes[i].role != Role::Standby {
                tracing::warn!(node = i, "the primary answers that it is in recovery: waiting for a new primary");
                for j in (0..self.nodes.len()).filter(|&j| j != i) {
                    if !self.check_asked[j] {
                        self.check_asked[j] = true;
                        out.actions.push(Action::CheckNow(j));
                    }
                }
            }
            self.nodes[i].role = Role::Standby;
            if self.nodes[i].status != Status::Quarantine && !self.nodes[i].operator_detached {
                self.set_status(i, Status::Up, "health check passed (in recovery)", false);
            }
            return;
        }
        self.nodes[i].role = Role::Primary;
        if self.nodes[i].status == Status::Quarantine || self.nodes[i].operator_detached {
            return;
        }
        self.set_status(i, Status::Up, "health check passed", false);
        if self.failover_ran_for == Some(i) {
            self.failover_ran_for = None;
        }
        if o.lsn > self.primary_lsn || self.primary_moved_at.is_none() {
            self.primary_lsn = o.lsn;
            self.primary_moved_at = Some(self.now.mono);
        }
        for (j, name) in self.rules.application_names.iter().enumerate() {
            let replica = name.as_ref().and_then(|name| o.replicas.iter().find(|r| &r.application_name == name));
            if let Some(r) = replica {
                self.nodes[j].replication_state = r.state.clone();
                self.nodes[j].sync_state = r.sync_state.clone();
            }
        }
    }

    /// A node other than the primary answered from recovery.
    fn standby_checked(&mut self, i: usize, o: &Observation, out: &mut Outcome) {
        self.nodes[i].role = Role::Standby;
        self.warned[i] = false;
        // Lag, against the primary's last position.
        let primary_ok = self.nodes[self.primary].pg_role == Role::Primary;
        let lag_bytes = if primary_ok { self.primary_lsn.saturating_sub(o.lsn) } else { 0 };
        // Replay age only means lag while the primary has moved on since.
        let moved_since = self.primary_moved_at.is_some_and(|t| self.now.mono.duration_since(t) < o.replay_age);
        let by_bytes = self.rules.lag_bytes > 0 && lag_bytes > self.rules.lag_bytes;
        let by_time =
            !self.rules.lag_time.is_zero() && lag_bytes > 0 && o.replay_age > self.rules.lag_time && moved_since;
        let lagging = by_bytes || by_time;
        {
            let n = &mut self.nodes[i];
            n.lag_bytes = lag_bytes;
            n.lag_time = if lag_bytes > 0 { o.replay_age } else { Duration::ZERO };
            if self.rules.application_names[i].is_none() {
                n.replication_state = o.wal_receiver.clone().unwrap_or_default();
            }
            if n.lagging != lagging {
                n.lagging = lagging;
                if lagging {
                    tracing::warn!(node = i, lag_bytes, replay_age = ?o.replay_age, "standby lags past the threshold: out of the read set");
                } else {
                    tracing::info!(node = i, lag_bytes, "standby caught up: back in the read set");
                }
            }
        }
        if self.nodes[i].operator_detached {
            return;
        }
        match self.nodes[i].status {
            Status::Waiting => self.set_status(i, Status::Up, "health check passed", false),
            Status::Down => {
                if self.rules.auto_failback {
                    self.set_status(i, Status::Up, "health check passed again", false);
                    out.actions.push(Action::Failback { node: i });
                }
            }
            Status::Quarantine => {
                let streaming = o.wal_receiver.as_deref() == Some("streaming");
                if self.rules.auto_failback && streaming {
                    self.former[i] = false;
                    self.set_status(i, Status::Up, "back as a streaming standby", false);
                    out.actions.push(Action::Failback { node: i });
                }
            }
            Status::Up | Status::Removed => {}
        }
    }

    /// A node other than the primary answered that it is not in recovery.
    fn claimant_checked(&mut self, i: usize, out: &mut Outcome) {
        if self.pending_primary == Some(i) && self.nodes[i].status != Status::Removed {
            self.pending_primary = None;
            self.switch_primary(i, "declared the primary by the leader pooler, and answers as one", &mut out.actions);
            return;
        }
        if (self.nodes[i].status == Status::Quarantine && self.former[i]) || self.nodes[i].operator_detached {
            if !self.warned[i] {
                self.warned[i] = true;
                tracing::warn!(
                    node = i,
                    "a former primary or detached node answers as a primary: ignored (false primary)"
                );
            }
            return;
        }
        let current = self.primary;
        let current_ok = matches!(self.nodes[current].status, Status::Up | Status::Waiting)
            && self.nodes[current].pg_role == Role::Primary;
        if !current_ok {
            let cause = if self.promoting == Some(i) {
                "promoted by the failover hook: answers as a primary"
            } else {
                "the primary is not available and this node answers as a primary"
            };
            self.switch_primary(i, cause, &mut out.actions);
            return;
        }
        // Two primaries.
        let take_new = match self.rules.false_primary {
            FalsePrimaryRule::KeepCurrent => false,
            FalsePrimaryRule::MostStandbys => self.followers(i) > self.followers(current),
        };
        if take_new {
            self.switch_primary(i, "two nodes answer as primary; this one has more standbys", &mut out.actions);
        } else {
            // Kept out while the current primary is one; taken if that one
            // goes (an outside tool promoted it before our checks saw the
            // primary fail).
            self.set_status(i, Status::Quarantine, "answers as a primary while another node is the primary", true);
        }
    }

    /// How many standbys were last seen streaming from node `i`.
    fn followers(&self, i: usize) -> usize {
        let (host, port) = (&self.nodes[i].host, self.nodes[i].port);
        let local = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1") || h.starts_with('/');
        self.seen
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, o)| o.as_ref())
            .filter(|o| o.in_recovery)
            .filter(|o| o.sender.as_ref().is_some_and(|(h, p)| *p == port && (h == host || (local(h) && local(host)))))
            .count()
    }

    /// Node `i` failed (a check, or a backend error counted as one).
    fn failed(&mut self, i: usize, cause: &str, out: &mut Outcome) {
        {
            let n = &mut self.nodes[i];
            n.pg_up = false;
            n.pg_role = Role::Unknown;
        }
        self.seen[i] = None;
        if matches!(self.nodes[i].status, Status::Up | Status::Waiting) {
            self.set_status(i, Status::Down, cause, true);
        }
        if i != self.primary {
            return;
        }
        self.primary_lost_at.get_or_insert(self.now.mono);
        if self.failover_ran_for == Some(i) {
            return;
        }
        if !self.rules.promotes {
            return;
        }
        if self.rules.coordinated && self.confirmed != Some(i) {
            // The other poolers must see it down too (or this is a problem
            // between this pooler and the primary, not a dead primary).
            if self.confirming != Some(i) {
                self.confirming = Some(i);
                out.actions.push(Action::ConfirmDown { failed: i });
            }
            return;
        }
        self.confirmed = None;
        self.fail_over(i, out);
    }

    /// Starts the failover of the failed primary `i`.
    fn fail_over(&mut self, i: usize, out: &mut Outcome) {
        // Every standby in service is asked what it has received; which one
        // is promoted is decided from those answers (`positions`).
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .filter(|&j| {
                let n = &self.nodes[j];
                n.status == Status::Up && n.pg_role == Role::Standby && !n.operator_detached
            })
            .collect();
        if candidates.is_empty() {
            tracing::error!(primary = i, "the primary is down and no standby is up to promote");
            return;
        }
        self.failover_ran_for = Some(i);
        // Whatever it says when it comes back, the failed primary takes
        // nothing until it returns as a standby or is attached.
        self.former[i] = true;
        self.set_status(i, Status::Quarantine, "failed primary: asking the standbys what they received", true);
        out.actions.push(Action::AskPositions { failed: i, candidates });
    }

    /// The standbys answered at `failed`'s failover: promote the best one.
    fn positions(&mut self, failed: usize, seen: Vec<(usize, Result<Observation, CheckError>)>, out: &mut Outcome) {
        if self.failover_ran_for != Some(failed) || self.promoting.is_some() || failed != self.primary {
            tracing::debug!(failed, "standby positions for a failover no longer under way: ignored");
            return;
        }
        for (j, r) in &seen {
            match r {
                Ok(o) => tracing::info!(
                    node = j,
                    in_recovery = o.in_recovery,
                    received = %crate::lsn::format_lsn(o.received_lsn),
                    replayed = %crate::lsn::format_lsn(o.lsn),
                    sync_state = self.nodes.get(*j).map(|n| n.sync_state.as_str()).unwrap_or(""),
                    "failover candidate"
                ),
                Err(e) => tracing::warn!(node = j, error = %e, "failover candidate did not answer"),
            }
        }
        // A standby promoted meanwhile by someone else is taken as it is:
        // promoting a second one would make two primaries.
        if let Some(&(j, _)) = seen.iter().find(|(j, r)| *j < self.nodes.len() && matches!(r, Ok(o) if !o.in_recovery))
        {
            self.claimant_checked(j, out);
            return;
        }
        let sync = |j: usize| self.nodes.get(j).is_some_and(|n| matches!(n.sync_state.as_str(), "sync" | "quorum"));
        let prefer_sync = self.rules.prefer_sync;
        match promotion_target(&seen, |j| prefer_sync && sync(j)) {
            Some(new_main) => {
                self.promoting = Some(new_main);
                let n = &mut self.nodes[failed];
                n.cause = format!("failed primary: failover to node {new_main}");
                tracing::warn!(failed, new_main, "failover: promoting the standby that received the most WAL");
                out.actions.push(Action::Failover { failed, new_main });
            }
            None => {
                // Nothing can be promoted now: the old primary may take writes
                // again if it returns, and the next failed check tries again.
                tracing::error!(primary = failed, "the primary is down and no standby answered to be promoted");
                self.former[failed] = false;
                self.failover_ran_for = None;
                self.set_status(failed, Status::Down, "no standby answered at failover", false);
            }
        }
    }

    /// Makes `new` the primary.
    fn switch_primary(&mut self, new: usize, cause: &str, actions: &mut Vec<Action>) {
        let old = self.primary;
        if new == old {
            return;
        }
        self.primary = new;
        self.failover_ran_for = None;
        self.confirming = None;
        self.confirmed = None;
        if self.pending_primary == Some(new) {
            self.pending_primary = None;
        }
        self.promoting = None;
        self.primary_lost_at = None;
        self.search_reported = false;
        self.primary_lsn = self.seen[new].as_ref().map(|o| o.lsn).unwrap_or(0);
        self.primary_moved_at = None;
        tracing::warn!(
            old_primary = old,
            new_primary = new,
            cause,
            "primary changed: writes now go to the new primary"
        );
        {
            let n = &mut self.nodes[new];
            n.role = Role::Primary;
            n.lagging = false;
            n.lag_bytes = 0;
            n.lag_time = Duration::ZERO;
        }
        if !self.nodes[new].operator_detached {
            self.set_status(new, Status::Up, cause, false);
        }
        self.nodes[old].role = Role::Unknown;
        self.former[old] = true;
        self.former[new] = false;
        if self.nodes[old].status != Status::Quarantine {
            self.set_status(old, Status::Quarantine, "former primary: kept out until it returns as a standby", true);
        }
        for j in (0..self.nodes.len()).filter(|&j| j != old && j != new && self.nodes[j].status != Status::Removed) {
            actions.push(Action::Follow { standby: j, new_main: new, old_primary: old });
        }
    }

    /// The node list changed (see [`Event::Reconfigure`]): new slots wait
    /// for their first check; removed ones leave for good, and when the
    /// primary is among them, writes wait for the node that answers as a
    /// primary next (every node is checked now). No hook runs: the operator
    /// changed the list on purpose.
    fn reconfigure(&mut self, nodes: &[crate::config::NodeConfig], removed: &[bool], out: &mut Outcome) {
        for (i, n) in nodes.iter().enumerate() {
            if i >= self.nodes.len() {
                self.nodes.push(NodeState::unchecked(i, n, self.now.wall, "added by a configuration reload"));
                self.seen.push(None);
                self.warned.push(false);
                self.former.push(false);
                self.check_asked.push(true);
                self.rules.application_names.push(n.application_name.clone());
                tracing::warn!(node = i, host = %n.host, port = n.port, "node added by a configuration reload");
                out.actions.push(Action::CheckNow(i));
                continue;
            }
            self.nodes[i].weight = n.weight;
            self.rules.application_names[i].clone_from(&n.application_name);
            if !removed.get(i).copied().unwrap_or(false) || self.nodes[i].status == Status::Removed {
                continue;
            }
            self.set_status(i, Status::Removed, "removed from the configuration by a reload", true);
            let n = &mut self.nodes[i];
            n.pg_up = false;
            n.lagging = false;
            self.seen[i] = None;
            if i == self.primary {
                tracing::warn!(node = i, "the primary was removed from the configuration: writes wait for a node that answers as the primary");
                self.primary_lost_at.get_or_insert(self.now.mono);
                self.failover_ran_for = Some(i);
                for j in (0..self.nodes.len()).filter(|&j| j != i && self.nodes[j].status != Status::Removed) {
                    self.check_asked[j] = true;
                    out.actions.push(Action::CheckNow(j));
                }
            }
        }
    }

    fn detach(&mut self, i: usize) -> Result<(), NodeCommandError> {
        if i >= self.nodes.len() || self.nodes[i].status == Status::Removed {
            return Err(NodeCommandError::UnknownNode(i));
        }
        if i == self.primary {
            return Err(NodeCommandError::IsPrimary(i));
        }
        self.nodes[i].operator_detached = true;
        if self.nodes[i].status != Status::Down {
            self.set_status(i, Status::Down, "detached by the operator", true);
        }
        Ok(())
    }

    fn attach(&mut self, i: usize, actions: &mut Vec<Action>) -> Result<(), NodeCommandError> {
        if i >= self.nodes.len() || self.nodes[i].status == Status::Removed {
            return Err(NodeCommandError::UnknownNode(i));
        }
        let n = &mut self.nodes[i];
        let was_out = n.operator_detached || matches!(n.status, Status::Down | Status::Quarantine);
        n.operator_detached = false;
        self.warned[i] = false;
        self.former[i] = false;
        if was_out {
            // Checked, not assumed: it serves nothing until a check passes.
            self.set_status(i, Status::Waiting, "attached by the operator", false);
            actions.push(Action::CheckNow(i));
            actions.push(Action::Failback { node: i });
        }
        Ok(())
    }

    fn watch_primary_search(&mut self) {
        let now = self.now.mono;
        let available = crate::topology::primary_available(&self.nodes, self.primary);
        if available {
            self.primary_lost_at = None;
            self.search_reported = false;
            return;
        }
        if !self.rules.checked {
            return;
        }
        let since = *self.primary_lost_at.get_or_insert(now);
        if !self.search_reported && now.duration_since(since) >= self.rules.search_timeout {
            self.search_reported = true;
            tracing::error!(
                waited = ?now.duration_since(since),
                "no node answers as the primary (search_primary_node_timeout): writes fail until one does"
            );
        }
    }

    fn set_status(&mut self, i: usize, status: Status, cause: &str, warn: bool) {
        let n = &mut self.nodes[i];
        // Removed is for good.
        if n.status == status || n.status == Status::Removed {
            return;
        }
        let was = n.status;
        n.status = status;
        n.cause = cause.to_owned();
        n.last_status_change = self.now.wall;
        if warn {
            tracing::warn!(node = i, from = was.as_str(), to = status.as_str(), cause, "node status changed");
        } else {
            tracing::info!(node = i, from = was.as_str(), to = status.as_str(), cause, "node status changed");
        }
    }
}

/// Which standby to promote, from what each said at failover time: among
/// those that answered from recovery (and among the `preferred` ones, if any
/// answered), the one that received the most WAL; then the one that
/// replayed the most; then the lowest index. `None` when none answered.
pub(crate) fn promotion_target(
    seen: &[(usize, Result<Observation, CheckError>)],
    preferred: impl Fn(usize) -> bool,
) -> Option<usize> {
    let live = || seen.iter().filter_map(|(j, r)| r.as_ref().ok().filter(|o| o.in_recovery).map(|o| (*j, o)));
    let any_preferred = live().any(|(j, _)| preferred(j));
    live()
        .filter(|(j, _)| !any_preferred || preferred(*j))
        .max_by_key(|(j, o)| (o.received_lsn.max(o.lsn), o.lsn, std::cmp::Reverse(*j)))
        .map(|(j, _)| j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn machine(n: usize, f: impl FnOnce(&mut Config)) -> Machine {
        let mut c = Config::with_nodes((0..n).map(|i| NodeConfig::new("127.0.0.1", 5432 + i as u16)).collect());
        c.health.lag_threshold_bytes = 1000;
        f(&mut c);
        Machine::new(&c, t0())
    }

    /// The fake clock's start: tests move time by hand, never by sleeping.
    pub(super) fn t0() -> Now {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        Now { mono: *START.get_or_init(Instant::now), wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) }
    }

    /// `secs` seconds after [`t0`].
    pub(super) fn at(secs: u64) -> Now {
        let t = t0();
        Now { mono: t.mono + Duration::from_secs(secs), wall: t.wall + Duration::from_secs(secs) }
    }

    /// A failed look.
    pub(super) fn err(why: &str) -> Result<Observation, CheckError> {
        Err(CheckError::Connect { reason: why.into() })
    }

    pub(super) fn primary(lsn: u64) -> Result<Observation, CheckError> {
        Ok(Observation { in_recovery: false, lsn, ..Default::default() })
    }

    pub(super) fn standby(lsn: u64, from_port: u16) -> Result<Observation, CheckError> {
        Ok(Observation {
            in_recovery: true,
            lsn,
            wal_receiver: Some("streaming".into()),
            sender: Some(("127.0.0.1".into(), from_port)),
            ..Default::default()
        })
    }

    pub(super) fn check(m: &mut Machine, node: usize, result: Result<Observation, CheckError>) -> Vec<Action> {
        m.apply(Event::Checked { node, result }, at(0)).actions
    }

    pub(super) fn status(m: &Machine) -> Vec<Status> {
        m.nodes.iter().map(|n| n.status).collect()
    }

    /// Three nodes checked once: primary 0 at `lsn` 100, standbys replayed it
    /// (node 2 not quite); a failover command configured.
    fn healthy() -> Machine {
        let mut m = machine(3, |c| c.failover.command = "promote %R".into());
        check(&mut m, 0, primary(100));
        check(&mut m, 1, standby(100, 5432));
        check(&mut m, 2, standby(90, 5432));
        m
    }

    #[test]
    fn nodes_wait_until_a_check_passes_and_a_single_node_is_up_at_once() {
        let m = machine(3, |_| {});
        assert_eq!(status(&m), vec![Status::Waiting; 3]);
        assert!(!m.snapshot().nodes[1].readable());
        assert!(m.snapshot().primary_available(), "the configured primary takes writes before any check");
        let m = healthy();
        assert_eq!(status(&m), vec![Status::Up; 3]);
        assert_eq!(m.nodes[1].role, Role::Standby);
        assert_eq!(m.nodes[2].lag_bytes, 10);
        let single = machine(1, |_| {});
        assert_eq!(status(&single), vec![Status::Up]);
    }

    #[test]
    fn a_failed_standby_goes_down_and_comes_back_with_a_failback() {
        let mut m = healthy();
        assert!(check(&mut m, 1, err("refused")).is_empty());
        assert_eq!(m.nodes[1].status, Status::Down);
        assert!(!m.snapshot().nodes[1].readable());
        assert_eq!(check(&mut m, 1, standby(100, 5432)), vec![Action::Failback { node: 1 }]);
        assert_eq!(m.nodes[1].status, Status::Up);
    }

    #[test]
    fn without_auto_failback_a_failed_node_waits_for_the_operator() {
        let mut m = machine(3, |c| c.failover.auto_failback = false);
        check(&mut m, 1, standby(0, 5432));
        check(&mut m, 1, err("refused"));
        check(&mut m, 1, standby(0, 5432));
        assert_eq!(m.nodes[1].status, Status::Down);
        let out = m.apply(Event::Attach { node: 1 }, at(0));
        assert_eq!(out.actions, vec![Action::CheckNow(1), Action::Failback { node: 1 }]);
        assert_eq!(m.nodes[1].status, Status::Waiting);
        check(&mut m, 1, standby(0, 5432));
        assert_eq!(m.nodes[1].status, Status::Up);
    }

    /// A standby's answer at failover time: `received` and `replayed`.
    fn position(received: u64, replayed: u64) -> Result<Observation, CheckError> {
        Ok(Observation { in_recovery: true, lsn: replayed, received_lsn: received, ..Default::default() })
    }

    fn positions(m: &mut Machine, seen: Vec<(usize, Result<Observation, CheckError>)>) -> Vec<Action> {
        m.apply(Event::Positions { failed: 0, seen }, at(0)).actions
    }

    #[test]
    fn primary_failure_promotes_the_standby_that_received_the_most_once_and_quarantines_the_old_primary() {
        let mut m = healthy();
        let actions = check(&mut m, 0, err("connection refused"));
        // The standbys are asked now; earlier checks' figures do not decide.
        assert_eq!(actions, vec![Action::AskPositions { failed: 0, candidates: vec![1, 2] }]);
        assert_eq!(m.nodes[0].status, Status::Quarantine);
        assert!(!m.snapshot().primary_available());
        // Failing again does not ask again.
        assert!(check(&mut m, 0, err("refused")).is_empty());
        // Node 1 replayed more, node 2 received more (its replay is paused):
        // node 2 keeps every commit, node 1 would lose some.
        let actions = positions(&mut m, vec![(1, position(150, 150)), (2, position(200, 90))]);
        assert_eq!(actions, vec![Action::Failover { failed: 0, new_main: 2 }]);
        // A late or repeated answer does not run the hook twice.
        assert!(positions(&mut m, vec![(1, position(300, 300))]).is_empty());
        // Node 2 answers as a primary: it takes writes, node 1 follows.
        let actions = check(&mut m, 2, primary(220));
        assert_eq!(m.primary(), 2);
        assert_eq!(actions, vec![Action::Follow { standby: 1, new_main: 2, old_primary: 0 }]);
    }

    #[test]
    fn the_promotion_target_is_chosen_by_received_wal_then_replay_then_index() {
        let none = |_: usize| false;
        assert_eq!(promotion_target(&[(1, position(10, 5)), (2, position(9, 9))], none), Some(1));
        assert_eq!(
            promotion_target(&[(1, position(10, 5)), (2, position(10, 6))], none),
            Some(2),
            "replay breaks ties"
        );
        assert_eq!(promotion_target(&[(1, position(10, 6)), (2, position(10, 6))], none), Some(1));
        // A check that does not report received WAL falls back on replay.
        assert_eq!(promotion_target(&[(1, position(0, 7)), (2, position(6, 6))], none), Some(1));
        // No answer, or an answer from outside recovery: not a candidate.
        assert_eq!(promotion_target(&[(1, err("timeout")), (2, primary(99))], none), None);
        assert_eq!(promotion_target(&[(1, err("timeout")), (2, position(1, 1))], none), Some(2));
        // Preferred (synchronous) standbys first, when any answered.
        let sync2 = |j: usize| j == 2;
        assert_eq!(promotion_target(&[(1, position(10, 10)), (2, position(8, 8))], sync2), Some(2));
        assert_eq!(promotion_target(&[(1, position(10, 10)), (2, err("down"))], sync2), Some(1));
    }

    #[test]
    fn prefer_sync_standbys_promotes_the_synchronous_one() {
        let mut m = machine(3, |c| {
            c.failover.command = "promote %R".into();
            c.failover.prefer_sync_standbys = true;
            c.nodes[1].application_name = Some("s1".into());
            c.nodes[2].application_name = Some("s2".into());
        });
        let replica = |name: &str, sync: &str| crate::cluster::ReplicaState {
            application_name: name.into(),
            state: "streaming".into(),
            sync_state: sync.into(),
        };
        let p = Observation {
            in_recovery: false,
            lsn: 100,
            replicas: vec![replica("s1", "async"), replica("s2", "sync")],
            ..Default::default()
        };
        check(&mut m, 0, Ok(p));
        check(&mut m, 1, standby(100, 5432));
        check(&mut m, 2, standby(100, 5432));
        check(&mut m, 0, err("refused"));
        let actions = positions(&mut m, vec![(1, position(120, 120)), (2, position(110, 110))]);
        assert_eq!(actions, vec![Action::Failover { failed: 0, new_main: 2 }]);
    }

    #[test]
    fn a_failover_with_no_standby_answering_promotes_nothing_and_tries_again_later() {
        let mut m = healthy();
        check(&mut m, 0, err("refused"));
        assert!(positions(&mut m, vec![(1, err("timeout")), (2, err("refused"))]).is_empty());
        assert_eq!(m.nodes[0].status, Status::Down, "not quarantined: nothing was promoted");
        // The next failed check asks again.
        assert_eq!(check(&mut m, 0, err("refused")), vec![Action::AskPositions { failed: 0, candidates: vec![1, 2] }]);
    }

    #[test]
    fn a_standby_found_promoted_at_failover_time_is_taken_instead_of_promoting_another() {
        let mut m = healthy();
        check(&mut m, 0, err("refused"));
        let actions = positions(&mut m, vec![(1, position(100, 100)), (2, primary(120))]);
        assert_eq!(actions, vec![Action::Follow { standby: 1, new_main: 2, old_primary: 0 }]);
        assert_eq!(m.primary(), 2);
    }

    #[test]
    fn after_a_failover_the_old_primary_stays_out_until_it_streams_as_a_standby() {
        let mut m = healthy();
        check(&mut m, 0, err("connection refused"));
        positions(&mut m, vec![(1, position(100, 100)), (2, position(90, 90))]);
        // Node 1 answers as a primary: it takes writes, node 2 follows.
        let actions = check(&mut m, 1, primary(120));
        assert_eq!(m.primary(), 1);
        assert_eq!(actions, vec![Action::Follow { standby: 2, new_main: 1, old_primary: 0 }]);
        assert!(m.snapshot().primary_available());
        // The old primary comes back as a primary: false primary, ignored.
        assert!(check(&mut m, 0, primary(100)).is_empty());
        assert_eq!((m.primary(), m.nodes[0].status), (1, Status::Quarantine));
        // Back as a standby that does not stream (diverged): still out.
        check(&mut m, 0, Ok(Observation { in_recovery: true, lsn: 100, ..Default::default() }));
        assert_eq!(m.nodes[0].status, Status::Quarantine);
        // Streaming from the new primary: back in, with a failback.
        assert_eq!(check(&mut m, 0, standby(120, 5433)), vec![Action::Failback { node: 0 }]);
        assert_eq!((m.nodes[0].status, m.nodes[0].role), (Status::Up, Role::Standby));
    }

    #[test]
    fn a_failed_failover_hook_lets_the_old_primary_take_writes_again() {
        let mut m = healthy();
        check(&mut m, 0, err("refused"));
        positions(&mut m, vec![(1, position(100, 100))]);
        let reason = crate::cluster::HookFailure::Exited { code: 1 };
        m.apply(Event::FailoverDone { failed: 0, outcome: HookOutcome::Failed { reason } }, at(0));
        assert_eq!(m.nodes[0].status, Status::Down);
        assert_eq!(m.nodes[0].cause, "the failover hook failed: the command exited with status 1");
        check(&mut m, 0, primary(100));
        assert_eq!((m.primary(), m.nodes[0].status), (0, Status::Up));
    }

    #[test]
    fn a_promotion_by_another_tool_seen_before_the_primary_fails_is_taken_once_it_does() {
        let mut m = machine(3, |c| c.failover.command = String::new());
        check(&mut m, 0, primary(100));
        check(&mut m, 2, standby(100, 5432));
        // Node 1 claims primary while node 0 still is one: quarantined, no
        // reads, no writes.
        check(&mut m, 1, primary(100));
        assert_eq!((m.primary(), m.nodes[1].status), (0, Status::Quarantine));
        assert!(!m.snapshot().nodes[1].readable());
        // Node 0 dies (no failover hook configured: nothing to run).
        assert!(check(&mut m, 0, err("refused")).is_empty());
        assert_eq!(m.nodes[0].status, Status::Down);
        // The claimant is now the one primary: taken.
        let actions = check(&mut m, 1, primary(110));
        assert_eq!(m.primary(), 1);
        assert_eq!(m.nodes[1].status, Status::Up);
        assert_eq!(actions, vec![Action::Follow { standby: 2, new_main: 1, old_primary: 0 }]);
        // The old primary restarted as a primary is a former primary: out.
        check(&mut m, 0, primary(100));
        assert_eq!((m.primary(), m.nodes[0].status), (1, Status::Quarantine));
    }

    #[test]
    fn passive_discovery_takes_the_first_claimant_after_the_primary_fails() {
        let mut m = healthy();
        m.set_promotes(false);
        check(&mut m, 0, err("refused"));
        assert_eq!(m.nodes[0].status, Status::Down, "nothing promoted: not quarantined");
        check(&mut m, 2, primary(95));
        assert_eq!(m.primary(), 2);
        // A second claimant is quarantined: never two write targets.
        check(&mut m, 1, primary(100));
        assert_eq!((m.primary(), m.nodes[1].status), (2, Status::Quarantine));
    }

    fn reconfigure(m: &mut Machine, ports: &[u16], removed: &[bool]) -> Vec<Action> {
        let nodes = ports.iter().map(|&p| NodeConfig::new("127.0.0.1", p)).collect();
        m.apply(Event::Reconfigure { nodes, removed: removed.to_vec() }, t0()).actions
    }

    #[test]
    fn a_reload_adds_nodes_that_wait_for_a_check_and_removes_nodes_for_good() {
        let mut m = healthy();
        let actions = reconfigure(&mut m, &[5432, 5433, 5434, 5435], &[false, false, true, false]);
        assert_eq!(status(&m), [Status::Up, Status::Up, Status::Removed, Status::Waiting]);
        assert_eq!(actions, [Action::CheckNow(3)], "the new node is checked at once");
        check(&mut m, 3, standby(100, 5432));
        check(&mut m, 2, standby(100, 5432));
        assert_eq!(m.nodes[2].status, Status::Removed, "a check of a removed node changes nothing");
        assert_eq!(m.nodes[3].status, Status::Up);
        assert!(m.attach(2, &mut Vec::new()).is_err(), "a removed node cannot be attached");
        // The primary failing now: the removed node is no candidate.
        let actions = check(&mut m, 0, err("refused"));
        assert!(
            actions.iter().any(|a| matches!(a, Action::AskPositions { candidates, .. } if candidates == &[1, 3])),
            "{actions:?}"
        );
    }

    #[test]
    fn removing_the_primary_runs_no_hook_and_writes_move_to_the_node_that_answers_as_primary() {
        let mut m = healthy();
        // Promoted elsewhere (seed 004's glue) before the reload removes node 0.
        check(&mut m, 1, primary(120));
        assert_eq!((m.primary(), m.nodes[1].status), (0, Status::Quarantine), "two primaries: the current one stays");
        let actions = reconfigure(&mut m, &[5432, 5433, 5434], &[true, false, false]);
        assert!(actions.iter().all(|a| matches!(a, Action::CheckNow(_))), "no failover: {actions:?}");
        assert!(!m.snapshot().primary_available(), "writes wait");
        check(&mut m, 1, primary(121));
        assert_eq!(m.primary(), 1);
        assert!(m.snapshot().primary_available());
        assert_eq!(m.nodes[0].status, Status::Removed, "the old primary stays removed");
        check(&mut m, 0, primary(200));
        assert_eq!(m.primary(), 1, "whatever the removed node says");
    }

    #[test]
    fn two_primaries_with_most_standbys_picks_the_one_standbys_follow() {
        let mut m = machine(3, |c| c.failover.false_primary = FalsePrimaryRule::MostStandbys);
        check(&mut m, 0, primary(100));
        check(&mut m, 2, standby(100, 5433));
        check(&mut m, 1, primary(100));
        assert_eq!(m.primary(), 1, "node 2 streams from node 1");
        assert_eq!(m.nodes[0].status, Status::Quarantine);
        // The default keeps the current one.
        let mut m = machine(3, |_| {});
        check(&mut m, 0, primary(100));
        check(&mut m, 2, standby(100, 5433));
        check(&mut m, 1, primary(100));
        assert_eq!(m.primary(), 0);
    }

    #[test]
    fn a_lagging_standby_leaves_the_read_set_and_returns() {
        let mut m = healthy();
        check(&mut m, 0, primary(5000));
        check(&mut m, 1, standby(100, 5432));
        assert!(m.nodes[1].lagging);
        assert!(!m.snapshot().nodes[1].readable());
        check(&mut m, 1, standby(4990, 5432));
        assert!(!m.nodes[1].lagging);
        assert!(m.snapshot().nodes[1].readable());
    }

    #[test]
    fn backend_errors_ask_for_a_check_or_count_as_one() {
        let mut m = healthy();
        let e = |m: &mut Machine, hard| {
            let error = if hard {
                BackendError::ConnectionLost { reason: "server connection: connection reset by peer".into() }
            } else {
                BackendError::Closed
            };
            m.apply(Event::BackendError { node: 1, error }, at(0)).actions
        };
        assert_eq!(e(&mut m, true), vec![Action::CheckNow(1)]);
        assert!(e(&mut m, true).is_empty(), "one check asked for until it reports");
        check(&mut m, 1, standby(100, 5432));
        assert_eq!(m.nodes[1].status, Status::Up);
        m.rules.failover_on_backend_error = true;
        assert_eq!(e(&mut m, false), vec![Action::CheckNow(1)], "a closed connection is not proof");
        assert!(e(&mut m, true).is_empty());
        assert_eq!(m.nodes[1].status, Status::Down);
        assert!(e(&mut m, true).is_empty(), "a node already down is left alone");
    }

    #[test]
    fn operators_cannot_detach_the_primary_and_detached_nodes_stay_out() {
        let mut m = healthy();
        let r = m.apply(Event::Detach { node: 0 }, at(0)).result;
        assert_eq!(r, Err(NodeCommandError::IsPrimary(0)));
        assert_eq!(m.apply(Event::Detach { node: 9 }, at(0)).result, Err(NodeCommandError::UnknownNode(9)));
        assert!(m.apply(Event::Detach { node: 2 }, at(0)).result.is_ok());
        check(&mut m, 2, standby(100, 5432));
        assert_eq!(m.nodes[2].status, Status::Down, "a passing check does not undo the operator");
        m.apply(Event::Attach { node: 2 }, at(0));
        check(&mut m, 2, standby(100, 5432));
        assert_eq!(m.nodes[2].status, Status::Up);
    }

    #[test]
    fn a_switchover_moves_writes_and_quarantines_the_old_primary() {
        let mut m = healthy();
        let out = m.apply(Event::Promoted { node: 2 }, at(0));
        assert!(out.changed);
        assert_eq!(out.actions, vec![Action::Follow { standby: 1, new_main: 2, old_primary: 0 }]);
        assert_eq!((m.primary(), m.nodes[0].status), (2, Status::Quarantine));
        // The old primary, still answering as one, stays out.
        check(&mut m, 0, primary(100));
        assert_eq!(m.nodes[0].status, Status::Quarantine);
    }

    #[test]
    fn a_primary_in_recovery_is_not_available_for_writes_and_every_other_node_is_checked_now() {
        let mut m = healthy();
        assert_eq!(check(&mut m, 0, standby(100, 5433)), vec![Action::CheckNow(1), Action::CheckNow(2)]);
        assert!(!m.snapshot().primary_available());
        assert_eq!(m.nodes[0].role, Role::Standby);
        check(&mut m, 1, primary(110));
        assert_eq!(m.primary(), 1);
    }

    #[test]
    fn only_real_changes_publish_a_snapshot() {
        let mut m = healthy();
        let g = m.generation;
        assert!(!m.apply(Event::Checked { node: 1, result: standby(100, 5432) }, at(0)).changed);
        assert!(!m.apply(Event::Tick, at(0)).changed);
        assert_eq!(m.generation, g);
        assert!(m.apply(Event::Checked { node: 1, result: err("x") }, at(0)).changed);
        assert_eq!(m.snapshot().generation, g + 1);
    }

    /// A standby answering from recovery at `lsn`, its last replay `age` ago.
    fn replayed_ago(lsn: u64, age: u64) -> Result<Observation, CheckError> {
        let mut o = standby(lsn, 5432)?;
        o.replay_age = Duration::from_secs(age);
        Ok(o)
    }

    #[test]
    fn lag_by_time_is_measured_on_the_callers_clock() {
        let mut m = machine(3, |c| c.health.lag_threshold = Duration::from_secs(10));
        // The primary's position moves at t = 0.
        m.apply(Event::Checked { node: 0, result: primary(100) }, at(0));
        // t = 5: the standby last replayed 20 s ago, before the primary
        // moved (5 s ago): 20 s behind, past the 10 s threshold.
        m.apply(Event::Checked { node: 1, result: replayed_ago(90, 20) }, at(5));
        assert!(m.nodes[1].lagging);
        assert_eq!(m.nodes[1].lag_time, Duration::from_secs(20));
        // t = 30, same answer: the primary has not moved for 30 s, longer
        // than the standby has been idle, so it has nothing left to replay.
        m.apply(Event::Checked { node: 1, result: replayed_ago(90, 20) }, at(30));
        assert!(!m.nodes[1].lagging, "an idle primary does not make its standbys lag");
    }

    #[test]
    fn the_search_for_a_primary_times_out_on_the_callers_clock() {
        let mut m = machine(3, |c| c.failover.search_primary_node_timeout = Duration::from_secs(10));
        m.apply(Event::Checked { node: 0, result: primary(100) }, at(0));
        m.apply(Event::Checked { node: 0, result: err("refused") }, at(1));
        assert_eq!(m.nodes[0].status, Status::Down);
        assert_eq!(m.nodes[0].last_status_change, at(1).wall, "the status changed at the event's time");
        m.apply(Event::Tick, at(10));
        assert!(!m.search_reported, "9 s without a primary: still searching");
        m.apply(Event::Tick, at(11));
        assert!(m.search_reported, "10 s: search_primary_node_timeout passed");
        // A primary again ends the search.
        m.apply(Event::Checked { node: 0, result: primary(100) }, at(12));
        assert!(!m.search_reported);
        assert!(m.primary_lost_at.is_none());
    }

    #[test]
    fn a_new_machine_takes_its_time_from_the_caller() {
        let m = machine(3, |_| {});
        assert!(m.nodes.iter().all(|n| n.last_status_change == t0().wall));
    }
}
