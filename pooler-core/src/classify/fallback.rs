//! The slow path: PostgreSQL-dialect parsing (sqlparser) for the statements
//! the lexer cannot decide. It only ever turns an unsure "write" into a
//! "read", and only when the parse proves it: one statement, a query whose
//! every part (CTEs included, at any depth) is a plain SELECT, VALUES, TABLE or
//! set operation of those, with no row locks and no SELECT INTO. Function
//! calls were already judged by the fast path. Anything else, including any
//! parse error, stays a write.

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Longest text handed to the parser; longer unsure statements stay writes.
const MAX_PARSE: usize = 64 * 1024;

/// True when `sql` parses as exactly one read-only query.
pub(super) fn is_plain_query(sql: &[u8]) -> bool {
    if sql.len() > MAX_PARSE {
        return false;
    }
    let Ok(text) = std::str::from_utf8(sql) else {
        return false;
    };
    match Parser::parse_sql(&PostgreSqlDialect {}, text) {
        Ok(statements) => match statements.as_slice() {
            [Statement::Query(q)] => query_reads(q, 0),
            _ => false,
        },
        Err(_) => false,
    }
}

fn query_reads(q: &Query, depth: usize) -> bool {
    if depth > 32 || !q.locks.is_empty() {
        return false;
    }
    let ctes_read = q.with.as_ref().is_none_or(|w| w.cte_tables.iter().all(|c| query_reads(&c.query, depth + 1)));
    ctes_read && body_reads(&q.body, depth + 1)
}

fn body_reads(body: &SetExpr, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    match body {
        SetExpr::Select(s) => s.into.is_none(),
        SetExpr::Query(q) => query_reads(q, depth + 1),
        SetExpr::SetOperation { left, right, .. } => body_reads(left, depth + 1) && body_reads(right, depth + 1),
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        // INSERT, UPDATE, DELETE, MERGE and whatever a later version adds.
        _ => false,
    }
}
