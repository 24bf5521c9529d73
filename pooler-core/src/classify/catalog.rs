//! What the catalog says of functions on no list: a user function that is
//! `VOLATILE` in `pg_proc` may write, so a statement calling it goes to the
//! primary (as pgpool-II judges when no function list is set). Answers are
//! cached per database and function name for `routing.function_cache_ttl`,
//! forgotten early when a client changes functions through the pooler (see
//! [`is_function_ddl`]). No I/O here: the caller runs the lookup
//! ([`LOOKUP_SQL`]) and reports with [`FunctionCatalog::record`].

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::sql::{is, Lexer, Token};

/// How long a failed lookup waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the cache says of a statement's unlisted calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// None of them is a volatile user function.
    Read,
    /// One of them is: the statement may write.
    Write,
    /// Some are not known (yet): these names, to be looked up. Until then the
    /// statement counts as a write.
    Unknown(Vec<String>),
}

/// Cached volatility per (database, function name).
#[derive(Debug)]
pub(crate) struct FunctionCatalog {
    ttl: Duration,
    /// `database NUL name` -> (volatile user function, when learned).
    known: DashMap<String, (bool, Instant)>,
    /// `database NUL name` -> when a lookup was started (dedupes lookups).
    asked: DashMap<String, Instant>,
}

fn key(database: &str, name: &str) -> String {
    let mut k = String::with_capacity(database.len() + name.len() + 1);
    k.push_str(database);
    k.push('\0');
    k.push_str(name);
    k
}

impl FunctionCatalog {
    /// An empty cache whose answers last `ttl`.
    pub(crate) fn new(ttl: Duration) -> FunctionCatalog {
        FunctionCatalog { ttl, known: DashMap::new(), asked: DashMap::new() }
    }

    /// What is known of `names` (lowercased) in `database` at `now`.
    pub(crate) fn verdict(&self, database: &str, names: &[String], now: Instant) -> Verdict {
        let mut missing = Vec::new();
        for n in names {
            match self.known.get(&key(database, n)).map(|e| *e) {
                Some((true, at)) if now.duration_since(at) < self.ttl => return Verdict::Write,
                Some((false, at)) if now.duration_since(at) < self.ttl => {}
                _ => missing.push(n.clone()),
            }
        }
        if missing.is_empty() {
            Verdict::Read
        } else {
            Verdict::Unknown(missing)
        }
    }

    /// Of `names`, those no lookup is under way for (or one failed a while
    /// ago); they are marked as being looked up.
    pub(crate) fn start_lookup(&self, database: &str, names: &[String], now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            let k = key(database, n);
            let fresh = self.asked.get(&k).is_some_and(|at| now.duration_since(*at) < RETRY_AFTER);
            if !fresh {
                self.asked.insert(k, now);
                out.push(n.clone());
            }
        }
        out
    }

    /// The lookup of `asked` in `database` found `volatile` among them.
    pub(crate) fn record(&self, database: &str, asked: &[String], volatile: &[String], now: Instant) {
        for n in asked {
            let k = key(database, n);
            self.asked.remove(&k);
            self.known.insert(k, (volatile.contains(n), now));
        }
    }

    /// Forgets everything known of `database` (its functions changed).
    pub(crate) fn invalidate(&self, database: &str) {
        let prefix = key(database, "");
        self.known.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }

    /// Drops expired entries (so clients calling ever new names cannot make
    /// the cache grow without bound).
    pub(crate) fn prune(&self, now: Instant) {
        let ttl = self.ttl;
        self.known.retain(|_, (_, at)| now.duration_since(*at) < ttl);
        self.asked.retain(|_, at| now.duration_since(*at) < RETRY_AFTER);
    }
}

/// The lookup: of the names in `$1` (a text array of lowercased names),
/// those with a `VOLATILE` function outside `pg_catalog` and
/// `information_schema`, any schema, any overload (a name some schema makes
/// volatile counts as volatile: the search path is the session's), as one
/// row with the names joined by commas (NULL: none).
pub(crate) fn lookup_sql(names: &[String]) -> String {
    let mut sql = String::from(
        "SELECT string_agg(DISTINCT lower(p.proname), ',') FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.provolatile = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND lower(p.proname) = ANY (ARRAY[",
    );
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        crate::sql::push_literal(&mut sql, n);
    }
    sql.push_str("]::text[])");
    sql
}

/// Whether `sql` creates, replaces, alters or drops a function, procedure
/// or extension (after which what the cache knows of its database is stale).
pub(crate) fn is_function_ddl(sql: &[u8]) -> bool {
    let mut words = Lexer::new(sql).filter_map(|t| match t {
        Token::Word(w) => Some(w),
        _ => None,
    });
    let Some(first) = words.next() else { return false };
    if !(is(first, "create") || is(first, "alter") || is(first, "drop")) {
        return false;
    }
    words.take(5).any(|w| is(w, "function") || is(w, "procedure") || is(w, "extension") || is(w, "routine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_names_are_looked_up_once_then_known_until_they_expire() {
        let c = FunctionCatalog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let asked = names(&["f", "g"]);
        assert_eq!(c.verdict("db", &asked, t0), Verdict::Unknown(asked.clone()));
        assert_eq!(c.start_lookup("db", &asked, t0), asked);
        assert!(c.start_lookup("db", &asked, t0).is_empty(), "one lookup at a time");
        c.record("db", &asked, &names(&["g"]), t0);
        assert_eq!(c.verdict("db", &names(&["f"]), t0), Verdict::Read);
        assert_eq!(c.verdict("db", &asked, t0), Verdict::Write);
        assert_eq!(c.verdict("other", &names(&["f"]), t0), Verdict::Unknown(names(&["f"])), "per database");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(c.verdict("db", &names(&["f"]), later), Verdict::Unknown(names(&["f"])));
        c.prune(later);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_failed_lookup_is_tried_again_after_a_while() {
        let c = FunctionCatalog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let asked = names(&["f"]);
        assert_eq!(c.start_lookup("db", &asked, t0), asked);
        assert!(c.start_lookup("db", &asked, t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(c.start_lookup("db", &asked, t0 + Duration::from_secs(6)), asked);
    }

    #[test]
    fn function_ddl_forgets_the_database() {
        let c = FunctionCatalog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        c.record("db", &names(&["f"]), &[], t0);
        c.record("db2", &names(&["f"]), &[], t0);
        assert!(is_function_ddl(b"CREATE OR REPLACE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql"));
        assert!(is_function_ddl(b"alter function f() volatile"));
        assert!(is_function_ddl(b"DROP PROCEDURE p"));
        assert!(is_function_ddl(b"create extension pgcrypto"));
        assert!(!is_function_ddl(b"SELECT 'create function'"));
        assert!(!is_function_ddl(b"INSERT INTO t VALUES (1)"));
        c.invalidate("db");
        assert_eq!(c.verdict("db", &names(&["f"]), t0), Verdict::Unknown(names(&["f"])));
        assert_eq!(c.verdict("db2", &names(&["f"]), t0), Verdict::Read);
    }

    #[test]
    fn the_lookup_quotes_every_name() {
        let sql = lookup_sql(&names(&["adv_write", "it's"]));
        assert!(sql.contains("ARRAY[E'adv_write',E'it''s']::text[]"), "{sql}");
    }
}
