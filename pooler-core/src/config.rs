//! Typed configuration: one TOML file, validated with errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or a value has the wrong type.
    /// The message names the key and shows the line.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is of the right type but not acceptable.
    #[error("invalid configuration: {key}: {problem}")]
    Invalid {
        /// Dotted key, e.g. `pool.size` or `nodes[1].port`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Upper bound of `server.max_client_connections`.
pub const MAX_CLIENTS: usize = 1_000_000;
/// Upper bound of `pool.size`.
pub const MAX_POOL_SIZE: usize = 100_000;
/// Longest duration accepted anywhere (10 years), so no deadline can overflow.
const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86_400.0;

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and client-facing limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Backend connection pools.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Client and backend authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Read/write routing and load balancing.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Health checks and replication lag probes.
    #[serde(default)]
    pub health: HealthConfig,
    /// What to do when the primary fails.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// The PostgreSQL servers. Until health checks discover roles, the first
    /// node is the primary and the others are standbys.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

/// Listener and client-facing settings (`[server]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// Most client connections at once; more are refused with SQLSTATE 53300.
    pub max_client_connections: usize,
    /// Time a client has to finish startup and authentication.
    #[serde(deserialize_with = "duration")]
    pub client_login_timeout: Duration,
    /// On shutdown, how long running transactions may take to finish.
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Largest message the pooler buffers whole to inspect (bytes). Messages the
    /// pooler only relays (rows, COPY data) stream through and are not limited.
    pub max_message_size: usize,
    /// Log every connection and disconnection at info level.
    pub log_connections: bool,
    /// Log every simple-protocol statement and Parse at info level.
    pub log_statements: bool,
    /// Threads of the binary's runtime; 0: one per CPU core. The library
    /// runs on whatever runtime its caller gives it and ignores this.
    pub worker_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6432".into(),
            max_client_connections: 1000,
            client_login_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            max_message_size: 64 << 20,
            log_connections: true,
            log_statements: false,
            worker_threads: 0,
        }
    }
}

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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolOverride {
    /// Pooling mode for this database or user.
    pub mode: Option<PoolMode>,
    /// Pool size for this database or user.
    pub size: Option<usize>,
}

/// Backend pool settings (`[pool]`).
#[derive(Clone, Debug, Deserialize)]
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
            track_extra_parameters: vec!["search_path".into()],
            databases: Default::default(),
            users: Default::default(),
        }
    }
}

/// How a read node is chosen among the usable ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancePolicy {
    /// At random, in proportion to the nodes' weights.
    #[default]
    WeightedRandom,
    /// The node with the fewest statements in flight relative to its weight.
    LeastOutstanding,
}

/// What a write does to the load balancing of the rest of the session
/// (pgpool's `disable_load_balance_on_write`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteStickiness {
    /// Nothing beyond read-your-writes.
    Off,
    /// Reads later in the same explicit transaction stay on the primary
    /// (always true here: a read-write transaction runs on the primary whole).
    #[default]
    Transaction,
    /// After a write inside an explicit transaction, later read-only
    /// transactions of the session also run on the primary.
    TransTransaction,
    /// After any write, everything else in the session runs on the primary.
    Always,
}

/// Where a database's or an application's reads go
/// (`routing.database_preference`, `routing.application_preference`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePreference {
    /// Always the primary.
    Primary,
    /// Load-balanced over the standbys only (the primary if none is usable).
    Standby,
    /// This node (by its index in `[[nodes]]`), the primary if it is not usable.
    Node(usize),
}

impl<'de> Deserialize<'de> for NodePreference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Index(usize),
        }
        match Raw::deserialize(d)? {
            Raw::Index(i) => Ok(NodePreference::Node(i)),
            Raw::Name(s) if s == "primary" => Ok(NodePreference::Primary),
            Raw::Name(s) if s == "standby" => Ok(NodePreference::Standby),
            Raw::Name(s) => {
                Err(serde::de::Error::custom(format!("{s:?}: expected \"primary\", \"standby\" or a node index")))
            }
        }
    }
}

