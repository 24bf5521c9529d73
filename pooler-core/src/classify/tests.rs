use super::*;

fn c(sql: &str) -> Classification {
    Classifier::default().classify(sql.as_bytes())
}

/// Reads: may go to a standby.
const READS: &[&str] = &[
    "SELECT 1",
    "select 1",
    "  SELECT * FROM t",
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "SELECT a, b FROM t WHERE x = 'INSERT INTO y' ORDER BY a",
    "SELECT $$ DELETE FROM t $$",
    "SELECT $tag$ UPDATE t SET a = 1 $tag$",
    "SELECT E'it\\'s; DELETE FROM t'",
    "SELECT 'a''b; UPDATE t'",
    "SELECT \"col\" FROM \"Table\"",
    "/* DELETE */ SELECT 1",
    "-- UPDATE t\nSELECT 1",
    "SELECT 1 /* nested /* INSERT */ still */",
    "VALUES (1), (2)",
    "TABLE t",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "SHOW search_path",
    "show all",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN INSERT INTO t VALUES (1)",
    "EXPLAIN ANALYZE SELECT * FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t",
    "SELECT count(*) FROM t",
    "SELECT lower(name), upper(name) FROM users",
    "SELECT now()",
    "SELECT pg_is_in_recovery()",
    "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
    "SELECT 1; SELECT 2",
    "SELECT 'nextval(''s'')'",
    "SELECT \"nextval_count\" FROM stats",
    "SELECT my_nextval_wrapper FROM t",
    "SELECT x FROM t FOR",
    "COPY t TO STDOUT",
    "COPY (SELECT a FROM t) TO STDOUT WITH (FORMAT csv)",
    "copy t (a, b) to stdout",
    "SELECT 1;",
    "SELECT 1;;",
    "SELECT pg_last_wal_replay_lsn()",
    "SELECT * FROM generate_series(1, 10)",
    "SELECT a FROM t LIMIT 1 OFFSET 2",
    "select * from t where name like 'for update%'",
    "SELECT * FROM t -- FOR UPDATE",
    "SELECT current_setting('search_path')",
    "SELECT pg_advisory_unlock_all_count FROM t",
    "SELECT version()",
    "SELECT 1 AS \"insert\"",
    "SELECT e'\\\\' || 'x'",
    "SELECT U&'d\\0061t\\+000061'",
    "SELECT $1::int + $2::int",
];

