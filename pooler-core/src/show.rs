//! `SHOW pool_nodes` on a normal client connection, with pgpool-II 4.3's
//! columns, so pgpool tutorials' and monitoring scripts' commands work
//! unchanged. The pooler answers it by rewriting the Query into a `SELECT`
//! over a `VALUES` list built from the latest cluster snapshot; the server the
//! session is on runs it, so the answer arrives in order with everything else
//! the client sent, as ordinary rows (every column text, as pgpool's).

use bytes::{BufMut, BytesMut};

use crate::route::NodeStats;
use crate::sql::{is, Lexer, Token};
use crate::topology::Snapshot;

/// The columns, in pgpool 4.3's order.
const COLUMNS: &str = "node_id, hostname, port, status, pg_status, lb_weight, role, pg_role, select_cnt, \
     load_balance_node, replication_delay, replication_state, replication_sync_state, last_status_change";

/// True when `sql` (a Query's text) is `SHOW pool_nodes`, any case, comments
/// and one trailing semicolon allowed.
pub(crate) fn is_show_pool_nodes(sql: &[u8]) -> bool {
    let mut tokens = Lexer::new(sql);
    matches!(tokens.next(), Some(Token::Word(w)) if is(w, "show"))
        && matches!(tokens.next(), Some(Token::Word(w)) if is(w, "pool_nodes"))
        && matches!(tokens.next(), None | Some(Token::Semicolon))
        && tokens.next().is_none()
}

/// The `SELECT` that answers `SHOW pool_nodes`: one row per node.
/// `load_balance_node` is true for `lb_node`, the node this session reads
/// from now; `by_time` prints the delay in seconds (when the lag threshold is
/// by time, as pgpool does) instead of bytes.
pub(crate) fn pool_nodes_sql(snapshot: &Snapshot, stats: &[NodeStats], lb_node: usize, by_time: bool) -> String {
    let total: f64 = snapshot.nodes.iter().map(|n| n.weight.max(0.0)).sum();
    let mut sql = String::with_capacity(256 + 256 * snapshot.nodes.len());
    sql.push_str("SELECT * FROM (VALUES ");
    for (i, n) in snapshot.nodes.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let weight = if total > 0.0 { n.weight.max(0.0) / total } else { 0.0 };
        let selects = stats.get(i).map(|s| s.reads).unwrap_or(0);
        let delay = if by_time { format!("{:.6} second", n.lag_time.as_secs_f64()) } else { n.lag_bytes.to_string() };
        let changed = n.last_status_change.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let fields = [
            n.id.to_string(),
            n.host.clone(),
            n.port.to_string(),
            n.status.as_str().to_owned(),
            if n.pg_up { "up" } else { "down" }.to_owned(),
            format!("{weight:.6}"),
            n.role.as_str().to_owned(),
            n.pg_role.as_str().to_owned(),
            selects.to_string(),
            (i == lb_node).to_string(),
            delay,
            n.replication_state.clone(),
            n.sync_state.clone(),
        ];
        sql.push('(');
        for f in &fields {
            crate::sql::push_literal(&mut sql, f);
            sql.push_str(", ");
        }
        // The server prints the time in the session's time zone, as pgpool does.
        sql.push_str(&format!("pg_catalog.to_char(pg_catalog.to_timestamp({changed}), 'YYYY-MM-DD HH24:MI:SS'))"));
    }
    sql.push_str(") AS pool_nodes(");
    sql.push_str(COLUMNS);
    sql.push_str(") ORDER BY node_id::int");
    sql
}

/// The Query message that answers `SHOW pool_nodes` for a session reading
/// from `lb_node`: rows from `snapshot` and the router's `stats`, the delay
/// in seconds when `health` judges lag by time.
pub(crate) fn rewrite(
    snapshot: &Snapshot,
    stats: &[NodeStats],
    health: &crate::config::HealthConfig,
    lb_node: usize,
) -> BytesMut {
    let by_time = health.lag_threshold_bytes == 0 && !health.lag_threshold.is_zero();
    query_frame(&pool_nodes_sql(snapshot, stats, lb_node, by_time))
}

/// A Query message carrying `sql`.
pub(crate) fn query_frame(sql: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(sql.len() + 6);
    out.put_u8(b'Q');
    out.put_u32((sql.len() + 5) as u32);
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NodeConfig};

    #[test]
    fn show_pool_nodes_is_recognised_in_any_case_and_nothing_else_is() {
        for yes in ["SHOW pool_nodes", "show POOL_NODES;", " /* x */ show pool_nodes ; ", "Show\n\tpool_nodes"] {
            assert!(is_show_pool_nodes(yes.as_bytes()), "{yes}");
        }
        for no in [
            "SHOW pool_node",
            "SHOW pool_nodes; SELECT 1",
            "SELECT 'show pool_nodes'",
            "SHOW",
            "",
            "show \"pool_nodes\"",
        ] {
            assert!(!is_show_pool_nodes(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn the_rewritten_query_lists_every_node_with_escaped_values() {
        let mut c = Config::with_nodes(vec![NodeConfig::new("db'0", 5432), NodeConfig::new("db1", 5433)]);
        c.nodes[1].weight = 3.0;
        let snap = Snapshot::initial(&c, std::time::SystemTime::now());
        let sql = pool_nodes_sql(&snap, &[], 1, false);
        assert!(sql.starts_with("SELECT * FROM (VALUES (E'0', E'db''0', E'5432', E'waiting', E'down', E'0.250000', E'primary', E'unknown', E'0', E'false', E'0', E'', E'', pg_catalog.to_char("), "{sql}");
        assert!(
            sql.contains(
                "(E'1', E'db1', E'5433', E'waiting', E'down', E'0.750000', E'unknown', E'unknown', E'0', E'true'"
            ),
            "{sql}"
        );
        assert!(sql.ends_with("last_status_change) ORDER BY node_id::int"));
        let frame = query_frame(&sql);
        assert_eq!(frame.len(), sql.len() + 6);
        assert_eq!(&frame[1..5], &((sql.len() + 5) as u32).to_be_bytes());
    }
}
