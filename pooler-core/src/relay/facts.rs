//! What transaction pooling must know about a statement before it runs: does
//! it create session state that cannot move to another server connection
//! (pin), does it change parameters the pooler carries between connections,
//! does it drop prepared statements.
//!
//! A small lexer reads the SQL text once, skipping comments, string literals,
//! quoted identifiers and dollar-quoted bodies, so keywords inside them do not
//! count. It errs on the side of pinning: a false "pin" costs pooling
//! efficiency, a missed one would be silent wrong behaviour.

/// What one Query or Parse text does that matters to transaction pooling.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Session state that must stay on this server connection: why.
    pub(crate) pin: Option<&'static str>,
    /// `DISCARD ALL` or `DEALLOCATE [PREPARE] ALL`: every prepared statement
    /// on the connection goes.
    pub(crate) drops_all_statements: bool,
    /// `RESET ALL` or `DISCARD ALL`: every parameter returns to its default.
    pub(crate) resets_all_parameters: bool,
    /// Parameters set or reset by `SET` / `RESET` (lower case).
    pub(crate) parameters: Vec<String>,
    /// The whole text is `DEALLOCATE [PREPARE] name`: the name.
    pub(crate) deallocate: Option<Vec<u8>>,
    /// Names an identifier in the pooler's reserved namespace (`_pooler_...`):
    /// refused, so no client can run or drop another client's statement.
    pub(crate) reserved_name: bool,
}

impl Facts {
    /// The statement does nothing to session state the pooler follows.
    pub(crate) fn is_plain(&self) -> bool {
        self.pin.is_none()
            && !self.drops_all_statements
            && !self.resets_all_parameters
            && self.parameters.is_empty()
            && self.deallocate.is_none()
            && !self.reserved_name
    }
}

/// Prefix of the server-side names of pooled prepared statements.
pub(crate) const RESERVED_PREFIX: &[u8] = b"_pooler_";

/// True when a client-supplied name falls in the pooler's namespace.
pub(crate) fn is_reserved(name: &[u8]) -> bool {
    name.len() >= RESERVED_PREFIX.len() && name[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX)
}

/// Functions that take session-level advisory locks (held past the transaction).
const SESSION_LOCK_FUNCTIONS: &[&str] =
    &["pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"];

use crate::sql::{is, Lexer, Token};

/// Reads `sql` (a Query or Parse text).
pub(crate) fn analyze(sql: &[u8]) -> Facts {
    let mut facts = Facts::default();
    let mut statements = 0usize;
    // Words of the current statement (only the first few matter for most rules).
    let mut words: Vec<Token<'_>> = Vec::new();
    let mut finish = |words: &mut Vec<Token<'_>>, facts: &mut Facts| {
        if !words.is_empty() {
            statements += 1;
            statement(words, facts, statements);
            words.clear();
        }
    };
    for tok in Lexer::new(sql) {
        match tok {
            Token::Semicolon => finish(&mut words, &mut facts),
            Token::Word(w) | Token::Quoted(w) if is_reserved(w) => {
                facts.reserved_name = true;
                words.push(tok);
            }
            Token::Word(w) if SESSION_LOCK_FUNCTIONS.iter().any(|f| is(w, f)) => {
                facts.pin = Some("session-level advisory lock");
                words.push(tok);
            }
            t => words.push(t),
        }
    }
    finish(&mut words, &mut facts);
    if statements != 1 {
        facts.deallocate = None;
    }
    facts
}

