//! This pooler's part in a group of poolers: its lease, its bid for the
//! leadership, the view it publishes, the views and the state it reads.
//!
//! One task ([`Ha::run`]) owns the lease. Each session with the store:
//! grant a lease of `lease_ttl`; publish this pooler's view under it; list
//! everything under the prefix; watch it; bid for `<prefix>leader` whenever
//! nobody holds it; renew the lease every third of its time to live. The
//! leadership is the leader key, created with this pooler's lease: its
//! creation revision is the term, and every command a leader runs and every
//! state it writes is a transaction that first compares that revision
//! ([`Ha::fence`]). Locally the leadership ends `lease_ttl` after the last
//! renewal that was *sent* before an answer came back, which is before the
//! store can expire the lease: a pooler that cannot renew (the store
//! unreachable, the process stopped) stops running commands before anyone
//! else can become the leader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch, Notify};

use super::record::{self, SharedState, View, Votes};
use super::store::{CoordinationStore, Created, LeaseId, StoreError, StoreFuture};
use crate::config::CoordinationConfig;
use crate::topology::{Role, Status, Topology};

/// This pooler's leadership, while it believes it holds one.
#[derive(Clone, Copy, Debug)]
struct Lead {
    term: i64,
    /// When the leadership ends unless the lease is renewed.
    valid_until: Instant,
}

/// How this pooler stands in the group, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaStatus {
    /// This pooler's name.
    pub name: String,
    /// It is the leader now.
    pub leading: bool,
    /// The leader's name, as last read (empty: none known).
    pub leader: String,
    /// The leader's term (the store revision that made it the leader).
    pub term: i64,
    /// This pooler's lease (0: none).
    pub lease: LeaseId,
    /// The store answered the last request.
    pub reachable: bool,
    /// Since when `reachable` has had its value.
    pub since: SystemTime,
    /// The last error from the store (empty: none yet).
    pub last_error: String,
    /// Failovers held back because the live poolers did not agree the
    /// primary was down.
    pub disagreements: u64,
}

/// The verdict on a node seen down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A majority of the live poolers see it down.
    Agreed(Votes),
    /// They did not, within `quorum_wait`.
    Disagreed(Votes),
    /// This pooler is not the leader (or cannot prove it is).
    NotLeader,
}

/// Why a fenced action may not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotLeader {
    /// Another pooler leads (or none does yet).
    #[error("this pooler is not the leader (leader: {0})")]
    Follower(String),
    /// The store could not confirm the leadership.
    #[error("the leadership could not be confirmed: {0}")]
    Unconfirmed(StoreError),
}

/// This pooler in its group.
#[derive(Debug)]
pub(crate) struct Ha {
    config: CoordinationConfig,
    name: String,
    prefix: String,
    store: Arc<dyn CoordinationStore>,
    topology: Arc<Topology>,
    lead: Mutex<Option<Lead>>,
    status: ArcSwap<HaStatus>,
    /// Every pooler's view, as last read from the store.
    views: ArcSwap<Vec<View>>,
    views_changed: Notify,
    /// The leader's state, when another pooler wrote it.
    shared_tx: watch::Sender<Option<Arc<SharedState>>>,
    /// Whether this pooler leads (for the virtual IP commands).
    leading_tx: watch::Sender<bool>,
    /// The cluster state changed: publish the view (and, leading, the state).
    wake: Notify,
    /// The lease to revoke at shutdown.
    lease: Mutex<Option<LeaseId>>,
}

