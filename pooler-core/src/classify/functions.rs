//! Built-in knowledge of PostgreSQL functions: which must run on the primary
//! (they write, need a transaction id, or fail during recovery), which change
//! session state, and which names followed by `(` are syntax, not calls.

use crate::sql::is;

/// Functions that must never run on a standby: sequence functions, functions
/// that write or need a transaction id, large objects, notifications, WAL and
/// replication-slot control, backups, statistics resets. Matched without
/// regard to case or schema.
pub const BUILTIN_PRIMARY_FUNCTIONS: &[&str] = &[
    // Sequences (pgpool's default write_function_list).
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Transaction ids: assign one (fails in recovery).
    "txid_current",
    "pg_current_xact_id",
    "txid_current_if_assigned",
    "pg_current_xact_id_if_assigned",
    // WAL positions and control (error during recovery).
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_promote",
    "pg_logical_emit_message",
    // Replication slots and origins.
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    "pg_replication_origin_session_reset",
    "pg_replication_origin_xact_setup",
    // Large objects that write.
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lowrite",
    "lo_write",
    "lo_truncate",
    "lo_truncate64",
    "lo_open",
    // Notifications (not allowed during recovery).
    "pg_notify",
    // Administration that belongs on the primary.
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "pg_import_system_collations",
    "pg_nextoid",
    "pg_sequence_last_value",
];

/// Functions that change session state or take locks that outlive the
/// statement: they must run where the session's other statements run (the
/// primary), and transaction pooling pins for the session-level ones.
const SESSION_FUNCTIONS: &[&str] = &[
    "set_config",
    "setseed",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_export_snapshot",
    "dblink_connect",
    "dblink_exec",
];

/// Keywords that take parentheses without being function calls, and common
/// built-in functions that only compute: under a read-only function list they
/// are not counted as unknown functions.
const NOT_CALLS: &[&str] = &[
    "in",
    "exists",
    "any",
    "all",
    "some",
    "values",
    "as",
    "over",
    "filter",
    "within",
    "using",
    "on",
    "array",
    "row",
    "cast",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "extract",
    "position",
    "substring",
    "overlay",
    "trim",
    "and",
    "or",
    "not",
    "when",
    "then",
    "else",
    "case",
    "from",
    "where",
    "select",
    "with",
    "lateral",
    "join",
    "into",
    "table",
    "by",
    "group",
    "having",
    "window",
    "rows",
    "range",
    "groups",
    "returning",
    "is",
    "like",
    "between",
    "interval",
    "numeric",
    "decimal",
    "varchar",
    "char",
    "character",
    "timestamp",
    "time",
    "bit",
    "float",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "now",
    "lower",
    "upper",
    "length",
    "abs",
    "round",
    "floor",
    "ceil",
    "date_trunc",
    "to_char",
    "concat",
    "unnest",
    "generate_series",
    "array_agg",
    "string_agg",
    "jsonb_build_object",
    "json_build_object",
    "row_number",
    "rank",
    "random",
    "md5",
    "left",
    "right",
    "replace",
    "split_part",
];

pub(super) fn is_primary_function(name: &[u8]) -> bool {
    BUILTIN_PRIMARY_FUNCTIONS.iter().any(|f| is(name, f))
}

pub(super) fn is_session_function(name: &[u8]) -> bool {
    SESSION_FUNCTIONS.iter().any(|f| is(name, f))
}

pub(super) fn is_syntax_call(name: &[u8]) -> bool {
    NOT_CALLS.iter().any(|f| is(name, f))
}