/// Writes, and anything that needs the primary.
const WRITES: &[&str] = &[
    "INSERT INTO t VALUES (1)",
    "insert into t select * from u",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "TRUNCATE t",
    "CREATE TABLE t (a int)",
    "CREATE TEMP TABLE t (a int)",
    "DROP TABLE t",
    "ALTER TABLE t ADD COLUMN b int",
    "CREATE INDEX ON t (a)",
    "GRANT SELECT ON t TO bob",
    "REVOKE ALL ON t FROM bob",
    "CALL my_procedure()",
    "DO $$ BEGIN PERFORM 1; END $$",
    "LOCK TABLE t",
    "VACUUM t",
    "ANALYZE t",
    "CLUSTER t",
    "REINDEX TABLE t",
    "CHECKPOINT",
    "NOTIFY chan, 'x'",
    "COMMENT ON TABLE t IS 'x'",
    "REFRESH MATERIALIZED VIEW v",
    "EXECUTE q(1)",
    "FETCH 10 FROM c",
    "DECLARE c CURSOR FOR SELECT 1",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR KEY SHARE",
    "select * from t for update skip locked",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE OF t NOWAIT",
    "SELECT * INTO new_t FROM t",
    "SELECT a, b INTO TEMP t2 FROM t",
    // Found by the property test: SELECT INTO after WITH.
    "WITH x AS (SELECT 1 AS a) SELECT a INTO t3 FROM x",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x",
    "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "SELECT nextval('s')",
    "SELECT NEXTVAL('s')",
    "SELECT NextVal('s')",
    "SELECT pg_catalog.nextval('s')",
    "SELECT \"nextval\"('s')",
    "SELECT pg_catalog.\"nextval\"('s')",
    "SELECT nextval ('s')",
    "SELECT nextval/* comment */('s')",
    "SELECT 1 + nextval('s') * 2",
    "SELECT coalesce(nextval('s'), 0)",
    "SELECT * FROM t WHERE id = currval('s')",
    "SELECT setval('s', 10)",
    "SELECT lastval()",
    "SELECT a FROM t WHERE b IN (SELECT nextval('s'))",
    "VALUES (nextval('s'))",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_current_wal_lsn()",
    "SELECT pg_switch_wal()",
    "SELECT lo_create(0)",
    "SELECT lo_import('/tmp/x')",
    "SELECT lo_unlink(123)",
    "SELECT pg_notify('chan', 'x')",
    "SELECT pg_create_physical_replication_slot('s')",
    "SELECT pg_drop_replication_slot('s')",
    "SELECT set_config('search_path', 'x', false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT setseed(0.5)",
    "SELECT pg_export_snapshot()",
    "SELECT pg_reload_conf()",
    "SELECT pg_stat_reset()",
    "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN (ANALYZE) UPDATE t SET a = 1",
    "EXPLAIN ANALYZE SELECT nextval('s')",
    "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE",
    "EXPLAIN ANALYZE EXECUTE q",
    "COPY t FROM STDIN",
    "copy t (a, b) from stdin with (format csv)",
    "COPY t FROM '/tmp/file'",
    "COPY (SELECT nextval('s')) TO STDOUT",
    // Found by the property test.
    "COPY INTO TO STDOUT",
    "COPY (SELECT * FROM t FOR UPDATE) TO STDOUT",
    "SELECT 1; INSERT INTO t VALUES (1)",
    "INSERT INTO t VALUES (1); SELECT 1",
    "SELECT 1; COMMIT",
    "/* pooler: primary */ SELECT 1",
    "/*NO LOAD BALANCE*/ SELECT * FROM t",
    "-- pooler: primary\nSELECT 1",
    "SELECT 1 /* pooler:primary */",
    "PREPARE TRANSACTION 'x'",
    "COMMIT PREPARED 'x'",
    "ROLLBACK PREPARED 'x'",
    "SECURITY LABEL ON TABLE t IS 'x'",
    "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
    "",
    "   ",
    ";",
    "-- only a comment",
    "'just a literal'",
    "FROBNICATE everything",
    "SELECT (SELECT nextval('s'))",
    "SELECT x FROM t WHERE y = ANY(ARRAY[nextval('s')])",
    "WITH a AS (SELECT 1), b AS (MERGE INTO t USING a ON true WHEN NOT MATCHED THEN INSERT VALUES (1)) SELECT 1",
];

/// Read-only, though a write keyword stands where an identifier may: the
/// fast path is unsure, the SQL parser decides.
const PARSED_READS: &[&str] = &[
    "SELECT * FROM update",
    "SELECT delete FROM t",
    "SELECT insert, update FROM log",
    "WITH x AS (SELECT update FROM t) SELECT * FROM x",
    "SELECT merge FROM t UNION SELECT 1",
];

/// Unsure on the fast path and still writes after parsing.
const PARSED_WRITES: &[&str] = &[
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "WITH x AS (SELECT update FROM t), y AS (INSERT INTO u VALUES (1) RETURNING 1) SELECT 1",
    "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x",
    "SELECT update FROM t FOR UPDATE",
    "SELECT update INTO u FROM t",
    "SELECT update FROM t; SELECT 1",
];

#[test]
fn the_parser_decides_what_the_fast_path_cannot() {
    for sql in PARSED_READS {
        let got = c(sql);
        assert!(got.is_read_only() && got.flags.contains(Flags::PARSED), "{sql:?} -> {got:?}");
    }
    for sql in PARSED_WRITES {
        let got = c(sql);
        assert!(got.needs_primary(), "{sql:?} -> {got:?}");
    }
    // Nothing the fast path decides alone reaches the parser.
    for sql in READS.iter().chain(WRITES) {
        assert!(!c(sql).flags.contains(Flags::PARSED), "{sql:?}");
    }
}