impl Ha {
    /// The group member `config` describes, reading the cluster's state
    /// from `topology`; `listen` names it when `coordination.name` is empty.
    pub(crate) fn new(
        config: &CoordinationConfig,
        listen: &str,
        store: Arc<dyn CoordinationStore>,
        topology: Arc<Topology>,
    ) -> Ha {
        let name = config.member_name(listen);
        Ha {
            status: ArcSwap::from_pointee(HaStatus {
                name: name.clone(),
                leading: false,
                leader: String::new(),
                term: 0,
                lease: 0,
                reachable: false,
                since: SystemTime::now(),
                last_error: String::new(),
                disagreements: 0,
            }),
            config: config.clone(),
            prefix: config.key_prefix(),
            name,
            store,
            topology,
            lead: Mutex::new(None),
            views: ArcSwap::from_pointee(Vec::new()),
            views_changed: Notify::new(),
            shared_tx: watch::channel(None).0,
            leading_tx: watch::channel(false).0,
            wake: Notify::new(),
            lease: Mutex::new(None),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// How this pooler stands now.
    pub(crate) fn status(&self) -> HaStatus {
        let mut s = (**self.status.load()).clone();
        s.leading = self.term().is_some();
        s
    }

    /// Every pooler's view as last read (this one's own from its snapshot).
    pub(crate) fn views(&self) -> Vec<View> {
        let own = View::of(&self.name, &self.topology.current());
        let mut all: Vec<View> = self.views.load().iter().filter(|v| v.name != self.name).cloned().collect();
        all.push(own);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How long this pooler's leadership lasts without a renewal (zero when
    /// it does not lead).
    pub(crate) fn lease_left(&self) -> Duration {
        let lead = self.lead.lock().ok().and_then(|l| *l);
        lead.map_or(Duration::ZERO, |l| l.valid_until.saturating_duration_since(Instant::now()))
    }

    /// The term, while this pooler leads and its lease is still valid here.
    pub(crate) fn term(&self) -> Option<i64> {
        let lead = self.lead.lock().ok().and_then(|l| *l)?;
        (Instant::now() < lead.valid_until).then_some(lead.term)
    }

    /// Changes of the leader's state (written by another pooler).
    pub(crate) fn shared(&self) -> watch::Receiver<Option<Arc<SharedState>>> {
        self.shared_tx.subscribe()
    }

    /// Changes of this pooler's leadership.
    pub(crate) fn leading(&self) -> watch::Receiver<bool> {
        self.leading_tx.subscribe()
    }

    /// The cluster state changed.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// One store call, bounded by `request_timeout`.
    async fn call<T>(&self, f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(self.config.request_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unreachable(format!("no answer within {:?}", self.config.request_timeout))),
        };
        self.note(&r);
        r
    }

    /// Records whether the store answers.
    fn note<T>(&self, r: &Result<T, StoreError>) {
        let now = self.status.load();
        let reachable = !matches!(r, Err(StoreError::Unreachable(_)));
        let error = match r {
            Err(e) => e.to_string(),
            Ok(_) => now.last_error.clone(),
        };
        if now.reachable == reachable && now.last_error == error {
            return;
        }
        if now.reachable && !reachable {
            tracing::error!(error = %error, "the coordination store is unreachable: routing by the last state known and this pooler's own checks; no failover runs from here");
            metrics::gauge!(crate::metrics::HA_STORE_REACHABLE).set(0.0);
        } else if !now.reachable && reachable {
            tracing::info!("the coordination store answers");
            metrics::gauge!(crate::metrics::HA_STORE_REACHABLE).set(1.0);
        }
        let since = if now.reachable != reachable { SystemTime::now() } else { now.since };
        self.status.store(Arc::new(HaStatus { reachable, since, last_error: error, ..(**now).clone() }));
    }

    fn set_status(&self, f: impl FnOnce(&mut HaStatus)) {
        let mut s = (**self.status.load()).clone();
        f(&mut s);
        self.status.store(Arc::new(s));
    }

    /// Gives up the leadership (if held) because of `why`.
    fn step_down(&self, why: &str) {
        let held = self.lead.lock().ok().and_then(|mut l| l.take());
        if let Some(l) = held {
            tracing::warn!(term = l.term, why, "this pooler is no longer the leader: it runs no failover command");
            metrics::gauge!(crate::metrics::HA_LEADER).set(0.0);
            self.set_status(|s| {
                if s.leader == self.name {
                    s.leader.clear();
                }
            });
            self.leading_tx.send_replace(false);
        }
    }

    /// Runs the membership until the task is dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        metrics::gauge!(crate::metrics::HA_LEADER).set(0.0);
        metrics::gauge!(crate::metrics::HA_STORE_REACHABLE).set(0.0);
        let mut pause = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let why = match self.session().await {
                Ok(()) => "the lease is gone".to_owned(),
                Err(e) => e.to_string(),
            };
            self.step_down(&why);
            if let Ok(mut l) = self.lease.lock() {
                *l = None;
            }
            self.set_status(|s| s.lease = 0);
            // A session that lasted resets the back-off.
            if started.elapsed() > self.config.lease_ttl {
                pause = Duration::from_millis(100);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Ends the membership at shutdown: steps down and revokes the lease, so
    /// another pooler takes over at once rather than after `lease_ttl`.
    pub(crate) async fn leave(&self) {
        self.step_down("shutting down");
        let lease = self.lease.lock().ok().and_then(|mut l| l.take());
        if let Some(lease) = lease {
            let _ = self.call(self.store.revoke(lease)).await;
        }
    }

    /// One lease's life; returns when the lease is lost.
    async fn session(&self) -> Result<(), StoreError> {
        let ttl = self.config.lease_ttl;
        let sent = Instant::now();
        let lease = self.call(self.store.grant(ttl)).await?;
        let mut valid_until = sent + ttl;
        if let Ok(mut l) = self.lease.lock() {
            *l = Some(lease);
        }
        self.set_status(|s| s.lease = lease);
        tracing::info!(name = %self.name, lease, "joined the pooler group");
        let mut written: Written = Written::default();
        self.publish_logged(lease, &mut written).await;
        let mut watching = None;
        let mut renew = tokio::time::interval(ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            if watching.is_none() {
                // List, then watch from the revision read: nothing is missed.
                if let Ok(revision) = self.refresh(lease, valid_until).await {
                    watching = self.call(self.store.watch(&self.prefix, revision)).await.ok();
                }
            }
            tokio::select! {
                _ = renew.tick() => {
                    let sent = Instant::now();
                    match self.call(self.store.keep_alive(lease)).await {
                        Ok(Some(granted)) => {
                            // The shorter of what was asked and what etcd granted.
                            valid_until = sent + ttl.min(granted);
                            if let Ok(mut l) = self.lead.lock() {
                                if let Some(l) = l.as_mut() {
                                    l.valid_until = valid_until;
                                }
                            }
                        }
                        Ok(None) => return Ok(()),
                        Err(e) if Instant::now() >= valid_until => return Err(e),
                        Err(_) => {}
                    }
                    if self.term().is_none() {
                        // A leader lost without our noticing (a stop, a store
                        // that went away and came back).
                        self.step_down("the lease was not renewed in time");
                    }
                    if watching.is_some() && self.status.load().leader.is_empty() {
                        let _ = self.refresh(lease, valid_until).await;
                    }
                    // Its own view gone from the store (a predecessor of the
                    // same name revoked its lease after an upgrade): written
                    // again, so the quorum counts this pooler.
                    if watching.is_some() && !self.views.load().iter().any(|v| v.name == self.name) {
                        written.view = None;
                        self.publish_logged(lease, &mut written).await;
                    }
                }
                changed = next(&mut watching) => {
                    if changed {
                        let _ = self.refresh(lease, valid_until).await;
                    } else {
                        watching = None;
                    }
                }
                _ = self.wake.notified() => self.publish_logged(lease, &mut written).await,
            }
        }
    }

    /// [`Ha::publish`]; a failure is retried at the next change.
    async fn publish_logged(&self, lease: LeaseId, written: &mut Written) {
        if let Err(e) = self.publish(lease, written).await {
            tracing::debug!(error = %e, "could not publish this pooler's view or state");
        }
    }

    /// Writes this pooler's view if it changed and, leading, the state.
    async fn publish(&self, lease: LeaseId, written: &mut Written) -> Result<(), StoreError> {
        let snapshot = self.topology.current();
        let view = View::of(&self.name, &snapshot);
        if written.view.as_ref() != Some(&view) {
            self.call(self.store.put(&self.key(&format!("members/{}", self.name)), record::encode(&view), Some(lease)))
                .await?;
            written.view = Some(view);
        }
        let Some(term) = self.term() else { return Ok(()) };
        // Only a state this pooler has verified: its primary answered as one.
        let p = &snapshot.nodes[snapshot.primary.min(snapshot.nodes.len().saturating_sub(1))];
        if !(p.status == Status::Up && p.pg_up && p.pg_role == Role::Primary) {
            return Ok(());
        }
        let state = SharedState::of(&self.name, term, &snapshot);
        if written.state.as_ref().is_some_and(|w| w.term == term && w.same_decisions(&state)) {
            return Ok(());
        }
        let ok = self
            .call(self.store.put_fenced(&self.key("leader"), term, &self.key("state"), record::encode(&state)))
            .await?;
        if ok {
            tracing::info!(term, primary = %format!("{}:{}", state.primary_host, state.primary_port), "wrote the cluster state for the other poolers");
            written.state = Some(state);
        } else {
            self.step_down("another pooler holds the leader key");
        }
        Ok(())
    }

    /// Lists the group: the views, the leader, the state; bids for the
    /// leadership when nobody holds it. The revision read.
    async fn refresh(&self, lease: LeaseId, valid_until: Instant) -> Result<i64, StoreError> {
        let (entries, revision) = self.call(self.store.list(&self.prefix)).await?;
        let members = self.key("members/");
        let mut views = Vec::new();
        let mut leader = None;
        let mut state = None;
        for e in &entries {
            if e.key.starts_with(&members) {
                match record::decode::<View>(&e.value) {
                    Some(v) => views.push(v),
                    None => tracing::warn!(key = %e.key, "a member's view in the store does not parse: ignored"),
                }
            } else if e.key == self.key("leader") {
                leader = Some((String::from_utf8_lossy(&e.value).into_owned(), e.create_revision));
            } else if e.key == self.key("state") {
                state = record::decode::<SharedState>(&e.value);
                if state.is_none() {
                    tracing::warn!(key = %e.key, "the cluster state in the store does not parse: ignored");
                }
            }
        }
        self.views.store(Arc::new(views));
        self.views_changed.notify_waiters();
        let leader = match leader {
            Some(l) => Some(l),
            None => self.bid(lease, valid_until).await?,
        };
        let mine = self.term();
        match &leader {
            Some((name, term)) if *name == self.name && mine.is_none() && self.adopt(*term, valid_until) => {}
            Some((_, term)) if mine.is_some_and(|t| t != *term) => {
                self.step_down("another pooler holds the leader key")
            }
            None if mine.is_some() => self.step_down("the leader key is gone"),
            _ => {}
        }
        let (name, term) = leader.unwrap_or_default();
        self.set_status(|s| {
            s.leader = name;
            s.term = term;
        });
        if let Some(state) = state {
            let from_other = state.leader != self.name || Some(state.term) != self.term();
            let changed = self.shared_tx.borrow().as_ref().is_none_or(|s| **s != state);
            if from_other && changed {
                self.shared_tx.send_replace(Some(Arc::new(state)));
            }
        }
        Ok(revision)
    }

    /// Tries to become the leader; who leads after the attempt.
    async fn bid(&self, lease: LeaseId, valid_until: Instant) -> Result<Option<(String, i64)>, StoreError> {
        match self.call(self.store.create(&self.key("leader"), self.name.clone().into_bytes(), lease)).await? {
            Created::Won(term) => {
                self.adopt(term, valid_until);
                Ok(Some((self.name.clone(), term)))
            }
            Created::Taken(e) => Ok(Some((String::from_utf8_lossy(&e.value).into_owned(), e.create_revision))),
        }
    }

    /// Takes the leadership of `term` (this pooler's own key); false when
    /// the lease is already past its validity here.
    fn adopt(&self, term: i64, valid_until: Instant) -> bool {
        if Instant::now() >= valid_until {
            return false;
        }
        if let Ok(mut l) = self.lead.lock() {
            *l = Some(Lead { term, valid_until });
        }
        tracing::warn!(name = %self.name, term, "this pooler is now the leader: it runs the failover commands");
        metrics::gauge!(crate::metrics::HA_LEADER).set(1.0);
        metrics::gauge!(crate::metrics::HA_TERM).set(term as f64);
        self.leading_tx.send_replace(true);
        self.wake.notify_one();
        true
    }

    /// Proves this pooler leads, in the store, right before it runs `what`
    /// (a failover, follow-primary, failback or recovery command); records
    /// it under `<prefix>last_command`.
    pub(crate) async fn fence(&self, what: &str) -> Result<(), NotLeader> {
        let leader = || self.status.load().leader.clone();
        let Some(term) = self.term() else { return Err(NotLeader::Follower(leader())) };
        let record =
            format!("pooler = {:?}\nterm = {term}\ncommand = {what:?}\nat = {:?}\n", self.name, humantime_now());
        match self
            .call(self.store.put_fenced(&self.key("leader"), term, &self.key("last_command"), record.into_bytes()))
            .await
        {
            Ok(true) if self.term() == Some(term) => Ok(()),
            Ok(_) => {
                self.step_down("the fence failed: the leader key changed");
                Err(NotLeader::Follower(leader()))
            }
            Err(e) => Err(NotLeader::Unconfirmed(e)),
        }
    }

    /// Whether a majority of the live poolers see the node at `host:port`
    /// down, waiting up to `quorum_wait` for their views to say so. Only the
    /// leader asks; the last count is read from the store itself.
    pub(crate) async fn confirm_down(&self, host: &str, port: u16) -> Verdict {
        let deadline = tokio::time::Instant::now() + self.config.quorum_wait;
        loop {
            if self.term().is_none() {
                return Verdict::NotLeader;
            }
            let own = View::of(&self.name, &self.topology.current());
            let votes = record::votes(&self.views.load(), &own, host, port);
            if votes.majority() {
                // Counted again from a linearizable read.
                let Ok((entries, _)) = self.call(self.store.list(&self.key("members/"))).await else {
                    return Verdict::Disagreed(votes);
                };
                let views: Vec<View> = entries.iter().filter_map(|e| record::decode(&e.value)).collect();
                let votes = record::votes(&views, &own, host, port);
                if votes.majority() {
                    return Verdict::Agreed(votes);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.set_status(|s| s.disagreements += 1);
                metrics::counter!(crate::metrics::HA_DISAGREEMENTS).increment(1);
                return Verdict::Disagreed(votes);
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.views_changed.notified()).await;
        }
    }
}

/// What this pooler last wrote.
#[derive(Default)]
struct Written {
    view: Option<View>,
    state: Option<SharedState>,
}

/// The next change on the watch: true for a change, false when it broke
/// (never resolves without a watch).
async fn next(watching: &mut Option<mpsc::Receiver<i64>>) -> bool {
    match watching {
        Some(rx) => {
            let got = rx.recv().await.is_some();
            // Several changes at once need one listing.
            while got && rx.try_recv().is_ok() {}
            got
        }
        None => std::future::pending().await,
    }
}

/// Seconds since the epoch, for the command record.
fn humantime_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
