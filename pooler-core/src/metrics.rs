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
/// Counter: client logins that failed authentication.
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