/// Read/write routing (`[routing]`). Names in brackets are pgpool's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Send reads to standbys [load_balance_mode]. Transaction and statement
    /// pool modes only, for now; session mode keeps every statement on the primary.
    pub load_balance: bool,
    /// How a read node is picked.
    pub policy: BalancePolicy,
    /// What a write does to the rest of the session's balancing
    /// [disable_load_balance_on_write].
    pub disable_load_balance_on_write: WriteStickiness,
    /// Session mode: choose the read node per request instead of once per
    /// session [statement_level_load_balance].
    pub statement_level_load_balance: bool,
    /// Functions that write, beyond the built-in list [write_function_list];
    /// names or regexes.
    pub write_functions: Vec<String>,
    /// Functions that only read; when set, every other function call counts
    /// as a write [read_only_function_list].
    pub read_only_functions: Vec<String>,
    /// Regexes: a statement matching one goes to the primary
    /// [primary_routing_query_pattern_list].
    pub primary_patterns: Vec<String>,
    /// After a session's write commits, its reads go only to nodes that have
    /// replayed it (else the primary).
    pub read_your_writes: bool,
    /// Per-database read preference [database_redirect_preference_list].
    pub database_preference: std::collections::BTreeMap<String, NodePreference>,
    /// Per-application_name read preference [app_name_redirect_preference_list].
    pub application_preference: std::collections::BTreeMap<String, NodePreference>,
    /// A node whose connection attempt failed is left out of the read set
    /// for this long, or until a health check finds it up, whichever is later.
    #[serde(deserialize_with = "duration")]
    pub failed_node_retry: Duration,
    /// Among the standbys, send reads only to those with the least
    /// replication lag at the last check [prefer_lower_delay_standby].
    pub prefer_lowest_lag: bool,
    /// Unless `read_only_functions` is set, a call to a function on no list
    /// and not a known built-in is judged by the catalog: a `VOLATILE`
    /// function outside `pg_catalog` counts as a write (as pgpool judges
    /// when no list is set). Until the answer is known the statement goes
    /// to the primary. Off: such calls count as reads.
    pub function_volatility: bool,
    /// How long the catalog's answer about a function is kept (per database).
    #[serde(deserialize_with = "duration")]
    pub function_cache_ttl: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            load_balance: false,
            policy: BalancePolicy::WeightedRandom,
            disable_load_balance_on_write: WriteStickiness::Transaction,
            statement_level_load_balance: false,
            write_functions: Vec::new(),
            read_only_functions: Vec::new(),
            primary_patterns: Vec::new(),
            read_your_writes: true,
            database_preference: Default::default(),
            application_preference: Default::default(),
            failed_node_retry: Duration::from_secs(5),
            prefer_lowest_lag: false,
            function_volatility: true,
            function_cache_ttl: Duration::from_secs(300),
        }
    }
}

/// Health checks and replication lag (`[health]`). They run while
/// `routing.load_balance` is on: a node that fails its check, or a standby
/// that lags past a threshold, leaves the read set until it is back.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between checks of each node [health_check_period / sr_check_period].
    #[serde(deserialize_with = "duration")]
    pub period: Duration,
    /// Longest a check may take, connection included [health_check_timeout].
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Role the checks log in as [health_check_user]; its secret comes from
    /// the password file.
    pub user: String,
    /// Database the checks connect to [health_check_database].
    pub database: String,
    /// A standby more than this many bytes of WAL behind the primary leaves the
    /// read set [delay_threshold]; 0 turns the byte check off.
    pub lag_threshold_bytes: u64,
    /// A standby whose last replayed transaction is older than this (while the
    /// primary moves on) leaves the read set [delay_threshold_by_time]; "0s": off.
    #[serde(deserialize_with = "duration")]
    pub lag_threshold: Duration,
    /// Failed checks in a row, beyond the first, before a node counts as down
    /// [health_check_max_retries].
    pub max_retries: u32,
    /// Pause before checking a failed node again [health_check_retry_delay].
    #[serde(deserialize_with = "duration")]
    pub retry_delay: Duration,
    /// Longest the connection of a check may take to open [connect_timeout];
    /// the whole check is still bounded by `timeout`.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
}

