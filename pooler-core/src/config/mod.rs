//! Typed configuration: one TOML file, validated with errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod admin;
mod auth;
mod cluster;
mod coordination;
mod metrics;
mod pool;
mod routing;
mod tls;

pub use admin::{AdminConfig, ConsoleRole};
pub use auth::{AuthConfig, AuthMethod, DEFAULT_AUTH_QUERY};
pub use cluster::{FailoverConfig, FalsePrimaryRule, HealthConfig, NodeConfig, RecoveryConfig};
pub use coordination::{CoordinationBackend, CoordinationConfig};
pub use metrics::MetricsConfig;
pub use pool::{PoolConfig, PoolMode, PoolOverride};
pub use routing::{BalancePolicy, NodePreference, RoutingConfig, WriteStickiness};
pub use tls::{ClientTlsConfig, ClientTlsMode, ServerTlsConfig, ServerTlsMode, TlsVersion};

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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// How `RECOVER NODE` rebuilds a node.
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// TLS towards clients.
    #[serde(default)]
    pub client_tls: ClientTlsConfig,
    /// TLS towards servers (sessions and health checks).
    #[serde(default)]
    pub server_tls: ServerTlsConfig,
    /// The PostgreSQL servers. Until health checks discover roles, the first
    /// node is the primary and the others are standbys.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    /// Who may use the admin console.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The binary's Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Several poolers in front of one cluster (docs/HA.md).
    #[serde(default)]
    pub coordination: CoordinationConfig,
}

