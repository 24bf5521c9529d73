//! The router: which node serves a request. Writes and anything unsure go to
//! the primary (node 0 until health checks discover roles); reads may be
//! load-balanced over the nodes by weight, within the preferences configured
//! per database and per application, and only to nodes known to have replayed
//! a session's own last write (read-your-writes).
//!
//! The router holds no locks: per-node state is atomics, read by every
//! session and written by the sessions that learn something (a failed
//! connection, a replay position).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::classify::{Classifier, ClassifierLists, PatternError};
use crate::config::{BalancePolicy, Config, NodePreference, RoutingConfig};

/// Index of the configured primary: the first node. The router starts with it
/// and follows the health checks when another node becomes the primary.
pub const PRIMARY: usize = 0;

/// What the router knows and counts about one node.
#[derive(Debug)]
struct Node {
    weight: f64,
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
    /// The last health check succeeded (true until a check says otherwise).
    up: AtomicBool,
    /// The node lags past the configured threshold.
    lagging: AtomicBool,
    /// Bytes of WAL behind the primary at the last check.
    lag_bytes: AtomicU64,
    /// A former primary: neither written to nor read from until it comes
    /// back as a standby.
    detached: AtomicBool,
    /// Detached by an operator: out until an operator attaches it.
    operator_detached: AtomicBool,
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
    /// The last health check succeeded.
    pub up: bool,
    /// Left out of the read set for lagging.
    pub lagging: bool,
    /// Bytes of WAL behind the primary at the last check.
    pub lag_bytes: u64,
    /// A former primary kept out until it returns as a standby.
    pub detached: bool,
}

/// Chooses nodes for requests.
#[derive(Debug)]
pub struct Router {
    classifier: Classifier,
    nodes: Vec<Node>,
    config: RoutingConfig,
    started: Instant,
    /// The node that takes writes now.
    primary: AtomicUsize,
}

impl Router {
    /// A router for these nodes and settings.
    pub fn new(config: &Config) -> Result<Router, PatternError> {
        let r = &config.routing;
        let classifier = Classifier::new(&ClassifierLists {
            write_functions: r.write_functions.clone(),
            read_only_functions: r.read_only_functions.clone(),
            primary_patterns: r.primary_patterns.clone(),
        })?;
        let nodes = config
            .nodes
            .iter()
            .map(|n| Node {
                weight: n.weight,
                routed: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                outstanding: AtomicI64::new(0),
                down_until_ms: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                up: AtomicBool::new(true),
                lagging: AtomicBool::new(false),
                lag_bytes: AtomicU64::new(0),
                detached: AtomicBool::new(false),
                operator_detached: AtomicBool::new(false),
            })
            .collect();
        Ok(Router { classifier, nodes, config: r.clone(), started: Instant::now(), primary: AtomicUsize::new(PRIMARY) })
    }

    /// The node that takes writes now.
    pub fn primary(&self) -> usize {
        self.primary.load(Ordering::Acquire)
    }

    /// Makes `node` the primary (the health checks found it is one and the
    /// old primary is not). Logged with the cause.
    pub fn set_primary(&self, node: usize, cause: &str) {
        if node < self.nodes.len() {
            let old = self.primary.swap(node, Ordering::AcqRel);
            if old != node {
                tracing::warn!(
                    old_primary = old,
                    new_primary = node,
                    cause,
                    "primary changed: writes now go to the new primary"
                );
                // The old primary is never trusted again on its own word: it
                // stays out until it is seen back as a standby.
                if let Some(n) = self.nodes.get(old) {
                    n.detached.store(true, Ordering::Relaxed);
                }
                if let Some(n) = self.nodes.get(node) {
                    n.detached.store(false, Ordering::Relaxed);
                }
            }
        }
    }

    /// The classifier built from the routing lists.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// True when reads may leave the primary at all.
    pub fn balancing(&self) -> bool {
        self.config.load_balance && self.nodes.len() > 1
    }

    /// True when a session's reads must wait for its writes to be replayed.
    pub fn read_your_writes(&self) -> bool {
        self.balancing() && self.config.read_your_writes
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn usable(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| {
            n.weight > 0.0
                && n.up.load(Ordering::Relaxed)
                && !n.lagging.load(Ordering::Relaxed)
                && !n.detached.load(Ordering::Relaxed)
                && !n.operator_detached.load(Ordering::Relaxed)
                && n.down_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        })
    }