/// Failover (`[failover]`): commands run when the primary is down, with
/// pgpool's placeholders (see docs/CONFIG.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Run once when the primary is found down [failover_command]; it should
    /// promote the new main node (`%m`, `%H`, `%r`, `%R`). Empty: none (another
    /// tool promotes; the pooler discovers the new primary).
    pub command: String,
    /// Run for each remaining standby once the new primary is known
    /// [follow_primary_command]: `%d`, `%h`, `%p`, `%D` are that standby.
    pub follow_primary_command: String,
    /// Run when a node comes back into service: attached by an operator, or
    /// returned by itself as a healthy standby [failback_command]; `%d`, `%h`,
    /// `%p`, `%D` are that node.
    pub failback_command: String,
    /// Longest a command may run before it is killed.
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
    /// A connection to a node that is refused or reset (seen by a client
    /// session) marks the node down at once, as a failed health check would
    /// [failover_on_backend_error]. Off: it triggers an immediate health
    /// check of the node instead, which decides.
    pub failover_on_backend_error: bool,
    /// A node that left service (failed checks, or a former primary) comes
    /// back by itself once it answers as a standby (a former primary: one
    /// whose WAL receiver is streaming) [auto_failback]. Off: it stays down
    /// until an operator attaches it.
    pub auto_failback: bool,
    /// While no node answers as the primary, writes wait this long for one
    /// (a failover in progress) before they fail; an error is logged when the
    /// search has gone on this long [search_primary_node_timeout]. "0s": fail at once.
    #[serde(deserialize_with = "duration")]
    pub search_primary_node_timeout: Duration,
    /// Which node keeps the writes when two claim to be the primary.
    pub false_primary: FalsePrimaryRule,
    /// At failover, promote among the standbys the primary last reported as
    /// synchronous (`sync` or `quorum` in `pg_stat_replication`; needs
    /// `nodes[].application_name`) when any of them answers, else among all.
    /// Off: the standby that received the most WAL, whatever its sync state.
    /// Either way the standby is asked at failover time, never judged from
    /// an earlier check.
    pub prefer_sync_standbys: bool,
}

/// Which node keeps the writes when two nodes answer as a primary at once
/// (`failover.false_primary`). The other is quarantined: no reads, no writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FalsePrimaryRule {
    /// The node writes already go to (default): never move writes on a
    /// claim alone.
    KeepCurrent,
    /// The node more standbys stream from (by the standbys' WAL receiver
    /// sender host and port); the current one on a tie [pgpool's detect_false_primary].
    MostStandbys,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            command: String::new(),
            follow_primary_command: String::new(),
            failback_command: String::new(),
            command_timeout: Duration::from_secs(60),
            failover_on_backend_error: false,
            auto_failback: true,
            search_primary_node_timeout: Duration::from_secs(10),
            false_primary: FalsePrimaryRule::KeepCurrent,
            prefer_sync_standbys: false,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            user: "postgres".into(),
            database: "postgres".into(),
            lag_threshold_bytes: 16 << 20,
            lag_threshold: Duration::ZERO,
            max_retries: 2,
            retry_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// How clients prove who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AuthMethod {
    /// No password.
    #[serde(rename = "trust")]
    Trust,
    /// MD5 challenge (a user with a SCRAM secret is asked for SCRAM instead, as
    /// PostgreSQL does).
    #[serde(rename = "md5")]
    Md5,
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// Authentication settings (`[auth]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Method clients must use.
    pub method: AuthMethod,
    /// Password file (`"user" "secret"` or `user:secret` lines; plaintext, md5
    /// or SCRAM secrets). Used to check clients and to log in to backends.
    pub password_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { method: AuthMethod::ScramSha256, password_file: None }
    }
}

/// One PostgreSQL server (`[[nodes]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Load-balancing weight (used by the router).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Data directory on the node's host (for failover command placeholders).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The `application_name` this standby streams under (its
    /// `primary_conninfo`), to find it in the primary's `pg_stat_replication`
    /// for `SHOW pool_nodes` [backend_application_name]. Unset: the standby's
    /// own WAL receiver status is shown and the sync state is left empty.
    #[serde(default)]
    pub application_name: Option<String>,
}

impl NodeConfig {
    /// A node at `host:port` with weight 1 and nothing else set.
    pub fn new(host: impl Into<String>, port: u16) -> NodeConfig {
        NodeConfig { host: host.into(), port, weight: 1.0, data_dir: None, application_name: None }
    }
}

fn default_port() -> u16 {
    5432
}

