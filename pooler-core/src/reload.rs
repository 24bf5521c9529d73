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
use crate::config::{Config, NodeConfig, NodePreference};
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
    counted(Config::load(path).map_err(ReloadError::from).and_then(|c| apply_whole(shared, c)))
}

/// Applies `new` as the module doc says: all or nothing.
pub(crate) fn apply(shared: &Shared, new: Config) -> Result<ReloadReport, ReloadError> {
    counted(apply_whole(shared, new))
}

/// Counts a reload's outcome (`pooler_reloads_total`).
fn counted(r: Result<ReloadReport, ReloadError>) -> Result<ReloadReport, ReloadError> {
    let outcome = if r.is_ok() { "applied" } else { "failed" };
    metrics::counter!(crate::metrics::RELOADS, "outcome" => outcome).increment(1);
    r
}

fn apply_whole(shared: &Shared, new: Config) -> Result<ReloadReport, ReloadError> {
    // One reload at a time; the lock holds which node slots were removed.
    let mut removed = shared.removed_nodes.lock().unwrap_or_else(|e| e.into_inner());
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
    let mut report = compare(&old, &new);
    let plan = plan_nodes(&old.nodes, &removed, &new.nodes, shared.cluster.checked());
    report.applied.extend(plan.applied.iter().cloned());
    report.needs_restart.extend(plan.needs_restart.iter().cloned());
    let new = merged(&old, new, &plan);
    // Everything that can fail has been loaded; the last one swaps itself in.
    shared.tls.reload(&new)?;
    let nodes_changed = plan.changed;
    if nodes_changed {
        // New slots get their address; the others keep theirs (and their pools).
        let mut addrs = Vec::clone(&shared.node_addrs.load());
        for i in addrs.len()..new.nodes.len() {
            if let Some(a) = crate::backend::ServerAddr::of_node(&new, i, &shared.tls) {
                addrs.push(a);
            }
        }
        shared.node_addrs.store(Arc::new(addrs));
    }
    shared.router.reconfigure(&new).map_err(|e| ReloadError::Routing(e.to_string()))?;
    shared.pools.reconfigure(new.pool.clone());
    shared.memory.set_limit(new.server.max_memory);
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
    let new = Arc::new(new);
    shared.live_config.store(new.clone());
    if nodes_changed {
        *removed = plan.removed.clone();
        shared.cluster.reconfigure(new, plan.removed);
    }
    Ok(report)
}

/// `new`, with the settings that need a restart kept at their `old` value
/// and the node list as `plan` maps it onto the slots.
fn merged(old: &Config, mut new: Config, plan: &NodePlan) -> Config {
    let (o, n) = (&old.server, &mut new.server);
    n.listen.clone_from(&o.listen);
    n.listen_tcp = o.listen_tcp;
    n.unix_socket_dir.clone_from(&o.unix_socket_dir);
    n.unix_socket_mode = o.unix_socket_mode;
    n.max_client_connections = o.max_client_connections;
    n.max_message_size = o.max_message_size;
    n.worker_threads = o.worker_threads;
    new.nodes.clone_from(&plan.slots);
    // A preference for a node names it by its place in the file: now its slot.
    for p in new.routing.database_preference.values_mut().chain(new.routing.application_preference.values_mut()) {
        if let NodePreference::Node(j) = p {
            *j = plan.slot_of.get(*j).copied().unwrap_or(*j);
        }
    }
    new.health.clone_from(&old.health);
    new.failover.clone_from(&old.failover);
    new.coordination.clone_from(&old.coordination);
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
            unnamed_statement_cache,
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
    fields!(
        needs_restart,
        "coordination",
        old.coordination,
        new.coordination,
        [
            backend,
            endpoints,
            prefix,
            name,
            lease_ttl,
            quorum_wait,
            request_timeout,
            ca_file,
            cert_file,
            key_file,
            user,
            password_file,
            if_up_command,
            if_down_command,
            arping_command,
            command_timeout,
        ]
    );
    r
}

