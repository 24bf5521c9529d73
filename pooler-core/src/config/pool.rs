//! Backend pool settings (`[pool]`) and the pooling modes.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// How backend connections are shared between clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client holds one backend connection for its whole session.
    Session,
    /// A client holds a backend connection for one transaction (or one
    /// statement outside a transaction); between transactions the connection
    /// serves other clients. Prepared statements and parameters follow the
    /// client; session-only features pin the connection (see docs/POOLING.md).
    Transaction,
    /// Like transaction mode, but a backend connection is given back after
    /// every statement, and multi-statement transactions are refused.
    Statement,
}

impl std::fmt::Display for PoolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        })
    }
}

/// Settings that may differ per database or per user (`[pool.databases.NAME]`,
/// `[pool.users.NAME]`). A user's entry wins over a database's, which wins
/// over `[pool]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolOverride {
    /// Pooling mode for this database or user.
    pub mode: Option<PoolMode>,
    /// Pool size for this database or user.
    pub size: Option<usize>,
}

/// Backend pool settings (`[pool]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Pooling mode.
    pub mode: PoolMode,
    /// Most backend connections per (node, user, database).
    pub size: usize,
    /// Time allowed to open and authenticate a backend connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// How long a client waits for a free backend connection before it gets an
    /// error (SQLSTATE 53300).
    #[serde(deserialize_with = "duration")]
    pub checkout_timeout: Duration,
    /// A backend connection older than this is closed instead of reused.
    #[serde(deserialize_with = "duration")]
    pub server_lifetime: Duration,
    /// A backend connection idle in the pool longer than this is closed.
    #[serde(deserialize_with = "duration")]
    pub server_idle_timeout: Duration,
    /// Statements run on a backend connection when its client leaves, before it
    /// is reused (pgpool's reset_query_list). An open transaction is rolled back
    /// first in any case. In transaction and statement mode they run only on a
    /// connection that was pinned to a client (it may hold session state).
    pub reset_query_list: Vec<String>,
    /// Connections each pool keeps open even when idle (pgbouncer's
    /// min_pool_size): opened ahead of demand by the maintenance task once the
    /// pool exists.
    pub min_size: usize,
    /// Extra connections a pool may open when a client has waited
    /// `reserve_timeout` for one (pgbouncer's reserve_pool_size).
    pub reserve_size: usize,
    /// How long a client waits before the reserve may be used.
    #[serde(deserialize_with = "duration")]
    pub reserve_timeout: Duration,
    /// A client with no transaction open that sends nothing for this long is
    /// disconnected (SQLSTATE 57P05). `"0s"` turns it off.
    #[serde(deserialize_with = "duration")]
    pub client_idle_timeout: Duration,
    /// A client that holds a backend connection inside a transaction and sends
    /// nothing for this long is disconnected and its transaction rolled back
    /// (SQLSTATE 25P03). `"0s"` turns it off.
    #[serde(deserialize_with = "duration")]
    pub idle_transaction_timeout: Duration,
    /// While a server owes an answer to a request, the longest it may send
    /// nothing; then the client gets `08006` and the connection is closed
    /// (a hung server, not a slow query that streams). Unlike pgbouncer's
    /// `query_timeout` it does not bound a query that keeps sending rows.
    /// `"0s"` (default) turns it off: a long silent query is not killed.
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// TCP_USER_TIMEOUT on server connections: sent data unacknowledged
    /// this long closes the connection (a host gone without a reset).
    /// `"0s"` (default): the kernel's default.
    #[serde(deserialize_with = "duration")]
    pub tcp_user_timeout: Duration,
    /// A connection idle in the pool longer than this runs `check_query` before
    /// it is lent again.
    #[serde(deserialize_with = "duration")]
    pub check_delay: Duration,
    /// Statement that proves an idle connection still works; empty: only check
    /// that the socket is still open.
    pub check_query: String,
    /// Named prepared statements kept per backend connection in transaction and
    /// statement mode; the least recently used is closed to make room.
    pub prepared_statement_cache_size: usize,
    /// Transaction and statement mode: an unnamed statement (what most
    /// drivers send: Parse with no name, Bind, Execute, Sync) whose text the
    /// pooler has seen before is prepared once per server connection under
    /// a name of the pooler's and bound by that name, so PostgreSQL skips
    /// parsing and planning it again. Keyed by the text, the parameter
    /// types and the client's `search_path` and `role`; a statement that a
    /// DDL change made stale is prepared again transparently.
    pub unnamed_statement_cache: bool,
    /// Parameters the server does not report (ParameterStatus) that transaction
    /// mode carries from one backend connection to the next for each client.
    pub track_extra_parameters: Vec<String>,
    /// Overrides per database name.
    pub databases: std::collections::BTreeMap<String, PoolOverride>,
    /// Overrides per user name.
    pub users: std::collections::BTreeMap<String, PoolOverride>,
}

impl PoolConfig {
    /// The pool mode for one (user, database): the user's override, else the
    /// database's, else the global mode.
    pub fn mode_for(&self, user: &str, database: &str) -> PoolMode {
        self.users
            .get(user)
            .and_then(|o| o.mode)
            .or_else(|| self.databases.get(database).and_then(|o| o.mode))
            .unwrap_or(self.mode)
    }

    /// The settings in force for one (user, database): overrides applied.
    pub fn effective(&self, user: &str, database: &str) -> PoolConfig {
        let mut s = self.clone();
        for o in [self.databases.get(database), self.users.get(user)].into_iter().flatten() {
            if let Some(m) = o.mode {
                s.mode = m;
            }
            if let Some(n) = o.size {
                s.size = n;
            }
        }
        s.databases = Default::default();
        s.users = Default::default();
        s
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Session,
            size: 20,
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(30),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            reset_query_list: vec!["DISCARD ALL".into()],
            min_size: 0,
            reserve_size: 0,
            reserve_timeout: Duration::from_secs(5),
            client_idle_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            response_timeout: Duration::ZERO,
            tcp_user_timeout: Duration::ZERO,
            check_delay: Duration::from_secs(30),
            check_query: "SELECT 1".into(),
            prepared_statement_cache_size: 256,
            unnamed_statement_cache: true,
            track_extra_parameters: vec!["search_path".into()],
            databases: Default::default(),
            users: Default::default(),
        }
    }
}
