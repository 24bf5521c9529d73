//! End-to-end: unnamed statements cached on server connections
//! (`pool.unnamed_statement_cache`) against a real PostgreSQL, with a
//! driver that sends unnamed statements (tokio-postgres `query_typed`:
//! Parse with no name, Bind, Describe, Execute, Sync).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pooler_core::config::PoolMode;
use pooler_core::Config;
use pooler_testkit::Cluster;
use tokio_postgres::types::Type;

fn txn_config(cluster: &Cluster, size: usize, cache: bool) -> Config {
    let mut c = trust_config(cluster);
    c.pool.mode = PoolMode::Transaction;
    c.pool.size = size;
    c.pool.unnamed_statement_cache = cache;
    c
}

/// The pooler's statements prepared on the server connection that runs this.
async fn pooler_statements(client: &tokio_postgres::Client) -> i64 {
    // A simple query: a prepared one would add a statement of its own.
    let rows = client
        .simple_query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_pooler\\_%'")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_statement_run_again_is_prepared_once_on_the_server_and_the_switch_turns_it_off() {
    let cluster = primary_only().await;
    for cache in [true, false] {
        let pooler = TestPooler::start(txn_config(&cluster, 1, cache), None).await;
        let a = pooler.connect("postgres").await;
        let b = pooler.connect("postgres").await;
        for i in 0..20i32 {
            let c = if i % 2 == 0 { &a } else { &b };
            let row = c.query_typed("SELECT $1::int4 * 2", &[(&i, Type::INT4)]).await.unwrap();
            assert_eq!(row[0].get::<_, i32>(0), i * 2);
        }
        // One server connection: both clients' runs used one statement there.
        assert_eq!(pooler_statements(&a).await, i64::from(cache), "cache = {cache}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_altered_under_load_never_shows_a_client_a_stale_plan() {
    let cluster = primary_only().await;
    cluster.primary().psql("postgres", "CREATE TABLE ddl_t (a int); INSERT INTO ddl_t VALUES (1)").unwrap();
    let pooler = TestPooler::start(txn_config(&cluster, 3, true), None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let client = pooler.connect("postgres").await;
        let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
        readers.push(tokio::spawn(async move {
            let mut last = String::new();
            while !stop.load(Ordering::Relaxed) {
                match client.query_typed("SELECT * FROM ddl_t", &[]).await {
                    Ok(rows) => {
                        assert_eq!(rows.len(), 1);
                        assert_eq!(rows[0].get::<_, i32>(0), 1);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        last = format!("{e:?}");
                    }
                }
            }
            last
        }));
    }
    // The table's columns change under them, again and again.
    let ddl = pooler.connect("postgres").await;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let sql = if i % 2 == 0 {
            format!("ALTER TABLE ddl_t ADD COLUMN c{i} text DEFAULT 'x'")
        } else {
            format!("ALTER TABLE ddl_t DROP COLUMN c{}", i - 1)
        };
        ddl.batch_execute(&sql).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut last = Vec::new();
    for r in readers {
        last.push(r.await.unwrap());
    }
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    eprintln!("FIGURES unnamed cache under DDL: {ok} queries, {errors} errors, 30 ALTER TABLE");
    assert_eq!(errors, 0, "{last:?}");
    assert!(ok > 100, "the readers ran: {ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_different_search_paths_each_read_their_own_table_through_one_connection() {
    let cluster = primary_only().await;
    cluster
        .primary()
        .psql(
            "postgres",
            "CREATE SCHEMA sp1; CREATE SCHEMA sp2; CREATE TABLE sp1.t (x int); INSERT INTO sp1.t VALUES (1); \
             CREATE TABLE sp2.t (x text); INSERT INTO sp2.t VALUES ('two')",
        )
        .unwrap();
    let pooler = TestPooler::start(txn_config(&cluster, 1, true), None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    a.batch_execute("SET search_path = sp1").await.unwrap();
    b.batch_execute("SET search_path = sp2").await.unwrap();
    for _ in 0..10 {
        let ra = a.query_typed("SELECT x FROM t", &[]).await.unwrap();
        assert_eq!(ra[0].get::<_, i32>(0), 1);
        let rb = b.query_typed("SELECT x FROM t", &[]).await.unwrap();
        assert_eq!(rb[0].get::<_, String>(0), "two");
    }
    assert_eq!(pooler_statements(&a).await, 2, "one statement per search_path");
}

/// A named statement made stale by DDL fails as on PostgreSQL, for every
/// client that prepared it; preparing the same text again then works,
/// though the pooler shares one server statement per text between clients
/// (a new one replaces the stale one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_statement_made_stale_by_ddl_works_again_once_prepared_again() {
    let cluster = primary_only().await;
    cluster.primary().psql("postgres", "CREATE TABLE named_t (a int); INSERT INTO named_t VALUES (1)").unwrap();
    let pooler = TestPooler::start(txn_config(&cluster, 1, true), None).await;
    let client = pooler.connect("postgres").await;
    let other = pooler.connect("postgres").await;
    let stmt = client.prepare("SELECT * FROM named_t").await.unwrap();
    let theirs = other.prepare("SELECT * FROM named_t").await.unwrap();
    assert_eq!(client.query(&stmt, &[]).await.unwrap().len(), 1);
    other.batch_execute("ALTER TABLE named_t ADD COLUMN b int DEFAULT 2").await.unwrap();
    let e = client.query(&stmt, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    let again = client.prepare("SELECT * FROM named_t").await.unwrap();
    let rows = client.query(&again, &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(1), 2, "the new column");
    // The other client's statement, prepared before the change, fails as
    // it would on PostgreSQL (its driver holds the old row shape) rather
    // than return rows of another shape; prepared again, it works.
    let e = other.query(&theirs, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{e}");
    let theirs = other.prepare("SELECT * FROM named_t").await.unwrap();
    assert_eq!(other.query(&theirs, &[]).await.unwrap()[0].len(), 2);
}

/// A client that pipelines unnamed statements (tokio-postgres sends
/// concurrent queries of one client back to back) gets every answer, in
/// order, whether or not its requests were cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_unnamed_statements_of_one_client_all_answer_in_order() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2, true), None).await;
    let client = pooler.connect("postgres").await;
    for round in 0..20i32 {
        let queries = (0..8i32).map(|i| {
            let client = &client;
            async move {
                let v = round * 100 + i;
                let rows = client.query_typed("SELECT $1::int4 + 0", &[(&v, Type::INT4)]).await.unwrap();
                assert_eq!(rows[0].get::<_, i32>(0), v);
            }
        });
        futures_util::future::join_all(queries).await;
    }
}
