//! The console's view of the pooler group (`[coordination]`): `SHOW HA`
//! (this pooler's role, the leader, the lease, the store) and `SHOW
//! HA_VIEWS` (what every live pooler's checks say of every node), plus the
//! two `SHOW NODES` columns that say where the state came from.

use super::table::{Kind::Int, Kind::Text, Table};
use crate::coordination::record::{self, Seen};
use crate::runtime::Shared;

/// `SHOW HA`: one row per fact, as `key`, `value`.
pub(super) fn ha(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text)]);
    let Some(ha) = shared.cluster.ha() else {
        t.push(vec!["role".into(), "alone".into()]);
        t.push(vec!["backend".into(), "none".into()]);
        return t;
    };
    let s = ha.status();
    let role = match (s.leading, s.reachable) {
        (true, _) => "leader",
        (false, true) => "follower",
        (false, false) => "unreachable",
    };
    let config = shared.config();
    let c = &config.coordination;
    let members = ha.views().len();
    for (k, v) in [
        ("name", s.name.clone()),
        ("role", role.to_owned()),
        ("leader", s.leader.clone()),
        ("term", s.term.to_string()),
        ("lease", format!("{:x}", s.lease)),
        ("lease_ttl", format!("{}", c.lease_ttl.as_secs_f64())),
        ("lease_left", format!("{:.3}", ha.lease_left().as_secs_f64())),
        ("store_reachable", if s.reachable { "yes" } else { "no" }.to_owned()),
        ("store_since", super::views::epoch(s.since)),
        ("last_error", s.last_error.clone()),
        ("members", members.to_string()),
        ("disagreements", s.disagreements.to_string()),
        ("endpoints", c.endpoints.join(",")),
        ("prefix", c.key_prefix()),
    ] {
        t.push(vec![k.into(), v.into()]);
    }
    t
}

/// `SHOW HA_VIEWS`: per live pooler and node, what that pooler's checks say.
pub(super) fn ha_views(shared: &Shared) -> Table {
    let mut t = Table::new(&[("pooler", Text), ("node", Int), ("host", Text), ("port", Int), ("seen", Text)]);
    let Some(ha) = shared.cluster.ha() else { return t };
    let snapshot = shared.router.snapshot();
    for view in ha.views() {
        for n in &snapshot.nodes {
            t.push(vec![
                view.name.as_str().into(),
                n.id.into(),
                n.host.as_str().into(),
                n.port.into(),
                view.seen(&n.host, n.port).as_str().into(),
            ]);
        }
    }
    t
}

/// What `SHOW NODES` adds for the group.
pub(super) struct NodeColumns {
    /// `alone`, `shared` (the leader's state is followed, or this pooler
    /// leads), or `local` (the store is unreachable: the last state known and
    /// this pooler's own checks).
    pub(super) state_from: &'static str,
    views: Vec<record::View>,
}

impl NodeColumns {
    pub(super) fn of(shared: &Shared) -> NodeColumns {
        match shared.cluster.ha() {
            None => NodeColumns { state_from: "alone", views: Vec::new() },
            Some(ha) => {
                let reachable = ha.status().reachable;
                NodeColumns { state_from: if reachable { "shared" } else { "local" }, views: ha.views() }
            }
        }
    }

    /// `down/live` among the poolers' views (empty when alone).
    pub(super) fn down_votes(&self, host: &str, port: u16) -> String {
        if self.views.is_empty() {
            return String::new();
        }
        let down = self.views.iter().filter(|v| v.seen(host, port) == Seen::Down).count();
        format!("{down}/{}", self.views.len())
    }
}
