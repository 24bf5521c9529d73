//! A routing policy by tenant: each tenant (here, the role it logs in as)
//! reads from its own standby, and never from another tenant's.
//!
//! The policy only chooses among reads; the router keeps the safety rules
//! (see `pooler_core::RoutingPolicy`): writes and anything the classifier is
//! unsure of go to the primary whatever the policy says, and a node that is
//! down, lagging, or has not replayed the session's own last write is not
//! used. This policy adds one rule of its own: when a tenant's standby
//! cannot serve, its reads go to the primary rather than to a neighbour's
//! standby ([`RouteChoice::Default`] would let the router spread them).

use std::collections::HashMap;
use std::sync::Arc;

use pooler_core::{Pooler, RouteChoice, RouteRequest, RoutingPolicy, StartError};
use pooler_testkit::Cluster;

use crate::demo::{self, BoxError, Running};

/// Reads of each listed user go to that user's node.
#[derive(Clone, Debug, Default)]
pub struct TenantRouting {
    by_user: HashMap<String, usize>,
}

impl TenantRouting {
    /// `tenants`: (user, node index in `[[nodes]]`).
    pub fn new<'a>(tenants: impl IntoIterator<Item = (&'a str, usize)>) -> TenantRouting {
        TenantRouting { by_user: tenants.into_iter().map(|(u, n)| (u.to_owned(), n)).collect() }
    }
}

impl RoutingPolicy for TenantRouting {
    fn choose(&self, request: &RouteRequest<'_>) -> RouteChoice {
        let Some(&node) = self.by_user.get(request.user) else {
            // Not a tenant (an operator, a batch job): as configured.
            return RouteChoice::Default;
        };
        match request.snapshot.nodes.get(node) {
            Some(n) if n.readable() => RouteChoice::Node(node),
            // Its standby is out of service or lagging: the primary, not a
            // neighbour's standby.
            _ => RouteChoice::Primary,
        }
    }
}

/// What the demo's cluster is created with: two tenant roles and a table
/// they share.
pub const INIT_SQL: &str = "CREATE ROLE tenant_a LOGIN; CREATE ROLE tenant_b LOGIN; \
     CREATE TABLE notes (id serial PRIMARY KEY, tenant text NOT NULL DEFAULT current_user, body text); \
     GRANT SELECT, INSERT ON notes TO tenant_a, tenant_b; \
     GRANT USAGE ON SEQUENCE notes_id_seq TO tenant_a, tenant_b;";

/// A pooler over `cluster` (a primary and two standbys, created with
/// [`INIT_SQL`]): `tenant_a` reads from node 1, `tenant_b` from node 2.
pub fn pooler(cluster: &Cluster) -> Result<Pooler, StartError> {
    let policy = TenantRouting::new([("tenant_a", 1), ("tenant_b", 2)]);
    Pooler::builder(demo::config(cluster)).routing_policy(Arc::new(policy)).build()
}

/// What [`demo`] saw.
#[derive(Debug)]
pub struct Outcome {
    /// Per user, the ports of the servers that answered its reads.
    pub reads: Vec<(String, Vec<u16>)>,
    /// Per tenant, the port of the server that took its write, and whether
    /// that server was a standby.
    pub writes: Vec<(String, u16, bool)>,
}

/// Each tenant, and the superuser, reads `rounds` times and writes once.
pub async fn demo(cluster: &Cluster, rounds: usize) -> Result<Outcome, BoxError> {
    let running = Running::start(pooler(cluster)?).await?;
    let mut outcome = Outcome { reads: Vec::new(), writes: Vec::new() };
    for user in ["tenant_a", "tenant_b", "postgres"] {
        let client = running.connect(user, "tenant demo").await?;
        let mut ports = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            ports.push(demo::served_by(&client).await?.0);
        }
        outcome.reads.push((user.to_owned(), ports));
        if user != "postgres" {
            let row = client
                .query_one(
                    "INSERT INTO notes (body) VALUES ('hello') RETURNING inet_server_port(), pg_is_in_recovery()",
                    &[],
                )
                .await?;
            outcome.writes.push((user.to_owned(), row.get::<_, i32>(0) as u16, row.get(1)));
        }
    }
    running.stop().await;
    Ok(outcome)
}