#[test]
fn reads_are_read_only() {
    for sql in READS {
        let got = c(sql);
        assert!(got.is_read_only(), "{sql:?} should be a read, got {got:?}");
        assert!(!got.needs_primary(), "{sql:?}");
    }
}

#[test]
fn writes_need_the_primary() {
    for sql in WRITES {
        let got = c(sql);
        assert!(!got.is_read_only(), "{sql:?} must not be a read, got {got:?}");
        assert!(got.needs_primary(), "{sql:?} needs the primary, got {got:?}");
    }
}

#[test]
fn flags_say_why() {
    assert!(c("SELECT nextval('s')").flags.contains(Flags::WRITE_FUNCTION));
    assert!(c("SELECT * FROM t FOR UPDATE").flags.contains(Flags::ROW_LOCK));
    assert!(!c("SELECT * FROM t FOR UPDATE").flags.contains(Flags::MODIFYING_CTE));
    assert!(c("SELECT * INTO x FROM t").flags.contains(Flags::SELECT_INTO));
    assert!(c("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x").flags.contains(Flags::MODIFYING_CTE));
    assert!(c("SELECT 1; SELECT 2").flags.contains(Flags::MULTI_STATEMENT));
    assert!(c("/* pooler: primary */ SELECT 1").flags.contains(Flags::HINT_PRIMARY));
    assert!(c("EXPLAIN ANALYZE SELECT 1").flags.contains(Flags::EXPLAIN_ANALYZE));
    assert!(c("SELECT pg_advisory_lock(1)").flags.contains(Flags::SESSION_FUNCTION));
    assert!(c("SELECT 1").flags.is_empty());
}

#[test]
fn transaction_control_is_recognised() {
    assert_eq!(c("BEGIN").kind, Kind::Begin { read_only: false });
    assert_eq!(c("begin transaction").kind, Kind::Begin { read_only: false });
    assert_eq!(c("BEGIN READ ONLY").kind, Kind::Begin { read_only: true });
    assert_eq!(c("START TRANSACTION READ ONLY").kind, Kind::Begin { read_only: true });
    assert_eq!(c("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").kind, Kind::Begin { read_only: true });
    assert_eq!(c("BEGIN ISOLATION LEVEL READ COMMITTED").kind, Kind::Begin { read_only: false });
    assert_eq!(c("BEGIN READ WRITE").kind, Kind::Begin { read_only: false });
    assert_eq!(c("START TRANSACTION").kind, Kind::Begin { read_only: false });
    assert_eq!(c("COMMIT").kind, Kind::Commit);
    assert_eq!(c("END").kind, Kind::Commit);
    assert_eq!(c("commit and chain").kind, Kind::Commit);
    assert_eq!(c("ROLLBACK").kind, Kind::Rollback);
    assert_eq!(c("ABORT").kind, Kind::Rollback);
    assert_eq!(c("ROLLBACK TO SAVEPOINT a").kind, Kind::TransactionOther { read_only: false });
    assert_eq!(c("ROLLBACK TO a").kind, Kind::TransactionOther { read_only: false });
    assert_eq!(c("SAVEPOINT a").kind, Kind::TransactionOther { read_only: false });
    assert_eq!(c("RELEASE SAVEPOINT a").kind, Kind::TransactionOther { read_only: false });
    assert_eq!(c("SET TRANSACTION READ ONLY").kind, Kind::TransactionOther { read_only: true });
    assert_eq!(c("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").kind, Kind::TransactionOther { read_only: false });
}

