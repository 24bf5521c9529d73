//! Helpers of the admin console's end-to-end tests: psql and tokio-postgres
//! on the console, and pgbouncer's column lists to check views against.
#![allow(dead_code)]

use pooler_testkit::Cluster;

/// pgbouncer's columns (1.24 / 1.25), in order, for the views that share them.
pub const PGBOUNCER_COLUMNS: &[(&str, &[&str])] = &[
    (
        "POOLS",
        &[
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "load_balance_hosts",
        ],
    ),
    ("CLIENTS", CONNECTION),
    ("SERVERS", CONNECTION),
    (
        "STATS",
        &[
            "database",
            "total_xact_count",
            "total_query_count",
            "total_server_assignment_count",
            "total_received",
            "total_sent",
            "total_xact_time",
            "total_query_time",
            "total_wait_time",
            "total_client_parse_count",
            "total_server_parse_count",
            "total_bind_count",
            "avg_xact_count",
            "avg_query_count",
            "avg_server_assignment_count",
            "avg_recv",
            "avg_sent",
            "avg_xact_time",
            "avg_query_time",
            "avg_wait_time",
            "avg_client_parse_count",
            "avg_server_parse_count",
            "avg_bind_count",
        ],
    ),
    ("STATS_TOTALS", STATS_FIGURES),
    ("STATS_AVERAGES", STATS_FIGURES),
    (
        "DATABASES",
        &[
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_size",
            "min_pool_size",
            "reserve_pool_size",
            "server_lifetime",
            "pool_mode",
            "load_balance_hosts",
            "max_connections",
            "current_connections",
            "max_client_connections",
            "current_client_connections",
            "paused",
            "disabled",
        ],
    ),
    (
        "USERS",
        &[
            "name",
            "pool_size",
            "reserve_pool_size",
            "pool_mode",
            "max_user_connections",
            "current_connections",
            "max_user_client_connections",
            "current_client_connections",
        ],
    ),
    ("CONFIG", &["key", "value", "default", "changeable"]),
    ("LISTS", &["list", "items"]),
    ("MEM", &["name", "size", "used", "free", "memtotal"]),
    ("VERSION", &["version"]),
    ("STATE", &["key", "value"]),
];

const CONNECTION: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

const STATS_FIGURES: &[&str] = &[
    "database",
    "xact_count",
    "query_count",
    "server_assignment_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];

/// Our own views: (command, first columns).
pub const OWN_VIEWS: &[(&str, &[&str])] = &[
    ("HELP", &["help"]),
    ("PREPARED_STATEMENTS", &["name", "query"]),
    ("NODES", &["node", "host", "port", "status", "role"]),
    ("pool_nodes", &["node_id", "hostname", "port", "status", "pg_status", "lb_weight", "role"]),
    ("pool_processes", &["pool_pid", "start_time", "database", "username"]),
    ("HA", &["key", "value"]),
    ("HA_VIEWS", &["pooler", "node", "host", "port", "seen"]),
];

/// What psql printed for `sql` on the console as `user`: the header's
/// column names and the rows, fields split at tabs; `Err(stderr)` on failure.
pub fn console_psql(
    cluster: &Cluster,
    port: u16,
    user: &str,
    sql: &str,
) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let port = port.to_string();
    let out = crate::common::run_client(
        cluster,
        "psql",
        &[
            "-X",
            "-A",
            "-F",
            "\t",
            "-P",
            "footer=off",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            user,
            "-d",
            "pooler",
            "-c",
            sql,
        ],
        None,
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().split('\t').map(str::to_owned).collect();
    let rows = lines.map(|l| l.split('\t').map(str::to_owned).collect()).collect();
    Ok((header, rows))
}

/// The value of `column` in each row.
pub fn column(header: &[String], rows: &[Vec<String>], column: &str) -> Vec<String> {
    let i = header.iter().position(|h| h == column).unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    rows.iter().map(|r| r[i].clone()).collect()
}
