//! The router: which node serves a request. Writes and anything unsure go to
//! the primary (node 0 until health checks discover roles); reads may be
//! load-balanced over the nodes by weight, within the preferences configured
//! per database and per application, and only to nodes known to have replayed
//! a session's own last write (read-your-writes).
//!
//! An embedding service may override the choice of a read node with a
//! [`RoutingPolicy`] ([`policy`]), within the same safety rules.
//!
//! The router holds no locks: which node is the primary and which nodes may
//! serve reads come from the cluster controller's latest published
//! [`Snapshot`] (an atomic pointer swap); counters and replay positions are
//! atomics written by the sessions that learn something.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::RngExt;

mod policy;

pub(crate) use policy::{Policy, Requester};
pub use policy::{RequestClass, RouteChoice, RouteRequest, RoutingPolicy};

use crate::classify::{Classifier, ClassifierLists, PatternError};
use crate::config::{BalancePolicy, Config, NodePreference, RoutingConfig};
use crate::topology::{Role, Snapshot, Status, Topology};

/// What the router knows and counts about one node.
#[derive(Debug)]
struct Node {
    /// The configured weight, as f64 bits (a reload changes it).
    weight: AtomicU64,
    /// Requests (transactions or autocommit statements) routed here.
    routed: AtomicU64,
    /// Of those, reads.
    reads: AtomicU64,
    /// Requests in flight here (for least-outstanding balancing).
    outstanding: AtomicI64,
    /// Not to be chosen for reads before this instant (ms since the router started).
    down_until_ms: AtomicU64,
    /// Highest WAL position this node is known to have replayed.
    replayed: AtomicU64,
    /// When a session's failure to reach the node was last logged as a
    /// warning (ms since the router started; 0: never).
    warned_ms: AtomicU64,
}

/// Counters of one node, as [`Router::node_stats`] reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStats {
    /// Index in `[[nodes]]`.
    pub node: usize,
    /// Requests routed to the node (pgpool's select_cnt counts the reads among them).
    pub routed: u64,
    /// Reads routed to the node.
    pub reads: u64,
    /// Requests running there now.
    pub outstanding: i64,
    /// Highest WAL position the node is known to have replayed (0: unknown).
    pub replayed_lsn: u64,
    /// In service (status up).
    pub up: bool,
    /// Left out of the read set for lagging.
    pub lagging: bool,
    /// Bytes of WAL behind the primary at the last check.
    pub lag_bytes: u64,
    /// Kept out of service: quarantined (a former or false primary) or
    /// detached by an operator.
    pub detached: bool,
    /// The node's status.
    pub status: Status,
    /// The role the pooler holds for the node.
    pub role: Role,
}

/// Chooses nodes for requests.
#[derive(Debug)]
pub struct Router {
    /// Built from the routing lists; a reload swaps it.
    classifier: ArcSwap<Classifier>,
    /// Bumped when a reload changes the classifier: what was classified
    /// before is classified again.
    generation: AtomicU64,
    /// One per slot a reload may ever add (MAX_NODE_SLOTS); the first
    /// `count` are the configured nodes (removed ones included).
    nodes: Vec<Node>,
    count: AtomicUsize,
    /// `[routing]`; a reload swaps it.
    config: ArcSwap<RoutingConfig>,
    /// `routing.load_balance` with more than one node (read per request).
    balancing: AtomicBool,
    /// `routing.read_your_writes` while balancing.
    read_your_writes: AtomicBool,
    started: Instant,
    /// The cluster as last published by the controller (read only here).
    topology: Arc<Topology>,
    /// The embedding service's say in where reads go, if it has one.
    policy: Option<Policy>,
}

impl Router {
    /// A router for these nodes and settings, reading a topology of its own
    /// (at [`Snapshot::initial`]); see [`Router::with_topology`].
    pub fn new(config: &Config) -> Result<Router, PatternError> {
        let initial = Snapshot::initial(config, std::time::SystemTime::now());
        Router::with_topology(config, Arc::new(Topology::new(initial)))
    }