fn default_weight() -> f64 {
    1.0
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Config::from_toml(&text)?;
        // A relative password file is relative to the configuration file.
        if let (Some(pf), Some(dir)) = (&config.auth.password_file, path.parent()) {
            if pf.is_relative() {
                config.auth.password_file = Some(dir.join(pf));
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// A configuration with defaults everywhere and these nodes.
    pub fn with_nodes(nodes: Vec<NodeConfig>) -> Config {
        Config {
            server: ServerConfig::default(),
            pool: PoolConfig::default(),
            auth: AuthConfig::default(),
            routing: RoutingConfig::default(),
            health: HealthConfig::default(),
            failover: FailoverConfig::default(),
            nodes,
        }
    }

    /// Checks values that parse but make no sense. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_inner(true)
    }

    /// Like [`Config::validate`], for an embedder that supplies the password
    /// file in memory: `auth.password_file` is then not required.
    pub fn validate_with_passwords_in_memory(&self) -> Result<(), ConfigError> {
        self.validate_inner(false)
    }

    fn validate_inner(&self, need_password_file: bool) -> Result<(), ConfigError> {
        let s = &self.server;
        s.listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("server.listen", format!("{:?} is not host:port ({e})", s.listen)))?;
        if s.max_client_connections == 0 || s.max_client_connections > MAX_CLIENTS {
            return Err(invalid("server.max_client_connections", format!("must be between 1 and {MAX_CLIENTS}")));
        }
        if s.max_message_size < 1024 {
            return Err(invalid("server.max_message_size", "must be at least 1024 bytes"));
        }
        if s.max_message_size > (1 << 30) {
            return Err(invalid("server.max_message_size", "must be at most 1 GiB (1073741824)"));
        }
        let p = &self.pool;
        if p.size == 0 {
            return Err(invalid("pool.size", "must be at least 1"));
        }
        if p.size > MAX_POOL_SIZE {
            return Err(invalid("pool.size", format!("must be at most {MAX_POOL_SIZE}")));
        }
        if p.min_size > p.size {
            return Err(invalid("pool.min_size", "must not exceed pool.size"));
        }
        if p.reserve_size > MAX_POOL_SIZE {
            return Err(invalid("pool.reserve_size", format!("must be at most {MAX_POOL_SIZE}")));
        }
        for (table, map) in [("databases", &p.databases), ("users", &p.users)] {
            for (name, o) in map {
                if let Some(n) = o.size {
                    if n == 0 || n > MAX_POOL_SIZE {
                        return Err(invalid(
                            format!("pool.{table}.{name}.size"),
                            format!("must be between 1 and {MAX_POOL_SIZE}"),
                        ));
                    }
                    if n < p.min_size {
                        return Err(invalid(format!("pool.{table}.{name}.size"), "must not be below pool.min_size"));
                    }
                }
            }
        }
        if p.prepared_statement_cache_size == 0 || p.prepared_statement_cache_size > 100_000 {
            return Err(invalid("pool.prepared_statement_cache_size", "must be between 1 and 100000"));
        }
        if p.check_query.contains('\0') {
            return Err(invalid("pool.check_query", "must not contain a NUL byte"));
        }
        for (i, name) in p.track_extra_parameters.iter().enumerate() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(invalid(
                    format!("pool.track_extra_parameters[{i}]"),
                    "must be a parameter name (letters, digits, _ and .)",
                ));
            }
        }
        for (key, d) in [
            ("pool.connect_timeout", p.connect_timeout),
            ("pool.checkout_timeout", p.checkout_timeout),
            ("pool.server_lifetime", p.server_lifetime),
            ("pool.server_idle_timeout", p.server_idle_timeout),
            ("pool.reserve_timeout", p.reserve_timeout),
            ("pool.check_delay", p.check_delay),
            ("routing.failed_node_retry", self.routing.failed_node_retry),
            ("health.period", self.health.period),
            ("health.timeout", self.health.timeout),
            ("health.connect_timeout", self.health.connect_timeout),
            ("failover.command_timeout", self.failover.command_timeout),
            ("server.client_login_timeout", s.client_login_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        for (i, q) in p.reset_query_list.iter().enumerate() {
            if q.trim().is_empty() || q.contains('\0') {
                return Err(invalid(format!("pool.reset_query_list[{i}]"), "must be a non-empty statement"));
            }
        }
        if need_password_file && self.auth.method != AuthMethod::Trust && self.auth.password_file.is_none() {
            return Err(invalid(
                "auth.password_file",
                "required when auth.method is md5 or scram-sha-256 (or set auth.method = \"trust\")",
            ));
        }
        if self.server.worker_threads > 1024 {
            return Err(invalid("server.worker_threads", "must be at most 1024 (0: one per CPU core)"));
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "at least one [[nodes]] entry is required"));
        }
        let r = &self.routing;
        crate::classify::Classifier::new(&crate::classify::ClassifierLists {
            write_functions: r.write_functions.clone(),
            read_only_functions: r.read_only_functions.clone(),
            primary_patterns: r.primary_patterns.clone(),
        })
        .map_err(|e| invalid(format!("routing.{}", e.list), e.to_string()))?;
        for (table, map) in
            [("database_preference", &r.database_preference), ("application_preference", &r.application_preference)]
        {
            for (name, p) in map {
                if let NodePreference::Node(i) = p {
                    if *i >= self.nodes.len() {
                        return Err(invalid(
                            format!("routing.{table}.{name}"),
                            format!("node {i} does not exist ({} nodes are configured)", self.nodes.len()),
                        ));
                    }
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.host.trim().is_empty() {
                return Err(invalid(format!("nodes[{i}].host"), "must not be empty"));
            }
            if n.port == 0 {
                return Err(invalid(format!("nodes[{i}].port"), "must not be 0"));
            }
            if !n.weight.is_finite() || n.weight < 0.0 {
                return Err(invalid(format!("nodes[{i}].weight"), "must be a number >= 0"));
            }
        }
        Ok(())
    }

    /// The address to listen on (validated).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e| invalid("server.listen", format!("{:?} is not host:port ({e})", self.server.listen)))
    }
}

