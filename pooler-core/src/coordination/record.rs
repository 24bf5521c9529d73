//! What poolers write to the store, and how it is read back: each pooler's
//! view of each node, and the cluster state the leader decided. Records are
//! TOML, readable with `etcdctl get --prefix`; a record that does not parse
//! is ignored (and logged), never trusted.

use serde::{Deserialize, Serialize};

use crate::topology::{Snapshot, Status};

/// What one pooler's own health checks say of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// Its last check passed.
    Up,
    /// Its last check failed (after retries).
    Down,
    /// Not checked yet, or removed.
    Unknown,
}

impl Seen {
    /// As shown by the console.
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Up => "up",
            Seen::Down => "down",
            Seen::Unknown => "unknown",
        }
    }
}

/// One node in a record, named by address (poolers may list nodes in a
/// different order; a node is the same node at the same address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSeen {
    /// Host as configured.
    pub host: String,
    /// Port.
    pub port: u16,
    /// What the pooler's checks say.
    pub seen: Seen,
}

/// A pooler's view (`<prefix>members/<name>`, bound to its lease: it
/// vanishes with the pooler).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The pooler's name.
    pub name: String,
    /// Every configured node.
    pub nodes: Vec<NodeSeen>,
}

impl View {
    /// The view of `snapshot`'s nodes, from this pooler's own checks.
    pub(crate) fn of(name: &str, snapshot: &Snapshot) -> View {
        let nodes = snapshot
            .nodes
            .iter()
            .map(|n| {
                let seen = match n.status {
                    Status::Removed => Seen::Unknown,
                    _ if n.pg_up => Seen::Up,
                    Status::Waiting => Seen::Unknown,
                    _ => Seen::Down,
                };
                NodeSeen { host: n.host.clone(), port: n.port, seen }
            })
            .collect();
        View { name: name.to_owned(), nodes }
    }

    /// What this view says of the node at `host:port`.
    pub fn seen(&self, host: &str, port: u16) -> Seen {
        self.nodes.iter().find(|n| n.host == host && n.port == port).map_or(Seen::Unknown, |n| n.seen)
    }
}

/// One node's status in the leader's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Host as configured.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Its status (`up`, `down`, `quarantine`, `waiting`, `removed`).
    pub status: String,
}

/// The cluster as the leader decided it (`<prefix>state`, written only
/// through the leader's fence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// The leader that wrote it.
    pub leader: String,
    /// Its term: the store revision that made it the leader.
    pub term: i64,
    /// Address of the primary.
    pub primary_host: String,
    /// Port of the primary.
    pub primary_port: u16,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
}

impl SharedState {
    /// The state `snapshot` shows, as `leader` in `term` writes it.
    pub(crate) fn of(leader: &str, term: i64, snapshot: &Snapshot) -> SharedState {
        let p = &snapshot.nodes[snapshot.primary.min(snapshot.nodes.len().saturating_sub(1))];
        SharedState {
            leader: leader.to_owned(),
            term,
            primary_host: p.host.clone(),
            primary_port: p.port,
            nodes: snapshot
                .nodes
                .iter()
                .map(|n| NodeStatus { host: n.host.clone(), port: n.port, status: n.status.as_str().to_owned() })
                .collect(),
        }
    }

    /// The same decisions (the writer and term aside).
    pub fn same_decisions(&self, other: &SharedState) -> bool {
        (self.primary_host.as_str(), self.primary_port, &self.nodes)
            == (other.primary_host.as_str(), other.primary_port, &other.nodes)
    }
}

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    toml::to_string(record).map(String::into_bytes).unwrap_or_default()
}

/// Decodes a record; `None` when it is not one.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(bytes).ok()?;
    toml::from_str(text).ok()
}

/// How many live poolers see a node down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Votes {
    /// Poolers whose view says down.
    pub down: usize,
    /// Live poolers (every view in the store, this pooler's included).
    pub live: usize,
}

impl Votes {
    /// A strict majority of the live poolers see it down.
    pub fn majority(&self) -> bool {
        self.down * 2 > self.live
    }
}

/// The votes on `host:port` among `views` (this pooler's own view, fresher
/// than the copy in the store, replaces that copy).
pub fn votes(views: &[View], own: &View, host: &str, port: u16) -> Votes {
    let others = views.iter().filter(|v| v.name != own.name);
    let mut votes = Votes { down: 0, live: 0 };
    for v in others.chain(std::iter::once(own)) {
        votes.live += 1;
        if v.seen(host, port) == Seen::Down {
            votes.down += 1;
        }
    }
    votes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, seen: &[Seen]) -> View {
        View {
            name: name.into(),
            nodes: seen
                .iter()
                .enumerate()
                .map(|(i, s)| NodeSeen { host: "10.0.0.1".into(), port: 5432 + i as u16, seen: *s })
                .collect(),
        }
    }

    #[test]
    fn a_primary_is_dead_only_when_a_strict_majority_of_live_poolers_see_it_down() {
        use Seen::*;
        let a = view("a", &[Down, Up]);
        let b = view("b", &[Up, Up]);
        let c = view("c", &[Down, Up]);
        let all = [a.clone(), b.clone(), c.clone()];
        assert_eq!(votes(&all, &a, "10.0.0.1", 5432), Votes { down: 2, live: 3 });
        assert!(votes(&all, &a, "10.0.0.1", 5432).majority());
        // One of three: a network problem between that pooler and the node.
        assert!(!votes(&[a.clone(), b.clone(), view("c", &[Up, Up])], &a, "10.0.0.1", 5432).majority());
        // Two live, one down: no majority; not yet checked counts as up.
        assert!(!votes(&[a.clone(), view("b", &[Unknown, Up])], &a, "10.0.0.1", 5432).majority());
        // Alone: its own view decides.
        assert!(votes(&[], &a, "10.0.0.1", 5432).majority());
        // Its own fresh view replaces its stale copy in the store.
        let stale = view("a", &[Up, Up]);
        assert_eq!(votes(&[stale, b, c], &a, "10.0.0.1", 5432).down, 2);
        // An address nobody lists counts as unknown.
        assert_eq!(votes(&all, &a, "10.9.9.9", 1).down, 0);
    }

    #[test]
    fn records_round_trip_and_garbage_is_not_a_record() {
        let v = view("p1", &[Seen::Up, Seen::Down, Seen::Unknown]);
        assert_eq!(decode::<View>(&encode(&v)), Some(v));
        let s = SharedState {
            leader: "p1".into(),
            term: 7,
            primary_host: "h".into(),
            primary_port: 1,
            nodes: vec![NodeStatus { host: "h".into(), port: 1, status: "up".into() }],
        };
        let text = encode(&s);
        assert_eq!(decode::<SharedState>(&text), Some(s.clone()));
        let mut other = s.clone();
        other.leader = "p2".into();
        other.term = 9;
        assert!(s.same_decisions(&other));
        for bad in [&b"\xff\xfe"[..], b"leader = 1", b"", b"[[[", b"term = \"x\""] {
            assert_eq!(decode::<SharedState>(bad), None);
            assert_eq!(decode::<View>(bad), None);
        }
    }
}
