//! The routing policy hook: an embedding service's say in which node serves
//! a read (by tenant, by user, by application...), within the router's
//! safety rules.

use std::sync::Arc;

use crate::topology::Snapshot;

/// Why the router holds a request to be a read: the classifier's verdict as
/// a routing policy sees it. Only reads reach a policy; writes, anything the
/// classifier is unsure of, and transaction blocks not declared read-only
/// always go to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestClass {
    /// Statements that only read, outside a transaction block: `SELECT`,
    /// `SHOW`, `VALUES`, `TABLE`, `EXPLAIN` without a write, calling no
    /// function that must run on the primary, with no locking clause and no
    /// `/* pooler: primary */` hint (a Query, or extended-protocol messages
    /// up to Sync, every statement of which is such a read).
    Read,
    /// A transaction block declared read-only: `BEGIN READ ONLY`, or any
    /// block of a session whose `default_transaction_read_only` is on. The
    /// whole block runs on the node chosen for its first request.
    ReadOnlyTransaction,
}

impl RequestClass {
    /// True for every class that is a read (today: all of them; a class
    /// added later may not be).
    pub fn is_read(self) -> bool {
        matches!(self, RequestClass::Read | RequestClass::ReadOnlyTransaction)
    }
}

/// What a [`RoutingPolicy`] is asked about: one read request of one client
/// session, and the cluster as the controller last published it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RouteRequest<'a> {
    /// Why the request is a read.
    pub class: RequestClass,
    /// The role the client logged in as (its startup packet's `user`).
    pub user: &'a str,
    /// The database the client connected to.
    pub database: &'a str,
    /// The client's `application_name` as last reported (empty when unset).
    pub application_name: &'a str,
    /// The cluster now: every node's role, status and lag, and the primary.
    pub snapshot: &'a Snapshot,
}

impl<'a> RouteRequest<'a> {
    /// A request as the router builds it; public so that a policy can be
    /// unit-tested without a pooler.
    pub fn new(
        class: RequestClass,
        user: &'a str,
        database: &'a str,
        application_name: &'a str,
        snapshot: &'a Snapshot,
    ) -> RouteRequest<'a> {
        RouteRequest { class, user, database, application_name, snapshot }
    }
}

/// A [`RoutingPolicy`]'s answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteChoice {
    /// No opinion: the router chooses as configured (`[routing]`: weights,
    /// balancing policy, database and application preferences, lowest lag).
    #[default]
    Default,
    /// The primary serves the read.
    Primary,
    /// Node `i` (index in `[[nodes]]`) serves the read, if the safety rule
    /// allows it; otherwise the router chooses as for
    /// [`RouteChoice::Default`].
    Node(usize),
}

/// An embedding service's override of the node that serves a read, for
/// example to keep a tenant's reads on the standby next to it. Set with
/// [`crate::PoolerBuilder::routing_policy`]; without one the router chooses
/// as configured (as if every answer were [`RouteChoice::Default`]).
///
/// **When it is called.** With `routing.load_balance` on (and more than one
/// node), once for each request the classifier found to be a read, when the
/// relay takes a server connection for it (transaction and statement
/// pooling, and session pooling with load balancing), in the client's task,
/// on the hot path: it must answer quickly, do no I/O and not panic. It is
/// not called for writes, nor at all with load balancing off (every request
/// then goes to the primary). In session pooling without
/// `statement_level_load_balance`, the node of a session's first read stays
/// its read node for the session, as with any other choice.
///
/// **The safety rule.** A policy can only choose among the nodes the router
/// would read from: [`RouteChoice::Node`]`(i)` is honoured only for a read
/// (a policy never sees a write, and a request the classifier is unsure of
/// counts as a write), only if node `i` is in the read set (up, not lagging
/// past `health.lag_threshold_bytes` or `health.lag_threshold`, not backed
/// off after a failed connection; its weight does not matter) and, with
/// read-your-writes, only once node `i` is known to have replayed the
/// session's last write (the router probes it when it does not know yet). Otherwise the request is routed as for
/// [`RouteChoice::Default`]. So a policy can never send a write, or a read
/// that would miss the session's own writes, off the primary.
pub trait RoutingPolicy: Send + Sync + 'static {
    /// The node for `request`; [`RouteChoice::Default`] leaves the choice
    /// to the router.
    fn choose(&self, request: &RouteRequest<'_>) -> RouteChoice;
}

/// A policy as the router holds it (opaque in `Debug` output).
#[derive(Clone)]
pub(crate) struct Policy(pub(crate) Arc<dyn RoutingPolicy>);

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoutingPolicy")
    }
}

/// The client a read is routed for, as the relay knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Requester<'a> {
    /// The role the client logged in as.
    pub(crate) user: &'a str,
    /// The client's database.
    pub(crate) database: &'a str,
    /// The client's `application_name`.
    pub(crate) application: &'a str,
    /// The request opens a read-only transaction block (only looked at
    /// when a policy is set).
    pub(crate) block: bool,
}