    /// The node for a read-only request of a client of `database` and
    /// `application`, whose last write is at `min_lsn` (0: none). The primary
    /// when balancing is off, nothing else is usable, or the preferences say so.
    pub fn read_node(&self, database: &str, application: &str, min_lsn: u64) -> usize {
        let primary = self.primary();
        if !self.balancing() {
            return primary;
        }
        let preference = self
            .config
            .application_preference
            .get(application)
            .or_else(|| self.config.database_preference.get(database))
            .copied();
        let replayed =
            |i: usize| i == primary || min_lsn == 0 || self.nodes[i].replayed.load(Ordering::Relaxed) >= min_lsn;
        match preference {
            Some(NodePreference::Primary) => return primary,
            Some(NodePreference::Node(i)) => {
                return if self.usable(i) && replayed(i) { i } else { primary };
            }
            _ => {}
        }
        let standby_only = preference == Some(NodePreference::Standby);
        let candidates =
            || (0..self.nodes.len()).filter(move |&i| (!standby_only || i != primary) && self.usable(i) && replayed(i));
        let chosen = match self.config.policy {
            BalancePolicy::WeightedRandom => {
                let total: f64 = candidates().map(|i| self.nodes[i].weight).sum();
                if total <= 0.0 {
                    None
                } else {
                    let mut x = rand::rng().random_range(0.0..total);
                    let mut pick = None;
                    for i in candidates() {
                        pick = Some(i);
                        x -= self.nodes[i].weight;
                        if x < 0.0 {
                            break;
                        }
                    }
                    pick
                }
            }
            BalancePolicy::LeastOutstanding => candidates().min_by(|&a, &b| {
                let load = |i: usize| {
                    (self.nodes[i].outstanding.load(Ordering::Relaxed).max(0) as f64 + 1.0) / self.nodes[i].weight
                };
                load(a).total_cmp(&load(b))
            }),
        };
        chosen.unwrap_or(primary)
    }