/// How a reloaded node list maps onto the node slots in force: a node
/// keeps its slot (its index, its pools) while its host and port stay in
/// the list; a new address gets a new slot at the end; a slot whose
/// address left the list is removed (never reused).
#[derive(Debug, Clone, Default, PartialEq)]
struct NodePlan {
    /// Every slot after the reload.
    slots: Vec<NodeConfig>,
    /// Per slot: removed.
    removed: Vec<bool>,
    /// Per node of the new file: its slot.
    slot_of: Vec<usize>,
    /// Anything about the nodes changed (the controller must hear of it).
    changed: bool,
    applied: Vec<String>,
    needs_restart: Vec<String>,
}

/// The [`NodePlan`] from `old` slots (`removed` as they are) to the nodes
/// of `new`. `checked`: the pooler runs health checks (it started with
/// more than one node); without them adding or removing needs a restart.
fn plan_nodes(old: &[NodeConfig], removed: &[bool], new: &[NodeConfig], checked: bool) -> NodePlan {
    let gone = |i: usize| removed.get(i).copied().unwrap_or(false);
    let mut plan = NodePlan { slots: old.to_vec(), removed: (0..old.len()).map(gone).collect(), ..NodePlan::default() };
    let mut kept = vec![false; old.len()];
    let mut added = Vec::new();
    for n in new {
        let found = (0..old.len()).find(|&i| !gone(i) && !kept[i] && old[i].host == n.host && old[i].port == n.port);
        match found {
            Some(i) => {
                kept[i] = true;
                plan.slot_of.push(i);
                let slot = &mut plan.slots[i];
                for (what, differs) in [
                    ("weight", slot.weight != n.weight),
                    ("data_dir", slot.data_dir != n.data_dir),
                    ("application_name", slot.application_name != n.application_name),
                ] {
                    if differs {
                        plan.applied.push(format!("nodes[{i}].{what}"));
                        plan.changed = true;
                    }
                }
                if slot.sslmode != n.sslmode {
                    plan.needs_restart.push(format!("nodes[{i}].sslmode"));
                }
                let sslmode = slot.sslmode;
                *slot = n.clone();
                slot.sslmode = sslmode;
            }
            None => {
                plan.slot_of.push(old.len() + added.len());
                added.push(n.clone());
            }
        }
    }
    let dropped: Vec<usize> = (0..old.len()).filter(|&i| !gone(i) && !kept[i]).collect();
    if added.is_empty() && dropped.is_empty() {
        return plan;
    }
    let total = old.len() + added.len();
    let refused = if !checked {
        Some("the pooler started with one node (no health checks run)".to_string())
    } else if total > crate::topology::MAX_NODE_SLOTS {
        Some(format!("a pooler gives out at most {} node indexes", crate::topology::MAX_NODE_SLOTS))
    } else if dropped.len() == (0..old.len()).filter(|&i| !gone(i)).count() && added.is_empty() {
        Some("no node would be left".to_string())
    } else {
        None
    };
    if let Some(why) = refused {
        plan.needs_restart.push(format!("nodes (added or removed: {why})"));
        // The kept nodes' changes still apply; the list stays as it is (a
        // preference for a node not added names no slot: the primary).
        return plan;
    }
    plan.changed = true;
    for i in dropped {
        plan.removed[i] = true;
        plan.applied.push(format!("nodes: node {i} ({}:{}) removed, its connections drain", old[i].host, old[i].port));
    }
    for (k, n) in added.into_iter().enumerate() {
        let i = old.len() + k;
        plan.applied.push(format!("nodes: node {i} ({}:{}) added", n.host, n.port));
        plan.slots.push(n);
        plan.removed.push(false);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> NodeConfig {
        NodeConfig::new("127.0.0.1", port)
    }

    fn two_nodes() -> Config {
        Config::with_nodes(vec![node(5432), node(5433)])
    }

    fn plan(old: &Config, new: &Config) -> NodePlan {
        plan_nodes(&old.nodes, &[], &new.nodes, true)
    }

    #[test]
    fn an_equal_configuration_changes_nothing() {
        let r = compare(&two_nodes(), &two_nodes());
        assert!(r.is_unchanged(), "{r}");
        assert_eq!(r.to_string(), "no setting changed");
        let p = plan(&two_nodes(), &two_nodes());
        assert!(!p.changed && p.applied.is_empty() && p.needs_restart.is_empty(), "{p:?}");
        assert_eq!(p.slot_of, [0, 1]);
    }

    #[test]
    fn live_settings_are_applied_and_fixed_ones_reported_as_needing_a_restart() {
        let old = two_nodes();
        let mut new = two_nodes();
        new.pool.size = 3;
        new.nodes[1].weight = 0.25;
        new.routing.write_functions.push("audit".into());
        new.server.listen = "127.0.0.1:7000".into();
        new.failover.command = "promote %m".into();
        let r = compare(&old, &new);
        assert_eq!(r.applied, ["pool.size", "routing.write_functions"]);
        assert_eq!(r.needs_restart, ["server.listen", "failover.command"]);
        assert!(r.to_string().contains("need a restart"), "{r}");
        let p = plan(&old, &new);
        assert_eq!(p.applied, ["nodes[1].weight"]);
        // What is in force afterwards keeps the fixed settings' old values.
        let m = merged(&old, new, &p);
        assert_eq!((m.pool.size, m.nodes[1].weight), (3, 0.25));
        assert_eq!(m.server.listen, old.server.listen);
        assert!(m.failover.command.is_empty());
    }

    #[test]
    fn nodes_keep_their_index_by_address_new_ones_come_last_and_gone_ones_are_removed_for_good() {
        let old = Config::with_nodes(vec![node(1), node(2), node(3)]);
        // Node 1 leaves, node 4 arrives, the others move in the file.
        let mut new = Config::with_nodes(vec![node(3), node(4), node(2)]);
        new.routing.database_preference.insert("reports".into(), NodePreference::Node(1));
        let p = plan(&old, &new);
        assert!(p.changed);
        assert_eq!(p.slot_of, [2, 3, 1]);
        assert_eq!(p.removed, [true, false, false, false]);
        assert_eq!(p.slots.iter().map(|n| n.port).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(
            p.applied,
            ["nodes: node 0 (127.0.0.1:1) removed, its connections drain", "nodes: node 3 (127.0.0.1:4) added"]
        );
        let m = merged(&old, new, &p);
        assert_eq!(m.routing.database_preference["reports"], NodePreference::Node(3), "the file's node 1 is slot 3");
        // A removed address that comes back gets a new slot.
        let again = Config::with_nodes(vec![node(1), node(2), node(3), node(4)]);
        let p2 = plan_nodes(&p.slots, &p.removed, &again.nodes, true);
        assert_eq!(p2.slot_of, [4, 1, 2, 3]);
        assert_eq!(p2.removed, [true, false, false, false, false]);
    }

    #[test]
    fn without_health_checks_or_past_the_slot_limit_the_node_list_needs_a_restart() {
        let one = Config::with_nodes(vec![node(1)]);
        let p = plan_nodes(&one.nodes, &[], &two_nodes().nodes, false);
        assert!(!p.changed && p.needs_restart[0].starts_with("nodes (added or removed"), "{p:?}");
        assert_eq!(p.slots.len(), 1);
        let many: Vec<NodeConfig> = (1..=crate::topology::MAX_NODE_SLOTS as u16 + 1).map(node).collect();
        let p = plan(&two_nodes(), &Config::with_nodes(many));
        assert!(!p.changed && !p.needs_restart.is_empty(), "{p:?}");
    }

    #[test]
    fn a_changed_sslmode_on_a_kept_node_needs_a_restart_and_keeps_the_old_one() {
        let old = two_nodes();
        let mut new = two_nodes();
        new.nodes[0].sslmode = Some(crate::config::ServerTlsMode::Require);
        let p = plan(&old, &new);
        assert_eq!(p.needs_restart, ["nodes[0].sslmode"]);
        assert_eq!(p.slots[0].sslmode, None);
    }
}