#[test]
fn session_commands_are_recognised() {
    for sql in [
        "SET search_path TO a",
        "set work_mem = '4MB'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "RESET ALL",
        "DISCARD ALL",
        "LISTEN chan",
        "UNLISTEN *",
        "PREPARE q AS SELECT 1",
        "DEALLOCATE q",
        "LOAD 'auto_explain'",
    ] {
        assert_eq!(c(sql).kind, Kind::Session, "{sql}");
    }
    // A session command mixed with anything goes to the primary as a whole.
    assert_eq!(c("SET a = 1; SELECT 1").kind, Kind::Write);
}

#[test]
fn user_write_functions_names_and_patterns() {
    let cl = Classifier::new(&ClassifierLists {
        write_functions: vec!["audit_log".into(), "billing.charge".into(), "^upsert_.*".into()],
        ..Default::default()
    })
    .unwrap();
    let w = |s: &str| !cl.classify(s.as_bytes()).is_read_only();
    assert!(w("SELECT audit_log('x')"));
    assert!(w("SELECT public.AUDIT_LOG('x')"));
    assert!(w("SELECT billing.charge(1)"));
    assert!(!w("SELECT other.charge(1)"), "a qualified entry matches its schema only");
    assert!(w("SELECT upsert_user(1)"));
    assert!(w("SELECT nextval('s')"), "built-ins stay");
    assert!(!w("SELECT lower('x')"));
    assert!(!w("SELECT my_upsert_user(1)"), "patterns are anchored");
}

#[test]
fn unlisted_calls_are_flagged_for_the_catalog_with_their_names() {
    let k = Classifier::default();
    for (sql, names) in [
        ("SELECT adv_write('a')", vec!["adv_write"]),
        ("select * from Public.Adv_Write('b')", vec!["adv_write"]),
        ("SELECT 1 WHERE \"Adv\"(x) > 0 AND f(g(1))", vec!["adv", "f", "g"]),
        ("SELECT f(1), f(2)", vec!["f"]),
    ] {
        let got = k.classify(sql.as_bytes());
        assert!(got.is_read_only() && got.flags.contains(Flags::UNLISTED_FUNCTION), "{sql}: {got:?}");
        assert_eq!(k.unlisted_calls(sql.as_bytes()), names, "{sql}");
    }
    // Syntax, known built-ins and listed functions are not the catalog's.
    for sql in ["SELECT count(*), coalesce(a, 1), now(), pg_sleep(1) FROM t WHERE x IN (1)", "SELECT nextval('s')"] {
        assert!(!k.classify(sql.as_bytes()).flags.contains(Flags::UNLISTED_FUNCTION), "{sql}");
        assert!(k.unlisted_calls(sql.as_bytes()).is_empty(), "{sql}");
    }
    let listed =
        Classifier::new(&ClassifierLists { write_functions: vec!["adv_write".into()], ..Default::default() }).unwrap();
    assert!(listed.unlisted_calls(b"SELECT adv_write(1), other(2)") == vec!["other".to_owned()]);
    let read_only =
        Classifier::new(&ClassifierLists { read_only_functions: vec!["f".into()], ..Default::default() }).unwrap();
    assert!(!read_only.asks_catalog(), "a read-only list decides alone");
    assert!(k.asks_catalog());
}

#[test]
fn read_only_function_list_makes_every_other_call_a_write() {
    let cl = Classifier::new(&ClassifierLists {
        read_only_functions: vec!["my_report".into(), "stats_.*".into()],
        ..Default::default()
    })
    .unwrap();
    let r = |s: &str| cl.classify(s.as_bytes()).is_read_only();
    assert!(r("SELECT my_report(1)"));
    assert!(r("SELECT stats_daily()"));
    assert!(r("SELECT count(*) FROM t WHERE a IN (1, 2)"));
    assert!(!r("SELECT unknown_function()"));
    assert!(!r("SELECT nextval('s')"));
}