    /// A router for these nodes and settings that reads `topology`, which
    /// the cluster controller publishes to.
    pub fn with_topology(config: &Config, topology: Arc<Topology>) -> Result<Router, PatternError> {
        let r = &config.routing;
        let classifier = classifier_of(r)?;
        let weights = config.nodes.iter().map(|n| n.weight);
        let spare = crate::topology::MAX_NODE_SLOTS.saturating_sub(config.nodes.len());
        let nodes = weights
            .chain(std::iter::repeat_n(0.0, spare))
            .map(|weight| Node {
                weight: AtomicU64::new(weight.to_bits()),
                routed: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                outstanding: AtomicI64::new(0),
                down_until_ms: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                warned_ms: AtomicU64::new(0),
            })
            .collect();
        let balancing = r.load_balance && config.nodes.len() > 1;
        Ok(Router {
            classifier: ArcSwap::from_pointee(classifier),
            generation: AtomicU64::new(0),
            count: AtomicUsize::new(config.nodes.len()),
            balancing: AtomicBool::new(balancing),
            read_your_writes: AtomicBool::new(balancing && r.read_your_writes),
            nodes,
            config: ArcSwap::from_pointee(r.clone()),
            started: Instant::now(),
            topology,
            policy: None,
        })
    }

    /// Puts `config`'s `[routing]` and node weights in force (a reload);
    /// the node list itself is fixed. When the function lists or patterns
    /// changed, what was classified under the old ones is classified again
    /// ([`Router::generation`]). On an invalid pattern nothing changes.
    pub(crate) fn reconfigure(&self, config: &Config) -> Result<(), PatternError> {
        let r = &config.routing;
        let old = self.config.load();
        let lists_changed = old.write_functions != r.write_functions
            || old.read_only_functions != r.read_only_functions
            || old.primary_patterns != r.primary_patterns;
        if lists_changed {
            self.classifier.store(Arc::new(classifier_of(r)?));
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        for (node, n) in self.nodes.iter().zip(&config.nodes) {
            node.weight.store(n.weight.to_bits(), Ordering::Relaxed);
        }
        let count = config.nodes.len().min(self.nodes.len());
        self.count.store(count, Ordering::Relaxed);
        let balancing = r.load_balance && count > 1;
        self.config.store(Arc::new(r.clone()));
        self.read_your_writes.store(balancing && r.read_your_writes, Ordering::Relaxed);
        self.balancing.store(balancing, Ordering::Relaxed);
        Ok(())
    }

    /// Changes each time a reload puts new routing lists in place: a
    /// classification made under another generation is stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Node slots in use.
    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn weight(&self, i: usize) -> f64 {
        self.nodes.get(i).map(|n| f64::from_bits(n.weight.load(Ordering::Relaxed))).unwrap_or(0.0)
    }

    /// Lets `policy` choose read nodes (see [`RoutingPolicy`] for when it is
    /// asked and what it may choose).
    pub(crate) fn set_policy(&mut self, policy: Option<Arc<dyn RoutingPolicy>>) {
        self.policy = policy.map(Policy);
    }

    /// True when a routing policy is set (the relay then tells it whether a
    /// read opens a transaction block).
    pub(crate) fn has_policy(&self) -> bool {
        self.policy.is_some()
    }

    /// The node that takes writes now.
    pub fn primary(&self) -> usize {
        self.topology.primary()
    }

    /// The cluster as last published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.topology.current()
    }