    /// A node that could serve a read if it had replayed `min_lsn` (to probe
    /// it), ignoring replay positions.
    pub fn probe_candidate(&self, database: &str, application: &str) -> usize {
        self.read_node(database, application, 0)
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

    /// A connection to `node` could not be opened: leave it out of the read
    /// set for `failed_node_retry`.
    pub fn note_failure(&self, node: usize) {
        if node == self.primary() {
            return;
        }
        if let Some(n) = self.nodes.get(node) {
            let until = self.now_ms() + self.config.failed_node_retry.as_millis() as u64;
            n.down_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(node, retry_in = ?self.config.failed_node_retry, "node left out of the read set: connection failed");
        }
    }

    /// Records a health check of `node`: up or not; for a standby, how far it
    /// lags and whether that is past the threshold. Transitions are logged.
    pub fn note_health(&self, node: usize, up: bool, lag_bytes: u64, lagging: bool) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        if n.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(node, "node is up again: back in the read set");
            } else {
                tracing::warn!(node, "node failed its health check: out of the read set");
            }
        }
        n.lag_bytes.store(lag_bytes, Ordering::Relaxed);
        if n.lagging.swap(lagging, Ordering::Relaxed) != lagging {
            if lagging {
                tracing::warn!(node, lag_bytes, "standby lags past the threshold: out of the read set");
            } else {
                tracing::info!(node, lag_bytes, "standby caught up: back in the read set");
            }
        }
    }

    /// A node other than `exclude` that is up and not detached or lagging
    /// (weight aside): where a read or a login goes when the primary cannot
    /// be reached. `None` when there is none.
    pub fn fallback_node(&self, exclude: usize) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            let n = &self.nodes[i];
            i != exclude
                && n.up.load(Ordering::Relaxed)
                && !n.lagging.load(Ordering::Relaxed)
                && !n.detached.load(Ordering::Relaxed)
                && !n.operator_detached.load(Ordering::Relaxed)
                && n.down_until_ms.load(Ordering::Relaxed) <= self.now_ms()
        })
    }

    /// Takes `node` out of service by an operator's word: no reads go to it
    /// (and, if it is a standby that answers as a primary later, no writes).
    /// The primary cannot be detached; promote another node first.
    pub fn detach(&self, node: usize) -> bool {
        if node == self.primary() {
            return false;
        }
        match self.nodes.get(node) {
            Some(n) => {
                if !n.operator_detached.swap(true, Ordering::Relaxed) {
                    tracing::warn!(node, "node detached by the operator");
                }
                true
            }
            None => false,
        }
    }

    /// True when `node` is a former primary kept out.
    pub fn is_detached(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.detached.load(Ordering::Relaxed) || n.operator_detached.load(Ordering::Relaxed))
    }

    /// An operator attaches `node` again, whatever detached it.
    pub fn attach(&self, node: usize) {
        if let Some(n) = self.nodes.get(node) {
            let was = n.operator_detached.swap(false, Ordering::Relaxed) | n.detached.swap(false, Ordering::Relaxed);
            if was {
                tracing::info!(node, "node attached by the operator");
            }
        }
    }

    /// `node` was seen back as a standby: it may serve reads again.
    pub fn reattach(&self, node: usize) {
        if let Some(n) = self.nodes.get(node) {
            if n.detached.swap(false, Ordering::Relaxed) {
                tracing::info!(node, "former primary is back as a standby: attached again");
            }
        }
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
        self.nodes
            .iter()
            .enumerate()
            .map(|(node, n)| NodeStats {
                node,
                routed: n.routed.load(Ordering::Relaxed),
                reads: n.reads.load(Ordering::Relaxed),
                outstanding: n.outstanding.load(Ordering::Relaxed),
                replayed_lsn: n.replayed.load(Ordering::Relaxed),
                up: n.up.load(Ordering::Relaxed),
                lagging: n.lagging.load(Ordering::Relaxed),
                lag_bytes: n.lag_bytes.load(Ordering::Relaxed),
                detached: n.detached.load(Ordering::Relaxed) || n.operator_detached.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Session mode: a read node per request rather than per session.
    pub fn statement_level(&self) -> bool {
        self.config.statement_level_load_balance
    }

    /// What a write does to the rest of a session's balancing.
    pub fn write_stickiness(&self) -> crate::config::WriteStickiness {
        self.config.disable_load_balance_on_write
    }

    /// How long a failed node stays out of the read set.
    pub fn failed_node_retry(&self) -> Duration {
        self.config.failed_node_retry
    }
}

/// Parses a WAL position as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn config(weights: &[f64]) -> Config {
        let nodes = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| NodeConfig { host: "h".into(), port: 5432 + i as u16, weight: w, data_dir: None })
            .collect();
        let mut c = Config::with_nodes(nodes);
        c.routing.load_balance = true;
        c
    }

    fn spread(r: &Router, n: usize) -> Vec<usize> {
        let mut counts = vec![0; r.nodes.len()];
        for _ in 0..n {
            counts[r.read_node("db", "app", 0)] += 1;
        }
        counts
    }

    #[test]
    fn reads_spread_by_weight() {
        let r = Router::new(&config(&[1.0, 1.0, 2.0])).unwrap();
        let c = spread(&r, 40_000);
        // Expected 10k / 10k / 20k; 5 sigma is about 500.
        assert!((9_000..11_000).contains(&c[0]), "{c:?}");
        assert!((9_000..11_000).contains(&c[1]), "{c:?}");
        assert!((19_000..21_000).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn weight_zero_keeps_reads_off_a_node_and_balancing_off_keeps_them_on_the_primary() {
        let r = Router::new(&config(&[0.0, 1.0, 1.0])).unwrap();
        assert_eq!(spread(&r, 1000)[0], 0);
        let mut c = config(&[1.0, 1.0]);
        c.routing.load_balance = false;
        let r = Router::new(&c).unwrap();
        assert_eq!(spread(&r, 100), vec![100, 0]);
    }

    #[test]
    fn failed_nodes_leave_the_read_set_for_a_while() {
        let mut c = config(&[0.0, 1.0, 1.0]);
        c.routing.failed_node_retry = Duration::from_secs(60);
        let r = Router::new(&c).unwrap();
        r.note_failure(1);
        assert_eq!(spread(&r, 200), vec![0, 0, 200]);
        r.note_failure(2);
        assert_eq!(spread(&r, 10), vec![10, 0, 0], "nothing usable: the primary");
    }

    #[test]
    fn reads_after_a_write_go_only_where_it_was_replayed() {
        let r = Router::new(&config(&[0.0, 1.0, 1.0])).unwrap();
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
        let r = Router::new(&c).unwrap();
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
        let r = Router::new(&c).unwrap();
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
    fn lsns_parse_as_postgres_prints_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(parse_lsn(""), None);
    }
}