#[test]
fn lists_are_validated() {
    let both = ClassifierLists {
        write_functions: vec!["a".into()],
        read_only_functions: vec!["b".into()],
        ..Default::default()
    };
    assert!(Classifier::new(&both).is_err());
    let bad = ClassifierLists { write_functions: vec!["(unclosed".into()], ..Default::default() };
    let e = Classifier::new(&bad).unwrap_err().to_string();
    assert!(e.contains("(unclosed") && e.contains("write_functions"), "{e}");
}

#[test]
fn primary_routing_patterns_send_matches_to_the_primary() {
    let cl = Classifier::new(&ClassifierLists {
        primary_patterns: vec![r"FROM\s+accounts".into(), r"^SELECT .* -- primary$".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(!cl.classify(b"SELECT * FROM accounts").is_read_only());
    assert!(!cl.classify(b"select * from   ACCOUNTS where id = 1").is_read_only());
    assert!(cl.classify(b"SELECT * FROM users").is_read_only());
    assert!(cl.classify(b"SELECT * FROM accounts").flags.contains(Flags::PATTERN));
}

#[test]
fn pgbench_statements() {
    let reads = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
        "select abalance from pgbench_accounts where aid = 42",
    ];
    for s in reads {
        assert!(c(s).is_read_only(), "{s}");
    }
    let writes = [
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
        "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
    ];
    for s in writes {
        assert!(c(s).needs_primary(), "{s}");
    }
}

#[test]
fn invalid_utf8_and_binary_junk_do_not_panic() {
    for s in
        [&b"\xff\xfe SELECT"[..], b"SELECT \x00 1", b"\"\xff", b"$\xff$ x $\xff$", b"E'\\", b"/*/*", b"(((((", b")))"]
    {
        let got = Classifier::default().classify(s);
        let _ = got.is_read_only();
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "SELECT",
        "select",
        "FROM",
        "t",
        "WHERE",
        "a",
        "=",
        "1",
        "(",
        ")",
        ",",
        ";",
        "WITH",
        "x",
        "AS",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "INTO",
        "FOR",
        "SHARE",
        "nextval",
        "'s'",
        "'DELETE'",
        "/* UPDATE */",
        "-- x\n",
        "$$ INSERT $$",
        "EXPLAIN",
        "ANALYZE",
        "VALUES",
        "TABLE",
        "SHOW",
        "COPY",
        "TO",
        "STDOUT",
        "\"q\"",
        ".",
        "pg_catalog",
        "count",
        "BEGIN",
        "COMMIT",
        "SET",
        "e'\\''",
        "'",
        "\"",
        "$1",
    ];

    fn sql() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(WORDS), 0..24).prop_map(|w| w.join(" "))
    }

    /// Words of `sql` outside comments, literals and quoted identifiers.
    fn bare_words(sql: &str) -> Vec<String> {
        crate::sql::Lexer::new(sql.as_bytes())
            .filter_map(|t| match t {
                Token::Word(w) => Some(String::from_utf8_lossy(w).to_ascii_lowercase()),
                Token::Semicolon => Some(";".into()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Classifier::default().classify(&bytes);
        }

        /// A write keyword outside comments and literals never yields a read,
        /// unless the statement only plans it (EXPLAIN without ANALYZE).
        #[test]
        fn write_keywords_are_never_read_only(s in sql()) {
            let got = Classifier::default().classify(s.as_bytes());
            let words = bare_words(&s);
            let is_write = |w: &String| ["insert", "update", "delete", "merge", "into", "nextval"].contains(&w.as_str());
            if got.is_read_only() && !got.flags.contains(Flags::PARSED) {
                // Every statement with a write keyword only plans it (EXPLAIN
                // without ANALYZE) or shows a setting.
                for stmt in words.split(|w| w == ";") {
                    if stmt.iter().any(is_write) {
                        let planned = stmt.first().is_some_and(|w| w == "explain") && !stmt.iter().any(|w| w == "analyze");
                        let shown = stmt.first().is_some_and(|w| w == "show");
                        prop_assert!(planned || shown, "{s:?} -> {got:?}");
                    }
                }
            }
        }
    }
}
