//! Read/write routing settings (`[routing]`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration;

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
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
