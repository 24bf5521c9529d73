//! The servers (`[[nodes]]`) and how they are watched and failed over
//! (`[health]`, `[failover]`).

use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// Health checks and replication lag (`[health]`). They run while
/// `routing.load_balance` is on: a node that fails its check, or a standby
/// that lags past a threshold, leaves the read set until it is back.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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

/// Online recovery (`[recovery]`): what `RECOVER NODE n` runs to rebuild a
/// node as a standby of the current primary (pgpool's
/// `recovery_1st_stage_command` and `pcp_recovery_node`, in one command).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// The command, with the failover commands' placeholders: `%d`, `%h`,
    /// `%p`, `%D` the node to rebuild; `%m`, `%H`, `%r`, `%R` the current
    /// primary. Empty: `RECOVER NODE` is refused.
    pub command: String,
    /// Longest the command may run before it is killed (a base backup of a
    /// large database takes a while).
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
    /// After the command: how long the node has to answer as a standby
    /// whose WAL receiver streams, before the recovery counts as failed.
    #[serde(deserialize_with = "duration")]
    pub stream_timeout: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            command: String::new(),
            command_timeout: Duration::from_secs(600),
            stream_timeout: Duration::from_secs(60),
        }
    }
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

/// One PostgreSQL server (`[[nodes]]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Host name or IP address, or the directory of the node's Unix socket
    /// (a path starting with `/`, as libpq spells it).
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
    /// How to connect to this node; unset: `server_tls.sslmode`. A node
    /// reached through a socket directory never uses TLS.
    #[serde(default)]
    pub sslmode: Option<super::ServerTlsMode>,
}

impl NodeConfig {
    /// A node at `host:port` with weight 1 and nothing else set.
    pub fn new(host: impl Into<String>, port: u16) -> NodeConfig {
        NodeConfig { host: host.into(), port, weight: 1.0, data_dir: None, application_name: None, sslmode: None }
    }
}

fn default_port() -> u16 {
    5432
}

fn default_weight() -> f64 {
    1.0
}
