//! The gauges a metrics scrape reads, set from the same state the console
//! shows (pools, clients, the cluster snapshot), so the endpoint and `SHOW`
//! agree.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::clients::ClientState;
use crate::metrics as m;
use crate::runtime::Shared;
use crate::topology::{Role, Status};

#[derive(Default)]
struct PerPool {
    clients: f64,
    waiting: f64,
    active: f64,
    idle: f64,
    assignments: f64,
    maxwait: f64,
    transactions: u64,
    queries: u64,
    received: u64,
    sent: u64,
}

/// Sets every gauge from the state now.
pub(crate) fn record(shared: &Shared) {
    let mut pools: BTreeMap<(String, String), PerPool> = BTreeMap::new();
    for p in shared.pools.all() {
        let e = pools.entry((p.key().database.clone(), p.key().user.clone())).or_default();
        e.active += p.active_count() as f64;
        e.idle += p.idle_count() as f64;
        e.assignments += p.stats().checkouts.load(Relaxed) as f64;
        e.transactions += p.stats().transactions.load(Relaxed);
        e.queries += p.stats().queries.load(Relaxed);
        e.received += p.stats().received.load(Relaxed);
        e.sent += p.stats().sent.load(Relaxed);
    }
    for c in shared.clients.all() {
        let e = pools.entry((c.database.clone(), c.user.clone())).or_default();
        if c.state() == ClientState::Waiting {
            e.waiting += 1.0;
            e.maxwait = e.maxwait.max(c.waiting_for().as_secs_f64());
        } else {
            e.clients += 1.0;
        }
    }
    for ((database, user), p) in pools {
        let labels = [("database", database), ("user", user)];
        metrics::gauge!(m::POOL_CLIENTS_ACTIVE, &labels).set(p.clients);
        metrics::gauge!(m::POOL_CLIENTS_WAITING, &labels).set(p.waiting);
        metrics::gauge!(m::POOL_SERVERS_ACTIVE, &labels).set(p.active);
        metrics::gauge!(m::POOL_SERVERS_IDLE, &labels).set(p.idle);
        metrics::gauge!(m::POOL_SERVER_ASSIGNMENTS, &labels).set(p.assignments);
        metrics::gauge!(m::POOL_MAXWAIT_SECONDS, &labels).set(p.maxwait);
        metrics::counter!(m::POOL_TRANSACTIONS, &labels).absolute(p.transactions);
        metrics::counter!(m::POOL_QUERIES, &labels).absolute(p.queries);
        metrics::counter!(m::POOL_RECEIVED_BYTES, &labels).absolute(p.received);
        metrics::counter!(m::POOL_SENT_BYTES, &labels).absolute(p.sent);
    }
    let snapshot = shared.router.snapshot();
    let stats = shared.router.node_stats();
    metrics::gauge!(m::CLUSTER_GENERATION).set(snapshot.generation as f64);
    metrics::gauge!(m::BUFFER_BYTES).set(shared.memory.held() as f64);
    metrics::gauge!(m::MAX_MEMORY_BYTES).set(shared.memory.limit() as f64);
    for n in &snapshot.nodes {
        let node = n.id.to_string();
        let labels = [("node", node.clone())];
        metrics::gauge!(m::NODE_UP, &labels).set(f64::from(u8::from(n.status == Status::Up)));
        metrics::gauge!(m::NODE_PRIMARY, &labels)
            .set(f64::from(u8::from(n.id == snapshot.primary && n.role == Role::Primary)));
        metrics::gauge!(m::NODE_LAG_BYTES, &labels).set(n.lag_bytes as f64);
        metrics::gauge!(m::NODE_LAG_SECONDS, &labels).set(n.lag_time.as_secs_f64());
        let age = n.last_status_change.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
        metrics::gauge!(m::NODE_STATUS_AGE_SECONDS, &labels).set(age);
        if let Some(s) = stats.get(n.id) {
            metrics::gauge!(m::NODE_ROUTED, &labels).set(s.routed as f64);
            metrics::gauge!(m::NODE_READS, &labels).set(s.reads as f64);
        }
        for status in [Status::Up, Status::Down, Status::Waiting, Status::Quarantine] {
            let labels = [("node", node.clone()), ("status", status.as_str().to_owned())];
            metrics::gauge!(m::NODE_STATUS, &labels).set(f64::from(u8::from(n.status == status)));
        }
    }
    // Several poolers: how many there are, and how many see each node down.
    if let Some(ha) = shared.cluster.ha() {
        let views = ha.views();
        metrics::gauge!(m::HA_MEMBERS).set(views.len() as f64);
        for n in &snapshot.nodes {
            let down = views.iter().filter(|v| v.seen(&n.host, n.port) == crate::coordination::Seen::Down).count();
            metrics::gauge!(m::HA_DOWN_VOTES, &[("node", n.id.to_string())]).set(down as f64);
        }
    }
}
