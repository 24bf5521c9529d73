//! Metric names, recorded through the `metrics` facade.
//!
//! The library only records; whoever embeds it installs a recorder (the binary
//! exports Prometheus). Without a recorder these calls cost almost nothing.

/// Counter: client connections accepted.
pub const CLIENT_CONNECTIONS: &str = "pooler_client_connections_total";
/// Gauge: client connections open now.
pub const CLIENTS_ACTIVE: &str = "pooler_clients_active";
/// Counter: client connections refused because `max_client_connections` was reached.
pub const CLIENTS_REFUSED: &str = "pooler_clients_refused_total";
/// Counter: client logins that failed authentication, by `reason`:
/// `password` (a wrong password or an unknown user), `refused` (hba,
/// certificate, peer and TLS refusals), `other`.
pub const AUTH_FAILURES: &str = "pooler_auth_failures_total";
/// Counter: server connections opened.
pub const SERVER_CONNECTIONS_OPENED: &str = "pooler_server_connections_opened_total";
/// Counter: server connections closed by the pooler.
pub const SERVER_CONNECTIONS_CLOSED: &str = "pooler_server_connections_closed_total";
/// Counter: server connections lent to clients.
pub const CHECKOUTS: &str = "pooler_checkouts_total";
/// Counter: checkouts that had to wait for a free connection.
pub const CHECKOUT_WAITS: &str = "pooler_checkout_waits_total";
/// Counter: checkouts that timed out.
pub const CHECKOUT_TIMEOUTS: &str = "pooler_checkout_timeouts_total";
/// Histogram: seconds spent waiting for a server connection.
pub const CHECKOUT_WAIT_SECONDS: &str = "pooler_checkout_wait_seconds";
/// Counter: cancel requests forwarded to a server.
pub const CANCELS_FORWARDED: &str = "pooler_cancels_forwarded_total";
/// Histogram: seconds from a request's first bytes relayed to the server
/// to its ReadyForQuery (with `metrics.durations`).
pub const QUERY_SECONDS: &str = "pooler_query_duration_seconds";
/// Histogram: seconds from a transaction's first request relayed to the
/// server to the ReadyForQuery that ends it (with `metrics.durations`).
pub const TRANSACTION_SECONDS: &str = "pooler_transaction_duration_seconds";
/// Counter: failovers started (the failover hook run for a primary seen
/// down).
pub const FAILOVERS: &str = "pooler_failovers_total";
/// Histogram: seconds each health check took, by `node` and `outcome`
/// (`ok`, `failed`).
pub const HEALTH_CHECK_SECONDS: &str = "pooler_health_check_seconds";
/// Counter: logins refused after authentication, by `reason` (`console`:
/// not an admin or stats user; `disabled`: the database was disabled).
pub const LOGINS_REFUSED: &str = "pooler_logins_refused_total";
/// Counter: logins and transactions refused (53200) because the buffers
/// held more than `server.max_memory`.
pub const MEMORY_REFUSALS: &str = "pooler_memory_refusals_total";
/// Counter: configuration reloads, by `outcome` (`applied`, `failed`).
pub const RELOADS: &str = "pooler_reloads_total";

// Gauges set at each scrape from the pooler's state (`Pooler::record_gauges`).

/// Gauge per pool (`database`, `user`): clients logged in and not waiting.
pub const POOL_CLIENTS_ACTIVE: &str = "pooler_pool_clients_active";
/// Gauge per pool: clients waiting for a server connection.
pub const POOL_CLIENTS_WAITING: &str = "pooler_pool_clients_waiting";
/// Gauge per pool: server connections lent to clients.
pub const POOL_SERVERS_ACTIVE: &str = "pooler_pool_servers_active";
/// Gauge per pool: idle server connections.
pub const POOL_SERVERS_IDLE: &str = "pooler_pool_servers_idle";
/// Gauge per pool: server connections used since the pool began
/// (checkouts; pgbouncer's `sv_used` means something else and is 0 here).
pub const POOL_SERVER_ASSIGNMENTS: &str = "pooler_pool_server_assignments";
/// Counter per pool: transactions its clients ended (SHOW STATS
/// `total_xact_count`).
pub const POOL_TRANSACTIONS: &str = "pooler_pool_transactions_total";
/// Counter per pool: requests answered (ReadyForQuery; `total_query_count`).
pub const POOL_QUERIES: &str = "pooler_pool_queries_total";
/// Counter per pool: bytes received from its clients.
pub const POOL_RECEIVED_BYTES: &str = "pooler_pool_received_bytes_total";
/// Counter per pool: bytes sent to its clients.
pub const POOL_SENT_BYTES: &str = "pooler_pool_sent_bytes_total";
/// Gauge per pool: seconds the longest-waiting client has waited.
pub const POOL_MAXWAIT_SECONDS: &str = "pooler_pool_maxwait_seconds";
/// Gauge per node (`node`): 1 when up.
pub const NODE_UP: &str = "pooler_node_up";
/// Gauge per node and `status` (up, down, waiting, quarantine): 1 for the
/// node's status, 0 for the others.
pub const NODE_STATUS: &str = "pooler_node_status";
/// Gauge per node: 1 when the pooler holds it for the primary.
pub const NODE_PRIMARY: &str = "pooler_node_primary";
/// Gauge per node: bytes of WAL behind the primary at the last check.
pub const NODE_LAG_BYTES: &str = "pooler_node_lag_bytes";
/// Gauge per node: seconds behind the primary at the last check.
pub const NODE_LAG_SECONDS: &str = "pooler_node_lag_seconds";
/// Gauge per node: requests routed there since start.
pub const NODE_ROUTED: &str = "pooler_node_routed_requests";
/// Gauge per node: reads routed there since start.
pub const NODE_READS: &str = "pooler_node_routed_reads";
/// Gauge per node: seconds since the node's status last changed.
pub const NODE_STATUS_AGE_SECONDS: &str = "pooler_node_status_age_seconds";
/// Gauge: published cluster snapshots (every node flip and failover moves it).
pub const CLUSTER_GENERATION: &str = "pooler_cluster_generation";
/// Gauge: bytes the relay buffers of every client and server connection
/// hold (what `server.max_memory` limits).
pub const BUFFER_BYTES: &str = "pooler_buffer_bytes";
/// Gauge: `server.max_memory` in force (0: no limit).
pub const MAX_MEMORY_BYTES: &str = "pooler_max_memory_bytes";
/// Gauge: 1 while this pooler is the leader of its group (`[coordination]`).
pub const HA_LEADER: &str = "pooler_ha_leader";
/// Gauge: 1 while the coordination store answers; 0 when this pooler routes
/// by the last state it knew and its own checks.
pub const HA_STORE_REACHABLE: &str = "pooler_ha_store_reachable";
/// Gauge: the term (store revision) of this pooler's last leadership.
pub const HA_TERM: &str = "pooler_ha_term";
/// Counter: failovers held back because a majority of the live poolers did
/// not see the primary down.
pub const HA_DISAGREEMENTS: &str = "pooler_ha_disagreements_total";
/// Gauge per node (`node`): how many live poolers see it down.
pub const HA_DOWN_VOTES: &str = "pooler_ha_node_down_votes";
/// Gauge: live poolers in the group (views in the store).
pub const HA_MEMBERS: &str = "pooler_ha_members";