fn word<'a>(words: &'a [Token<'a>], i: usize) -> Option<&'a [u8]> {
    match words.get(i) {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

fn statement(words: &[Token<'_>], facts: &mut Facts, nth: usize) {
    let w = |i| word(words, i);
    let Some(first) = w(0) else {
        return;
    };
    let kw = |i: usize, k: &str| w(i).is_some_and(|x| is(x, k));
    // WITH HOLD cursors outlive the transaction.
    let with_hold =
        words.windows(2).any(|p| matches!(p, [Token::Word(a), Token::Word(b)] if is(a, "with") && is(b, "hold")));
    if with_hold {
        facts.pin = Some("WITH HOLD cursor");
    }
    // Temporary objects: CREATE [GLOBAL|LOCAL] TEMP|TEMPORARY ..., SELECT ... INTO TEMP.
    let temp = words.windows(2).any(|p| {
        matches!(p, [Token::Word(a), Token::Word(b)]
            if (is(a, "into") || is(a, "create") || is(a, "global") || is(a, "local"))
                && (is(b, "temp") || is(b, "temporary")))
    });
    if temp {
        facts.pin = Some("temporary table");
    }
    if is(first, "listen") {
        facts.pin = Some("LISTEN");
    } else if is(first, "prepare") && !kw(1, "transaction") {
        facts.pin = Some("SQL PREPARE");
    } else if is(first, "load") {
        facts.pin = Some("LOAD");
    } else if is(first, "set") {
        let mut i = 1;
        if kw(1, "local") {
            return; // ends with the transaction
        }
        if kw(1, "session") {
            if kw(2, "authorization") {
                facts.pin = Some("SET SESSION AUTHORIZATION");
                return;
            }
            i = 2;
        }
        if kw(i, "role") {
            facts.pin = Some("SET ROLE");
            return;
        }
        if kw(i, "transaction") || kw(i, "constraints") || (i == 1 && kw(1, "characteristics")) {
            return;
        }
        if kw(i, "time") && kw(i + 1, "zone") {
            facts.parameters.push("timezone".into());
        } else if kw(i, "names") {
            facts.parameters.push("client_encoding".into());
        } else if kw(i, "schema") {
            facts.parameters.push("search_path".into());
        } else if let Some(name) = parameter_name(words, i) {
            facts.parameters.push(name);
        } else {
            facts.pin = Some("SET of a parameter the pooler cannot read");
        }
    } else if is(first, "reset") {
        if kw(1, "all") {
            facts.resets_all_parameters = true;
        } else if kw(1, "role") || (kw(1, "session") && kw(2, "authorization")) {
            // Back to the login role: nothing left to pin for.
        } else if kw(1, "time") && kw(2, "zone") {
            facts.parameters.push("timezone".into());
        } else if let Some(name) = parameter_name(words, 1) {
            facts.parameters.push(name);
        }
    } else if is(first, "discard") && kw(1, "all") {
        facts.drops_all_statements = true;
        facts.resets_all_parameters = true;
    } else if is(first, "deallocate") {
        let i = if kw(1, "prepare") { 2 } else { 1 };
        if kw(i, "all") {
            facts.drops_all_statements = true;
        } else if nth == 1 && words.len() == i + 1 {
            facts.deallocate = match &words[i] {
                Token::Word(n) => Some(n.to_ascii_lowercase()),
                Token::Quoted(n) => Some(n.to_vec()),
                _ => None,
            };
        }
    }
    // set_config(name, value, false) changes a parameter for the session with
    // a name the lexer cannot see (a literal or an expression).
    if words.iter().any(|t| matches!(t, Token::Word(x) if is(x, "set_config"))) {
        facts.pin = Some("set_config()");
    }
}

/// A possibly qualified parameter name (`work_mem`, `myapp.tenant`) at `i`.
fn parameter_name(words: &[Token<'_>], i: usize) -> Option<String> {
    let mut name = match words.get(i)? {
        Token::Word(w) => String::from_utf8_lossy(w).to_ascii_lowercase(),
        Token::Quoted(w) => String::from_utf8_lossy(w).into_owned(),
        _ => return None,
    };
    if let (Some(Token::Other(b'.')), Some(Token::Word(w))) = (words.get(i + 1), words.get(i + 2)) {
        name.push('.');
        name.push_str(&String::from_utf8_lossy(w).to_ascii_lowercase());
    }
    // PostgreSQL refuses a zero-length name; nothing to track.
    (!name.is_empty()).then_some(name)
}

/// True when `sql` mentions `name` anywhere (any case), even inside literals:
/// `set_config('search_path', ...)` or a function that sets it.
pub(crate) fn mentions(sql: &[u8], name: &str) -> bool {
    let n = name.as_bytes();
    !n.is_empty() && sql.len() >= n.len() && sql.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(sql: &str) -> Option<&'static str> {
        analyze(sql.as_bytes()).pin
    }

    #[test]
    fn session_features_pin() {
        assert_eq!(pin("LISTEN chan"), Some("LISTEN"));
        assert_eq!(pin("  listen \"Chan\";"), Some("LISTEN"));
        assert_eq!(pin("PREPARE q AS SELECT 1"), Some("SQL PREPARE"));
        assert_eq!(pin("select pg_advisory_lock(1)"), Some("session-level advisory lock"));
        assert_eq!(pin("SELECT pg_catalog.PG_TRY_ADVISORY_LOCK(1)"), Some("session-level advisory lock"));
        assert_eq!(pin("CREATE TEMP TABLE t (a int)"), Some("temporary table"));
        assert_eq!(pin("create global temporary table t (a int)"), Some("temporary table"));
        assert_eq!(pin("SELECT 1 INTO TEMP t"), Some("temporary table"));
        assert_eq!(pin("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), Some("WITH HOLD cursor"));
        assert_eq!(pin("SET ROLE admin"), Some("SET ROLE"));
        assert_eq!(pin("SET SESSION AUTHORIZATION bob"), Some("SET SESSION AUTHORIZATION"));
        assert_eq!(pin("SELECT set_config('x.y', '1', false)"), Some("set_config()"));
        assert_eq!(pin("BEGIN; SELECT 1; LISTEN x; COMMIT"), Some("LISTEN"));
    }

    #[test]
    fn transaction_scoped_features_do_not_pin() {
        assert_eq!(pin("SELECT pg_advisory_xact_lock(1)"), None);
        assert_eq!(pin("DECLARE c CURSOR FOR SELECT 1"), None);
        assert_eq!(pin("SELECT temp FROM weather"), None);
        assert_eq!(pin("SET LOCAL work_mem = '1MB'"), None);
        assert_eq!(pin("PREPARE TRANSACTION 'x'"), None);
        assert_eq!(pin("SELECT 'LISTEN x', $$ PREPARE $$, \"listen\" /* LISTEN */ -- LISTEN"), None);
        assert_eq!(pin("SELECT E'\\' LISTEN'"), None);
        assert_eq!(pin("SELECT $tag$ pg_advisory_lock(1) $tag$"), None);
        assert_eq!(pin("SELECT $1::int"), None);
    }

    #[test]
    fn keywords_hidden_in_comments_and_strings_do_not_count() {
        assert_eq!(pin("/* nested /* LISTEN */ still comment LISTEN */ SELECT 1"), None);
        assert_eq!(pin("SELECT 1 -- ; LISTEN x"), None);
        assert_eq!(pin("SELECT 'it''s; LISTEN x'"), None);
    }

    #[test]
    fn set_and_reset_name_the_parameters() {
        let f = analyze(b"SET search_path TO a, b; set Work_Mem = '4MB'; SET SESSION statement_timeout = 5");
        assert_eq!(f.parameters, vec!["search_path", "work_mem", "statement_timeout"]);
        assert_eq!(f.pin, None);
        assert_eq!(analyze(b"SET TIME ZONE 'UTC'").parameters, vec!["timezone"]);
        assert_eq!(analyze(b"SET myapp.tenant = 7").parameters, vec!["myapp.tenant"]);
        assert_eq!(analyze(b"RESET work_mem").parameters, vec!["work_mem"]);
        assert!(analyze(b"RESET ALL").resets_all_parameters);
        assert!(analyze(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").parameters.is_empty());
    }

    #[test]
    fn statement_dropping_commands_are_seen() {
        assert!(analyze(b"DISCARD ALL").drops_all_statements);
        assert!(analyze(b"deallocate all").drops_all_statements);
        assert!(analyze(b"DEALLOCATE PREPARE ALL").drops_all_statements);
        assert!(!analyze(b"DISCARD PLANS").drops_all_statements);
        assert_eq!(analyze(b"DEALLOCATE _pg3_1").deallocate, Some(b"_pg3_1".to_vec()));
        assert_eq!(analyze(b"DEALLOCATE PREPARE \"S 1\";").deallocate, Some(b"S 1".to_vec()));
        assert_eq!(analyze(b"DEALLOCATE Abc").deallocate, Some(b"abc".to_vec()));
        assert_eq!(analyze(b"DEALLOCATE a; SELECT 1").deallocate, None);
    }

    #[test]
    fn the_poolers_statement_names_are_reserved() {
        assert!(analyze(b"EXECUTE _pooler_1").reserved_name);
        assert!(analyze(b"deallocate \"_pooler_7\"").reserved_name);
        assert!(analyze(b"EXECUTE _POOLER_1").reserved_name);
        assert!(!analyze(b"SELECT '_pooler_1'").reserved_name);
        assert!(!analyze(b"EXECUTE my_pooler_1").reserved_name);
    }

    #[test]
    fn mentions_ignore_case() {
        assert!(mentions(b"select set_config('SEARCH_PATH', 'x', false)", "search_path"));
        assert!(!mentions(b"select 1", "search_path"));
        assert!(!mentions(b"", "search_path"));
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'", "\"", "$a$", "/*", "E'\\", "$", "--", "SET", "DEALLOCATE", "SET SESSION", "SET x."] {
            let _ = analyze(s.as_bytes());
        }
        // Found by the fuzzer: an empty quoted name is no parameter.
        assert!(analyze(b"SET \"\" = 1").parameters.is_empty());
    }
}