/// Listener and client-facing settings (`[server]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, `host:port`. Its port also names the Unix
    /// socket.
    pub listen: String,
    /// Listen on `listen` over TCP; false: only on the Unix socket.
    pub listen_tcp: bool,
    /// Directory of a Unix domain socket to listen on, named
    /// `.s.PGSQL.<port>` as PostgreSQL names its own (so `psql -h <dir> -p
    /// <port>` finds it). Unset: no Unix socket.
    pub unix_socket_dir: Option<PathBuf>,
    /// Permissions of the Unix socket, in octal.
    #[serde(deserialize_with = "octal_mode")]
    pub unix_socket_mode: u32,
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
    /// Most memory the relay buffers of every client and server connection
    /// may hold together (bytes, or with a unit: "512MB", "1GB"; 1 kB =
    /// 1024 bytes as in PostgreSQL); 0: no limit. Past it, new logins get
    /// FATAL 53200 and new transactions wait (up to `pool.checkout_timeout`)
    /// for memory to be given back, then get ERROR 53200; transactions
    /// running go on.
    #[serde(deserialize_with = "byte_size")]
    pub max_memory: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6432".into(),
            listen_tcp: true,
            unix_socket_dir: None,
            unix_socket_mode: 0o777,
            max_client_connections: 1000,
            client_login_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            max_message_size: 64 << 20,
            log_connections: true,
            log_statements: false,
            worker_threads: 0,
            max_memory: 0,
        }
    }
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
        // So are the hba file, the certificate and key files, and the socket directory.
        if let Some(dir) = path.parent() {
            let (c, s) = (&mut config.client_tls, &mut config.server_tls);
            for file in
                [&mut c.cert_file, &mut c.key_file, &mut c.ca_file, &mut s.ca_file, &mut s.cert_file, &mut s.key_file]
                    .into_iter()
                    .chain([&mut config.server.unix_socket_dir, &mut config.auth.hba_file])
            {
                if let Some(f) = file.as_mut().filter(|f| f.is_relative()) {
                    *f = dir.join(&*f);
                }
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
            recovery: RecoveryConfig::default(),
            client_tls: ClientTlsConfig::default(),
            server_tls: ServerTlsConfig::default(),
            nodes,
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            coordination: CoordinationConfig::default(),
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
        if self.auth.method == AuthMethod::Cert
            && (!self.client_tls.sslmode.offers() || self.client_tls.ca_file.is_none())
        {
            return Err(invalid(
                "auth.method",
                "\"cert\" needs TLS towards clients with a CA file (client_tls.sslmode and client_tls.ca_file)",
            ));
        }
        let password_method = matches!(self.auth.method, AuthMethod::Md5 | AuthMethod::ScramSha256);
        if need_password_file && password_method && self.auth.password_file.is_none() {
            return Err(invalid(
                "auth.password_file",
                "required when auth.method is md5 or scram-sha-256 (or set auth.method = \"trust\")",
            ));
        }
        self.auth.validate()?;
        if self.server.worker_threads > 1024 {
            return Err(invalid("server.worker_threads", "must be at most 1024 (0: one per CPU core)"));
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "at least one [[nodes]] entry is required"));
        }
        self.admin.validate()?;
        self.metrics.validate()?;
        self.coordination.validate()?;
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
        self.validate_listeners()?;
        self.validate_tls()?;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.host.starts_with('/') && n.sslmode.is_some_and(ServerTlsMode::asks) {
                return Err(invalid(
                    format!("nodes[{i}].sslmode"),
                    "a node reached through a Unix socket directory does not use TLS (set \"disable\")",
                ));
            }
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

    /// Checks the listener settings: something to listen on, a socket
    /// directory that is a path.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !s.listen_tcp && s.unix_socket_dir.is_none() {
            return Err(invalid("server.listen_tcp", "false needs server.unix_socket_dir: nothing to listen on"));
        }
        if let Some(dir) = &s.unix_socket_dir {
            if dir.as_os_str().is_empty() {
                return Err(invalid("server.unix_socket_dir", "must not be empty"));
            }
            // sun_path holds 108 bytes with its NUL.
            let len = dir.as_os_str().len() + "/.s.PGSQL.65535".len();
            if len > 107 {
                return Err(invalid("server.unix_socket_dir", "is too long for a Unix socket path (at most 92 bytes)"));
            }
        }
        self.listen_addr().map(drop)
    }

    /// Checks that every TLS mode has the files it needs.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let c = &self.client_tls;
        if c.sslmode.offers() {
            if c.cert_file.is_none() {
                return Err(invalid("client_tls.cert_file", "required when client_tls.sslmode is not \"disable\""));
            }
            if c.key_file.is_none() {
                return Err(invalid("client_tls.key_file", "required when client_tls.sslmode is not \"disable\""));
            }
        }
        if c.sslmode.requires_certificate() && c.ca_file.is_none() {
            return Err(invalid("client_tls.ca_file", "required by sslmode verify-ca and verify-full"));
        }
        let s = &self.server_tls;
        let verifying = std::iter::once(("server_tls.sslmode".to_owned(), s.sslmode)).chain(
            self.nodes.iter().enumerate().filter_map(|(i, n)| n.sslmode.map(|m| (format!("nodes[{i}].sslmode"), m))),
        );
        for (key, mode) in verifying {
            if mode.verifies() && s.ca_file.is_none() {
                return Err(invalid("server_tls.ca_file", format!("required: {key} verifies server certificates")));
            }
        }
        if s.cert_file.is_some() != s.key_file.is_some() {
            return Err(invalid("server_tls.cert_file", "server_tls.cert_file and server_tls.key_file go together"));
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

/// A file mode written in octal, as a string (`"0770"`) or a number.
fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        Number(u32),
    }
    let text = match Mode::deserialize(d)? {
        Mode::Text(t) => t,
        Mode::Number(n) => n.to_string(),
    };
    match u32::from_str_radix(text.trim(), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(serde::de::Error::custom(format!("{text:?} is not an octal file mode such as \"0770\""))),
    }
}

/// A size in bytes: an integer, or a string with a PostgreSQL-style unit
/// (B, kB, MB, GB, TB; 1024-based).
pub(crate) fn parse_byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: usize =
        number.parse().map_err(|_| format!("invalid size {s:?}: expected a number and a unit such as 512MB"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        other => return Err(format!("invalid size unit {other:?} in {s:?}: use B, kB, MB, GB or TB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("size {s:?} is too large"))
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => usize::try_from(n).map_err(|_| serde::de::Error::custom("size too large")),
        Raw::Text(s) => parse_byte_size(&s).map_err(serde::de::Error::custom),
    }
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
    fn sizes_parse_as_numbers_or_with_postgres_units() {
        assert_eq!(parse_byte_size("4096").unwrap(), 4096);
        assert_eq!(parse_byte_size("64kB").unwrap(), 64 << 10);
        assert_eq!(parse_byte_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("1 GB").unwrap(), 1 << 30);
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MB").is_err());
        assert!(parse_byte_size("99999999999999999TB").is_err());
        let c = Config::from_toml(&format!("{MINIMAL}[server]\nmax_memory = \"256MB\"\n")).unwrap();
        assert_eq!(c.server.max_memory, 256 << 20);
        let c = Config::from_toml(&format!("{MINIMAL}[server]\nmax_memory = 1000000\n")).unwrap();
        assert_eq!(c.server.max_memory, 1_000_000);
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