    /// The topology this router reads.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The classifier built from the routing lists in force.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier.load_full()
    }

    /// [`Router::classifier`] for one use, without touching its reference
    /// count (the relay asks for every statement).
    pub(crate) fn classifier_now(&self) -> arc_swap::Guard<Arc<Classifier>> {
        self.classifier.load()
    }

    /// True when reads may leave the primary at all.
    pub fn balancing(&self) -> bool {
        self.balancing.load(Ordering::Relaxed)
    }

    /// True when a session's reads must wait for its writes to be replayed.
    pub fn read_your_writes(&self) -> bool {
        self.read_your_writes.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// May serve reads: in service and not lagging by the snapshot, not
    /// backed off after a failed connection, weight aside.
    fn in_read_set(&self, s: &Snapshot, i: usize) -> bool {
        let readable = s.nodes.get(i).is_some_and(|n| n.readable() || (i == s.primary && s.primary_available()));
        // A node never backed off (the usual case) costs no clock read.
        readable
            && self.nodes.get(i).is_some_and(|n| {
                let until = n.down_until_ms.load(Ordering::Relaxed);
                until == 0 || until <= self.now_ms()
            })
    }

    fn usable(&self, s: &Snapshot, i: usize) -> bool {
        self.weight(i) > 0.0 && self.in_read_set(s, i)
    }

    /// The node for a read-only request of a client of `database` and
    /// `application`, whose last write is at `min_lsn` (0: none). The primary
    /// when balancing is off, nothing else is usable, or the preferences say so.
    pub fn read_node(&self, database: &str, application: &str, min_lsn: u64) -> usize {
        self.read_node_in(&self.topology.guard(), database, application, min_lsn)
    }

    /// The node for a read of `who` whose session's last write is at
    /// `min_lsn` (0: none), and whether the relay must first ask it how far
    /// it has replayed (true: it is not known to have `min_lsn`; if it is
    /// behind, the primary serves the read). The routing policy, if any,
    /// chooses first; [`Router::read_node`] decides what it leaves to the
    /// router or may not have (the safety rule of [`RoutingPolicy`]).
    pub(crate) fn choose_read(&self, who: &Requester<'_>, min_lsn: u64) -> (usize, bool) {
        let s = self.topology.guard();
        let primary = s.primary;
        if !self.balancing() {
            return (primary, false);
        }
        let choice = match &self.policy {
            None => RouteChoice::Default,
            Some(p) => {
                let class = if who.block { RequestClass::ReadOnlyTransaction } else { RequestClass::Read };
                p.0.choose(&RouteRequest::new(class, who.user, who.database, who.application, &s))
            }
        };
        let node = self.honour(&s, choice, who, min_lsn);
        if node == primary && min_lsn > 0 {
            // No node is known to have the session's last write: one that
            // could serve the read is asked how far it has replayed.
            let candidate = self.honour(&s, choice, who, 0);
            return (candidate, candidate != primary);
        }
        (node, false)
    }

    /// The node `choice` names, if it may serve a read whose session's last
    /// write is at `min_lsn`; else the router's own choice.
    fn honour(&self, s: &Snapshot, choice: RouteChoice, who: &Requester<'_>, min_lsn: u64) -> usize {
        match choice {
            RouteChoice::Primary => s.primary,
            RouteChoice::Node(i) if self.in_read_set(s, i) && self.has_replayed(s, i, min_lsn) => i,
            RouteChoice::Node(i) => {
                tracing::debug!(
                    node = i,
                    user = who.user,
                    "routing policy's node cannot serve the read now; routing as configured"
                );
                self.read_node_in(s, who.database, who.application, min_lsn)
            }
            RouteChoice::Default => self.read_node_in(s, who.database, who.application, min_lsn),
        }
    }

    /// Node `i` has the session's writes up to `min_lsn` (the primary always has).
    fn has_replayed(&self, s: &Snapshot, i: usize, min_lsn: u64) -> bool {
        i == s.primary
            || min_lsn == 0
            || self.nodes.get(i).is_some_and(|n| n.replayed.load(Ordering::Relaxed) >= min_lsn)
    }

    /// [`Router::read_node`] over snapshot `s`.
    fn read_node_in(&self, s: &Snapshot, database: &str, application: &str, min_lsn: u64) -> usize {
        let primary = s.primary;
        if !self.balancing() {
            return primary;
        }
        let config = self.config.load();
        let preference = config
            .application_preference
            .get(application)
            .or_else(|| config.database_preference.get(database))
            .copied();
        let replayed = |i: usize| self.has_replayed(s, i, min_lsn);
        match preference {
            Some(NodePreference::Primary) => return primary,
            Some(NodePreference::Node(i)) => {
                return if self.usable(s, i) && replayed(i) { i } else { primary };
            }
            _ => {}
        }
        let standby_only = preference == Some(NodePreference::Standby);
        // With prefer_lowest_lag, only the standbys lagging least are candidates.
        let least_lag = if config.prefer_lowest_lag {
            (0..self.count())
                .filter(|&i| i != primary && self.usable(s, i) && replayed(i))
                .filter_map(|i| s.nodes.get(i).map(|n| n.lag_bytes))
                .min()
        } else {
            None
        };
        let candidates = move || {
            (0..self.count()).filter(move |&i| {
                (!standby_only || i != primary)
                    && self.usable(s, i)
                    && replayed(i)
                    && (i == primary || least_lag.is_none_or(|m| s.nodes.get(i).is_some_and(|n| n.lag_bytes <= m)))
            })
        };
        let chosen = match config.policy {
            BalancePolicy::WeightedRandom => {
                let total: f64 = candidates().map(|i| self.weight(i)).sum();
                if total <= 0.0 {
                    None
                } else {
                    let mut x = rand::rng().random_range(0.0..total);
                    let mut pick = None;
                    for i in candidates() {
                        pick = Some(i);
                        x -= self.weight(i);
                        if x < 0.0 {
                            break;
                        }
                    }
                    pick
                }
            }
            BalancePolicy::LeastOutstanding => candidates().min_by(|&a, &b| {
                let load =
                    |i: usize| (self.nodes[i].outstanding.load(Ordering::Relaxed).max(0) as f64 + 1.0) / self.weight(i);
                load(a).total_cmp(&load(b))
            }),
        };
        chosen.unwrap_or(primary)
    }

    /// Counts a request routed to `node` (a read or not) as started.
    pub fn begin(&self, node: usize, read: bool) {
        if let Some(n) = self.nodes.get(node) {
            n.routed.fetch_add(1, Ordering::Relaxed);
            if read {
                n.reads.fetch_add(1, Ordering::Relaxed);
            }
            n.outstanding.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request on `node` as finished.
    pub fn end(&self, node: usize) {
        if let Some(n) = self.nodes.get(node) {
            n.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// True at most once a second per node: whether a session's failure to
    /// reach `node` should be logged as a warning (else at debug level).
    pub(crate) fn first_report(&self, node: usize) -> bool {
        let Some(n) = self.nodes.get(node) else { return false };
        let now = self.now_ms() + 1000;
        let last = n.warned_ms.load(Ordering::Relaxed);
        now >= last + 1000 && n.warned_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// A connection to `node` could not be opened: leave it out of the read
    /// set for `failed_node_retry`.
    pub(crate) fn note_failure(&self, node: usize) {
        if node == self.primary() {
            return;
        }
        if let Some(n) = self.nodes.get(node) {
            let until = self.now_ms() + self.config.load().failed_node_retry.as_millis() as u64;
            if n.down_until_ms.swap(until, Ordering::Relaxed) <= self.now_ms() {
                tracing::warn!(node, retry_in = ?self.config.load().failed_node_retry, "node left out of the read set: connection failed");
            }
        }
    }

    /// A node other than `exclude` that is up and not detached or lagging
    /// (weight aside): where a read or a login goes when the primary cannot
    /// be reached. `None` when there is none.
    pub fn fallback_node(&self, exclude: usize) -> Option<usize> {
        let s = self.topology.guard();
        (0..self.count()).find(|&i| i != exclude && self.in_read_set(&s, i))
    }

    /// `node` is known to have replayed WAL up to `lsn`.
    pub fn note_replayed(&self, node: usize, lsn: u64) {
        if let Some(n) = self.nodes.get(node) {
            n.replayed.fetch_max(lsn, Ordering::Relaxed);
        }
    }

    /// The node's known replay position.
    pub fn replayed(&self, node: usize) -> u64 {
        self.nodes.get(node).map(|n| n.replayed.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Counters of every node.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        let s = self.topology.guard();
        self.nodes
            .iter()
            .zip(s.nodes.iter())
            .enumerate()
            .map(|(node, (n, c))| NodeStats {
                node,
                routed: n.routed.load(Ordering::Relaxed),
                reads: n.reads.load(Ordering::Relaxed),
                outstanding: n.outstanding.load(Ordering::Relaxed),
                replayed_lsn: n.replayed.load(Ordering::Relaxed),
                up: c.status == Status::Up,
                lagging: c.lagging,
                lag_bytes: c.lag_bytes,
                detached: c.status == Status::Quarantine || c.operator_detached,
                status: c.status,
                role: c.role,
            })
            .collect()
    }

    /// Session mode: a read node per request rather than per session.
    pub fn statement_level(&self) -> bool {
        self.config.load().statement_level_load_balance
    }

    /// What a write does to the rest of a session's balancing.
    pub fn write_stickiness(&self) -> crate::config::WriteStickiness {
        self.config.load().disable_load_balance_on_write
    }

    /// How long a failed node stays out of the read set.
    pub fn failed_node_retry(&self) -> Duration {
        self.config.load().failed_node_retry
    }
}

/// Whether `[routing]`'s patterns compile (a reload checks before it
/// changes anything).
pub(crate) fn check_patterns(r: &RoutingConfig) -> Result<(), PatternError> {
    classifier_of(r).map(|_| ())
}

/// The classifier for `[routing]`'s lists and patterns.
fn classifier_of(r: &RoutingConfig) -> Result<Classifier, PatternError> {
    Classifier::new(&ClassifierLists {
        write_functions: r.write_functions.clone(),
        read_only_functions: r.read_only_functions.clone(),
        primary_patterns: r.primary_patterns.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::parse_lsn;

    /// The configured primary: the first node.
    const PRIMARY: usize = 0;
    use crate::config::NodeConfig;

    fn config(weights: &[f64]) -> Config {
        let nodes = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| NodeConfig { weight: w, ..NodeConfig::new("h", 5432 + i as u16) })
            .collect();
        let mut c = Config::with_nodes(nodes);
        c.routing.load_balance = true;
        c
    }

    /// A router whose nodes were all checked: node 0 the primary, the rest
    /// standbys, every one up.
    fn router(c: &Config) -> Router {
        let r = Router::new(c).unwrap();
        let mut s = (*r.snapshot()).clone();
        for n in &mut s.nodes {
            n.status = Status::Up;
            n.pg_role = if n.id == 0 { Role::Primary } else { Role::Standby };
        }
        r.topology().publish(s);
        r
    }

    fn spread(r: &Router, n: usize) -> Vec<usize> {
        let mut counts = vec![0; r.count()];
        for _ in 0..n {
            counts[r.read_node("db", "app", 0)] += 1;
        }
        counts
    }

    #[test]
    fn reads_spread_by_weight() {
        let r = router(&config(&[1.0, 1.0, 2.0]));
        let c = spread(&r, 40_000);
        // Expected 10k / 10k / 20k; 5 sigma is about 500.
        assert!((9_000..11_000).contains(&c[0]), "{c:?}");
        assert!((9_000..11_000).contains(&c[1]), "{c:?}");
        assert!((19_000..21_000).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn weight_zero_keeps_reads_off_a_node_and_balancing_off_keeps_them_on_the_primary() {
        let r = router(&config(&[0.0, 1.0, 1.0]));
        assert_eq!(spread(&r, 1000)[0], 0);
        let mut c = config(&[1.0, 1.0]);
        c.routing.load_balance = false;
        let r = router(&c);
        assert_eq!(spread(&r, 100), vec![100, 0]);
    }

    #[test]
    fn failed_nodes_leave_the_read_set_for_a_while() {
        let mut c = config(&[0.0, 1.0, 1.0]);
        c.routing.failed_node_retry = Duration::from_secs(60);
        let r = router(&c);
        r.note_failure(1);
        assert_eq!(spread(&r, 200), vec![0, 0, 200]);
        r.note_failure(2);
        assert_eq!(spread(&r, 10), vec![10, 0, 0], "nothing usable: the primary");
    }

    #[test]
    fn reads_after_a_write_go_only_where_it_was_replayed() {
        let r = router(&config(&[0.0, 1.0, 1.0]));
        let lsn = parse_lsn("0/3000060").unwrap();
        assert_eq!(r.read_node("db", "app", lsn), PRIMARY, "no standby known to have it");
        r.note_replayed(2, lsn);
        for _ in 0..50 {
            assert_eq!(r.read_node("db", "app", lsn), 2);
        }
        r.note_replayed(1, lsn + 1);
        assert!(spread(&r, 200).iter().all(|&n| n < 200));
    }

    #[test]
    fn preferences_by_application_then_database() {
        let mut c = config(&[1.0, 1.0, 1.0]);
        c.routing.database_preference.insert("reports".into(), NodePreference::Node(2));
        c.routing.database_preference.insert("critical".into(), NodePreference::Primary);
        c.routing.application_preference.insert("batch".into(), NodePreference::Standby);
        let r = router(&c);
        for _ in 0..100 {
            assert_eq!(r.read_node("reports", "web", 0), 2);
            assert_eq!(r.read_node("critical", "web", 0), PRIMARY);
            assert_ne!(r.read_node("critical", "batch", 0), PRIMARY, "the application's preference wins");
        }
    }

    #[test]
    fn least_outstanding_prefers_the_idle_node() {
        let mut c = config(&[1.0, 1.0, 1.0]);
        c.routing.policy = BalancePolicy::LeastOutstanding;
        let r = router(&c);
        r.begin(0, true);
        r.begin(1, true);
        assert_eq!(r.read_node("db", "app", 0), 2);
        r.end(0);
        r.end(1);
        r.begin(2, true);
        assert_ne!(r.read_node("db", "app", 0), 2);
        assert_eq!(r.node_stats()[2].reads, 1);
    }

    #[test]
    fn prefer_lowest_lag_reads_only_from_the_least_lagging_standbys() {
        let mut c = config(&[0.0, 1.0, 1.0, 1.0]);
        c.routing.prefer_lowest_lag = true;
        let r = router(&c);
        let mut s = (*r.snapshot()).clone();
        s.nodes[1].lag_bytes = 500;
        s.nodes[2].lag_bytes = 20;
        s.nodes[3].lag_bytes = 20;
        r.topology().publish(s.clone());
        let counts = spread(&r, 400);
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(counts[2] > 100 && counts[3] > 100, "ties share the reads: {counts:?}");
        // A node out of the read set does not count as the least lagging.
        s.nodes[2].status = Status::Down;
        s.nodes[3].lagging = true;
        r.topology().publish(s);
        assert_eq!(spread(&r, 50)[1], 50);
    }
    /// A policy that sends every read of user "tenant" to one node, and
    /// counts what it was asked.
    struct Tenant(RouteChoice, std::sync::Mutex<Vec<Asked>>);

    /// What a policy was asked: class, user, database, application, snapshot generation.
    type Asked = (RequestClass, String, String, String, u64);

    impl RoutingPolicy for Tenant {
        fn choose(&self, r: &RouteRequest<'_>) -> RouteChoice {
            let seen = (r.class, r.user.into(), r.database.into(), r.application_name.into(), r.snapshot.generation);
            self.1.lock().unwrap().push(seen);
            if r.user == "tenant" {
                self.0
            } else {
                RouteChoice::Default
            }
        }
    }

    fn with_policy(r: &mut Router, choice: RouteChoice) -> Arc<Tenant> {
        let p = Arc::new(Tenant(choice, Default::default()));
        r.set_policy(Some(p.clone()));
        p
    }

    fn who<'a>(user: &'a str, block: bool) -> Requester<'a> {
        Requester { user, database: "db", application: "app", block }
    }

    #[test]
    fn a_policy_chooses_the_read_node_and_is_told_who_asks() {
        let mut r = router(&config(&[1.0, 1.0, 1.0]));
        let p = with_policy(&mut r, RouteChoice::Node(2));
        for _ in 0..50 {
            assert_eq!(r.choose_read(&who("tenant", false), 0), (2, false));
        }
        let others: Vec<usize> = (0..200).map(|_| r.choose_read(&who("other", false), 0).0).collect();
        assert!((0..3).all(|n| others.contains(&n)), "the default spreads the rest: {others:?}");
        r.choose_read(&who("tenant", true), 0);
        let generation = r.snapshot().generation;
        let seen = p.1.lock().unwrap();
        assert_eq!(seen[0], (RequestClass::Read, "tenant".into(), "db".into(), "app".into(), generation));
        assert_eq!(seen.last().unwrap().0, RequestClass::ReadOnlyTransaction);
        // Primary overrides a weight that would keep reads off it.
        let mut r = router(&config(&[0.0, 1.0]));
        with_policy(&mut r, RouteChoice::Primary);
        assert_eq!(r.choose_read(&who("tenant", false), 0), (PRIMARY, false));
    }

    #[test]
    fn a_policy_cannot_pick_a_node_out_of_the_read_set_or_without_the_sessions_writes() {
        let mut c = config(&[0.0, 1.0, 0.0]);
        c.routing.failed_node_retry = Duration::from_secs(60);
        let mut r = router(&c);
        with_policy(&mut r, RouteChoice::Node(2));
        assert_eq!(r.choose_read(&who("tenant", false), 0), (2, false), "weight 0 does not matter");
        // Not configured: the router's own choice.
        let mut r2 = router(&config(&[0.0, 1.0]));
        with_policy(&mut r2, RouteChoice::Node(7));
        assert_eq!(r2.choose_read(&who("tenant", false), 0), (1, false));
        // Lagging, down, backed off: the router's own choice (node 1).
        let mut s = (*r.snapshot()).clone();
        s.nodes[2].lagging = true;
        r.topology().publish(s.clone());
        assert_eq!(r.choose_read(&who("tenant", false), 0), (1, false));
        s.nodes[2].lagging = false;
        s.nodes[2].status = Status::Down;
        r.topology().publish(s.clone());
        assert_eq!(r.choose_read(&who("tenant", false), 0), (1, false));
        s.nodes[2].status = Status::Up;
        r.topology().publish(s);
        r.note_failure(2);
        assert_eq!(r.choose_read(&who("tenant", false), 0), (1, false));
        // Read-your-writes: node 2 is probed first, then chosen once known to have the write.
        let mut r = router(&config(&[0.0, 1.0, 1.0]));
        with_policy(&mut r, RouteChoice::Node(2));
        let lsn = parse_lsn("0/3000060").unwrap();
        r.note_replayed(1, lsn);
        assert_eq!(r.choose_read(&who("tenant", false), lsn), (1, false), "node 2 lacks it: the router's choice");
        let mut r = router(&config(&[0.0, 1.0, 1.0]));
        with_policy(&mut r, RouteChoice::Node(2));
        assert_eq!(r.choose_read(&who("tenant", false), lsn), (2, true), "nobody has it: probe the policy's node");
        r.note_replayed(2, lsn);
        assert_eq!(r.choose_read(&who("tenant", false), lsn), (2, false));
    }

    #[test]
    fn with_balancing_off_a_policy_is_not_asked() {
        let mut c = config(&[1.0, 1.0]);
        c.routing.load_balance = false;
        let mut r = router(&c);
        let p = with_policy(&mut r, RouteChoice::Node(1));
        assert_eq!(r.choose_read(&who("tenant", false), 0), (PRIMARY, false));
        assert!(p.1.lock().unwrap().is_empty());
    }
}
