//! Several poolers in front of one cluster, agreeing through a store
//! (etcd): one leader at a time runs the failover commands, every pooler
//! publishes what its own checks see, a primary is failed over only when a
//! majority of the live poolers see it down, and every pooler follows the
//! primary the leader declared (docs/HA.md).
//!
//! [`store`] is the store as a trait ([`CoordinationStore`]), [`record`]
//! what is written to it, and `ha` this pooler's membership: its lease, the
//! election, the fence every leader action passes, the quorum count.

mod ha;
pub mod record;
mod store;

pub(crate) use ha::{Ha, Verdict};
pub use ha::{HaStatus, NotLeader};
pub use record::{NodeSeen, NodeStatus, Seen, SharedState, View, Votes};
pub use store::{CoordinationStore, Created, Entry, LeaseId, StoreError, StoreFuture};
