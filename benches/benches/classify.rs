//! Classifications per second: pgbench's statements, a realistic mixed set
//! (all decided by the fast path), and statements the SQL parser decides.
//! Run: `cargo bench -p pooler-benches --bench classify`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pooler_core::internals::{Classifier, Flags};
use std::hint::black_box;

/// What pgbench's built-in scripts send.
const PGBENCH: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;",
    "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
    "BEGIN;",
    "END;",
];

/// An application-like mix: ORM reads with joins, writes, transactions,
/// comments, literals, a sequence call, a CTE.
const MIXED: &[&str] = &[
    "SELECT u.id, u.name, u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = $1 ORDER BY o.created_at DESC LIMIT 20",
    "/* app:checkout */ SELECT p.id, p.price FROM products p WHERE p.sku IN ($1, $2, $3) AND p.active",
    "INSERT INTO orders (user_id, total, created_at) VALUES ($1, $2, now()) RETURNING id",
    "UPDATE users SET last_login = now() WHERE id = $1",
    "SELECT count(*) FROM sessions WHERE expires_at > now() AND user_id = $1",
    "BEGIN",
    "COMMIT",
    "SELECT nextval('orders_id_seq')",
    "WITH recent AS (SELECT * FROM events WHERE ts > now() - interval '1 hour') SELECT kind, count(*) FROM recent GROUP BY kind",
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority LIMIT 1 FOR UPDATE SKIP LOCKED",
    "SELECT name FROM settings WHERE key = 'it''s -- not a comment'",
    "SET application_name = 'worker-7'",
    "SHOW TimeZone",
    "DELETE FROM carts WHERE updated_at < now() - interval '30 days'",
    "SELECT $$ literal with ; and INSERT $$ AS body",
    "SELECT a.*, b.* FROM a LEFT JOIN LATERAL (SELECT * FROM b WHERE b.a_id = a.id LIMIT 3) b ON true",
];

/// Statements the fast path cannot decide (a write keyword where an
/// identifier may stand): the SQL parser decides them.
const FALLBACK: &[&str] = &[
    "SELECT update, insert FROM audit_columns WHERE id = $1",
    "WITH recent AS (SELECT delete FROM flags WHERE ts > now()) SELECT count(*) FROM recent",
    "WITH x AS (DELETE FROM queue WHERE id = $1 RETURNING *) SELECT * FROM x",
    "SELECT merge FROM t UNION ALL SELECT merge FROM u",
];

fn bench_classify(c: &mut Criterion) {
    let cl = Classifier::default();
    for (name, set) in [("pgbench", PGBENCH), ("mixed", MIXED), ("fallback", FALLBACK)] {
        let parsed = set.iter().filter(|s| cl.classify(s.as_bytes()).flags.contains(Flags::PARSED)).count();
        eprintln!("{name}: {parsed} of {} statements proven read-only by the SQL parser", set.len());
    }
    let mut g = c.benchmark_group("classify");
    for (name, set) in [("pgbench", PGBENCH), ("mixed", MIXED), ("fallback", FALLBACK)] {
        let bytes: usize = set.iter().map(|s| s.len()).sum();
        g.throughput(Throughput::Elements(set.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut reads = 0;
                for s in set {
                    reads += cl.classify(black_box(s.as_bytes())).is_read_only() as usize;
                }
                reads
            })
        });
        let _ = bytes;
    }
    g.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
