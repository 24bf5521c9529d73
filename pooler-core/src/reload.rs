//! Configuration reload: a new [`Config`] is validated, everything it
//! needs from files (password file, hba file, certificates) is loaded, and
//! only then is anything put in place, so that a reload either applies
//! whole or changes nothing. What cannot change while the pooler runs (a
//! listen address, the node list itself) is reported as needing a restart,
//! never silently ignored; the rest of the new configuration still applies.
//!
//! Connected clients keep their sessions: pools take new sizes and timeouts
//! (a smaller pool shrinks as connections come back), the router takes new
//! rules and weights (statements classified under old function lists are
//! classified again), new logins see the new users, hba rules and TLS
//! certificates.

use std::path::Path;
use std::sync::Arc;

use crate::auth::PasswordFile;
use crate::config::Config;
use crate::runtime::Shared;

/// What a reload changed, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Settings whose new value is in force (`section.key`, `nodes[i].weight`).
    pub applied: Vec<String>,
    /// Settings whose new value needs a restart; the old value stays in
    /// force until then.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// Nothing differed from the configuration in force.
    pub fn is_unchanged(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_unchanged() {
            return f.write_str("no setting changed");
        }
        if !self.applied.is_empty() {
            write!(f, "applied: {}", self.applied.join(", "))?;
        }
        if !self.needs_restart.is_empty() {
            if !self.applied.is_empty() {
                f.write_str("; ")?;
            }
            write!(f, "need a restart (the old value stays in force): {}", self.needs_restart.join(", "))?;
        }
        Ok(())
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The password file it names could not be loaded.
    #[error("auth.password_file: {0}")]
    PasswordFile(#[from] crate::auth::PasswordFileError),
    /// The hba file it names could not be loaded (the message names file and line).
    #[error("auth.hba_file: {0}")]
    Hba(#[from] crate::hba::HbaError),
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A routing pattern does not compile.
    #[error("routing: {0}")]
    Routing(String),
    /// No configuration file is known to read again (the pooler was built
    /// from a configuration in memory).
    #[error("no configuration file is known to read again: the pooler was built from a configuration in memory")]
    NoFile,
}

/// Reads `path` and applies it ([`apply`]).
pub(crate) fn from_file(shared: &Shared, path: &Path) -> Result<ReloadReport, ReloadError> {
    apply(shared, Config::load(path)?)
}

/// Applies `new` as the module doc says: all or nothing.
pub(crate) fn apply(shared: &Shared, new: Config) -> Result<ReloadReport, ReloadError> {
    let old = shared.config();
    // The password file given in memory stays; one named by the file is read again.
    let passwords = match &new.auth.password_file {
        Some(path) if !shared.passwords_in_memory => Some(Some(Arc::new(PasswordFile::load(path)?))),
        Some(_) => None,
        None if shared.passwords_in_memory => None,
        None => Some(None),
    };
    match (&passwords, shared.passwords_in_memory) {
        (_, true) => new.validate_with_passwords_in_memory()?,
        _ => new.validate()?,
    }
    let hba = new.auth.hba_file.as_deref().map(crate::hba::HbaRules::load).transpose()?.map(Arc::new);
    crate::route::check_patterns(&new.routing).map_err(|e| ReloadError::Routing(e.to_string()))?;
    let report = compare(&old, &new);
    let new = merged(&old, new);
    // Everything that can fail has been loaded; the last one swaps itself in.
    shared.tls.reload(&new)?;
    shared.router.reconfigure(&new).map_err(|e| ReloadError::Routing(e.to_string()))?;
    shared.pools.reconfigure(new.pool.clone());
    if let Some(p) = passwords {
        // Pools open their next connections with the secrets read now.
        let users: std::collections::BTreeSet<String> =
            shared.pools.all().iter().map(|pool| pool.key().user.clone()).collect();
        for user in users {
            // Secrets found elsewhere (auth_query, a client's SCRAM keys) stay.
            if let Some(secret) = p.as_ref().and_then(|p| p.get(&user)) {
                shared.pools.learn_secret(&user, Some(secret));
            }
        }
        shared.live_passwords.store(p);
    }
    shared.hba.store(hba);
    if let Some(aq) = &shared.auth_query {
        aq.forget_all();
    }
    // What needs a restart kept its old value above, so what the pooler
    // reports (SHOW CONFIG) is what is in force.
    shared.live_config.store(Arc::new(new));
    Ok(report)
}

/// `new`, with the settings that need a restart kept at their `old` value.
fn merged(old: &Config, mut new: Config) -> Config {
    let (o, n) = (&old.server, &mut new.server);
    n.listen.clone_from(&o.listen);
    n.listen_tcp = o.listen_tcp;
    n.unix_socket_dir.clone_from(&o.unix_socket_dir);
    n.unix_socket_mode = o.unix_socket_mode;
    n.max_client_connections = o.max_client_connections;
    n.max_message_size = o.max_message_size;
    n.worker_threads = o.worker_threads;
    // Weights apply; everything else about nodes is fixed.
    let weights: Vec<f64> = new.nodes.iter().map(|n| n.weight).collect();
    new.nodes.clone_from(&old.nodes);
    if weights.len() == new.nodes.len() {
        for (n, w) in new.nodes.iter_mut().zip(weights) {
            n.weight = w;
        }
    }
    new.health.clone_from(&old.health);
    new.failover.clone_from(&old.failover);
    new.server_tls.sslmode = old.server_tls.sslmode;
    new.metrics.listen.clone_from(&old.metrics.listen);
    let (o, n) = (&old.auth, &mut new.auth);
    n.auth_user.clone_from(&o.auth_user);
    n.auth_query.clone_from(&o.auth_query);
    n.auth_dbname.clone_from(&o.auth_dbname);
    n.auth_query_ttl = o.auth_query_ttl;
    n.auth_query_timeout = o.auth_query_timeout;
    new.routing.function_cache_ttl = old.routing.function_cache_ttl;
    new
}

/// Which settings differ, sorted into those a reload applies and those
/// that need a restart.
fn compare(old: &Config, new: &Config) -> ReloadReport {
    let mut r = ReloadReport::default();
    macro_rules! fields {
        ($list:ident, $section:literal, $o:expr, $n:expr, [$($field:ident),* $(,)?]) => {
            $(if $o.$field != $n.$field {
                r.$list.push(format!(concat!($section, ".", stringify!($field))));
            })*
        };
    }
    fields!(
        needs_restart,
        "server",
        old.server,
        new.server,
        [
            listen,
            listen_tcp,
            unix_socket_dir,
            unix_socket_mode,
            max_client_connections,
            max_message_size,
            worker_threads,
        ]
    );
    fields!(
        applied,
        "server",
        old.server,
        new.server,
        [client_login_timeout, shutdown_timeout, log_connections, log_statements,]
    );
    fields!(
        applied,
        "pool",
        old.pool,
        new.pool,
        [
            mode,
            size,
            connect_timeout,
            checkout_timeout,
            server_lifetime,
            server_idle_timeout,
            reset_query_list,
            min_size,
            reserve_size,
            reserve_timeout,
            client_idle_timeout,
            idle_transaction_timeout,
            response_timeout,
            tcp_user_timeout,
            check_delay,
            check_query,
            prepared_statement_cache_size,
            track_extra_parameters,
            databases,
            users,
        ]
    );
    fields!(
        applied,
        "routing",
        old.routing,
        new.routing,
        [
            load_balance,
            policy,
            disable_load_balance_on_write,
            statement_level_load_balance,
            write_functions,
            read_only_functions,
            primary_patterns,
            read_your_writes,
            database_preference,
            application_preference,
            failed_node_retry,
            prefer_lowest_lag,
            function_volatility,
        ]
    );
    fields!(needs_restart, "routing", old.routing, new.routing, [function_cache_ttl]);
    fields!(applied, "auth", old.auth, new.auth, [method, password_file, hba_file]);
    fields!(
        needs_restart,
        "auth",
        old.auth,
        new.auth,
        [auth_user, auth_query, auth_dbname, auth_query_ttl, auth_query_timeout,]
    );
    fields!(
        applied,
        "client_tls",
        old.client_tls,
        new.client_tls,
        [sslmode, cert_file, key_file, ca_file, min_protocol]
    );
    fields!(applied, "server_tls", old.server_tls, new.server_tls, [ca_file, cert_file, key_file, min_protocol]);
    fields!(needs_restart, "server_tls", old.server_tls, new.server_tls, [sslmode]);
    fields!(applied, "admin", old.admin, new.admin, [admin_users, stats_users]);
    fields!(applied, "metrics", old.metrics, new.metrics, [durations]);
    fields!(needs_restart, "metrics", old.metrics, new.metrics, [listen]);
    fields!(
        needs_restart,
        "health",
        old.health,
        new.health,
        [
            period,
            timeout,
            user,
            database,
            lag_threshold_bytes,
            lag_threshold,
            max_retries,
            retry_delay,
            connect_timeout,
        ]
    );
    fields!(
        needs_restart,
        "failover",
        old.failover,
        new.failover,
        [
            command,
            follow_primary_command,
            failback_command,
            command_timeout,
            failover_on_backend_error,
            auto_failback,
            search_primary_node_timeout,
            false_primary,
            prefer_sync_standbys,
        ]
    );
    if old.nodes.len() != new.nodes.len() {
        r.needs_restart.push(format!("nodes (from {} to {} nodes)", old.nodes.len(), new.nodes.len()));
    }
    for (i, (o, n)) in old.nodes.iter().zip(&new.nodes).enumerate() {
        if o.weight != n.weight {
            if old.nodes.len() == new.nodes.len() {
                r.applied.push(format!("nodes[{i}].weight"));
            } else {
                r.needs_restart.push(format!("nodes[{i}].weight"));
            }
        }
        for (what, differs) in [
            ("host", o.host != n.host),
            ("port", o.port != n.port),
            ("data_dir", o.data_dir != n.data_dir),
            ("application_name", o.application_name != n.application_name),
            ("sslmode", o.sslmode != n.sslmode),
        ] {
            if differs {
                r.needs_restart.push(format!("nodes[{i}].{what}"));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn two_nodes() -> Config {
        Config::with_nodes(vec![NodeConfig::new("127.0.0.1", 5432), NodeConfig::new("127.0.0.1", 5433)])
    }

    #[test]
    fn an_equal_configuration_changes_nothing() {
        let r = compare(&two_nodes(), &two_nodes());
        assert!(r.is_unchanged(), "{r}");
        assert_eq!(r.to_string(), "no setting changed");
    }

    #[test]
    fn live_settings_are_applied_and_fixed_ones_reported_as_needing_a_restart() {
        let old = two_nodes();
        let mut new = two_nodes();
        new.pool.size = 3;
        new.nodes[1].weight = 0.25;
        new.routing.write_functions.push("audit".into());
        new.server.listen = "127.0.0.1:7000".into();
        new.nodes[1].port = 6000;
        new.failover.command = "promote %m".into();
        let r = compare(&old, &new);
        assert_eq!(r.applied, ["pool.size", "routing.write_functions", "nodes[1].weight"]);
        assert_eq!(r.needs_restart, ["server.listen", "failover.command", "nodes[1].port"]);
        assert!(r.to_string().contains("need a restart"), "{r}");
        // What is in force afterwards keeps the fixed settings' old values.
        let m = merged(&old, new);
        assert_eq!((m.pool.size, m.nodes[1].weight), (3, 0.25));
        assert_eq!((m.server.listen.as_str(), m.nodes[1].port), (old.server.listen.as_str(), 5433));
        assert!(m.failover.command.is_empty());
    }

    #[test]
    fn a_different_node_count_needs_a_restart_and_keeps_the_old_nodes() {
        let old = two_nodes();
        let mut new = two_nodes();
        new.nodes.push(NodeConfig::new("127.0.0.1", 5434));
        new.nodes[0].weight = 2.0;
        let r = compare(&old, &new);
        assert!(r.applied.is_empty(), "{r}");
        assert_eq!(r.needs_restart, ["nodes (from 2 to 3 nodes)", "nodes[0].weight"]);
        let m = merged(&old, new);
        assert_eq!(m.nodes.len(), 2);
        assert_eq!(m.nodes[0].weight, 1.0);
    }
}