/// Parses a duration written as a number and a unit: `250ms`, `5s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: expected a number followed by ms, s, m or h, e.g. \"5s\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has no valid unit: use ms, s, m or h, e.g. \"5s\"")),
    };
    if !(0.0..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!("{s:?} is out of range (at most 10 years)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\n";

    #[test]
    fn minimal_file_takes_documented_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:6432");
        assert_eq!(c.pool.size, 20);
        assert_eq!(c.pool.reset_query_list, vec!["DISCARD ALL".to_string()]);
        assert_eq!(c.nodes[0].port, 5432);
        assert_eq!(c.pool.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nsizee = 3\n")).unwrap_err().to_string();
        assert!(err.contains("sizee"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nsize = \"big\"\n")).unwrap_err().to_string();
        assert!(err.contains("size"), "{err}");
    }

    #[test]
    fn bad_duration_explains_units() {
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nconnect_timeout = \"5\"\n")).unwrap_err().to_string();
        assert!(err.contains("connect_timeout") && err.contains("unit"), "{err}");
    }

    #[test]
    fn zero_pool_size_is_refused_with_key() {
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nsize = 0\n")).unwrap_err().to_string();
        assert_eq!(err, "invalid configuration: pool.size: must be at least 1");
    }

    #[test]
    fn absurd_sizes_are_refused_not_panicked_on() {
        let err = Config::from_toml(&format!("[server]\nmax_client_connections = 9223372036854775807\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.max_client_connections"), "{err}");
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nsize = 100000000\n")).unwrap_err().to_string();
        assert!(err.contains("pool.size"), "{err}");
        let err =
            Config::from_toml(&format!("{MINIMAL}[pool]\nserver_lifetime = \"999999999h\"\n")).unwrap_err().to_string();
        assert!(err.contains("server_lifetime") && err.contains("out of range"), "{err}");
    }

    #[test]
    fn password_methods_need_a_password_file() {
        let err = Config::from_toml("[[nodes]]\nhost = \"h\"\n").unwrap_err().to_string();
        assert!(err.contains("auth.password_file"), "{err}");
    }

    #[test]
    fn missing_nodes_and_bad_listen_are_refused() {
        let err = Config::from_toml("[auth]\nmethod = \"trust\"\n").unwrap_err().to_string();
        assert!(err.contains("nodes"), "{err}");
        let err = Config::from_toml(&format!("[server]\nlisten = \"nowhere\"\n{MINIMAL}")).unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
    }

    #[test]
    fn pool_mode_overrides_apply_user_over_database() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}[pool]\nmode = \"transaction\"\nsize = 7\n\
             [pool.databases.reports]\nmode = \"session\"\nsize = 3\n\
             [pool.users.batch]\nmode = \"statement\"\n"
        ))
        .unwrap();
        assert_eq!(c.pool.effective("app", "app").mode, PoolMode::Transaction);
        assert_eq!(c.pool.effective("app", "app").size, 7);
        for (u, d) in [("app", "app"), ("app", "reports"), ("batch", "reports"), ("x", "y")] {
            assert_eq!(c.pool.mode_for(u, d), c.pool.effective(u, d).mode, "{u} {d}");
        }
        let r = c.pool.effective("app", "reports");
        assert_eq!((r.mode, r.size), (PoolMode::Session, 3));
        let b = c.pool.effective("batch", "reports");
        assert_eq!((b.mode, b.size), (PoolMode::Statement, 3));
        let err =
            Config::from_toml(&format!("{MINIMAL}[pool.users.x]\nmode = \"sometimes\"\n")).unwrap_err().to_string();
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn pool_limits_are_checked() {
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nsize = 5\nmin_size = 6\n")).unwrap_err().to_string();
        assert!(err.contains("pool.min_size"), "{err}");
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\nprepared_statement_cache_size = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("prepared_statement_cache_size"), "{err}");
        let err = Config::from_toml(&format!("{MINIMAL}[pool]\ntrack_extra_parameters = [\"a;b\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("track_extra_parameters[0]"), "{err}");
        let err = Config::from_toml(&format!("{MINIMAL}[pool.databases.d]\nsize = 0\n")).unwrap_err().to_string();
        assert!(err.contains("pool.databases.d.size"), "{err}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999h").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
