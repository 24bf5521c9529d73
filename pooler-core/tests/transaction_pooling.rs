//! End-to-end: transaction and statement pooling against a real PostgreSQL,
//! with real drivers (tokio-postgres, psql, pgbench, psycopg).

mod common;

use std::time::{Duration, Instant};

use common::*;
use pooler_core::config::PoolMode;
use pooler_core::Config;
use pooler_testkit::Cluster;

fn txn_config(cluster: &Cluster, size: usize) -> Config {
    let mut c = trust_config(cluster);
    c.pool.mode = PoolMode::Transaction;
    c.pool.size = size;
    c
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_client_to_another_server_connection() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;

    let c = pooler.connect("postgres").await;
    let stmt = a.prepare("SELECT pg_backend_pid(), $1::int4 * 2").await.unwrap();
    let first: i32 = a.query_one(&stmt, &[&1i32]).await.unwrap().get(0);
    // B and C open transactions, holding both connections; the one not
    // holding A's connection commits. A's next use of its statement must then
    // run on the other connection, where it was never prepared.
    b.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let (holder, other) = if backend_pid(&b).await == first { (&b, &c) } else { (&c, &b) };
    assert_eq!(backend_pid(holder).await, first, "one of them holds A's connection");
    other.batch_execute("COMMIT").await.unwrap();
    let row = a.query_one(&stmt, &[&21i32]).await.unwrap();
    let second: i32 = row.get(0);
    assert_ne!(first, second, "A's statement ran on another server connection");
    assert_eq!(row.get::<_, i32>(1), 42);
    holder.batch_execute("COMMIT").await.unwrap();
    // And back and forth many times, with a second statement in the mix.
    let other = a.prepare("SELECT $1::text || '!'").await.unwrap();
    for i in 0..50 {
        if i % 2 == 0 {
            b.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        assert_eq!(a.query_one(&stmt, &[&i]).await.unwrap().get::<_, i32>(1), i * 2);
        assert_eq!(a.query_one(&other, &[&"x"]).await.unwrap().get::<_, String>(0), "x!");
        if i % 2 == 0 {
            b.batch_execute("COMMIT").await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_prepared_statement_is_never_visible_to_another() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 1), None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    // Both clients prepare statements on the one shared server connection.
    let sa = a.prepare("SELECT 'from a'::text").await.unwrap();
    let sb = b.prepare("SELECT 'from b'::text, 2").await.unwrap();
    for _ in 0..5 {
        assert_eq!(a.query_one(&sa, &[]).await.unwrap().get::<_, String>(0), "from a");
        assert_eq!(b.query_one(&sb, &[]).await.unwrap().get::<_, String>(0), "from b");
    }
    // The pooler's own server-side names are not reachable by anyone.
    let e = b.batch_execute("EXECUTE _pooler_1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let e = b.batch_execute("DEALLOCATE \"_pooler_1\"").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    // A's statement still works after B's attempts.
    assert_eq!(a.query_one(&sa, &[]).await.unwrap().get::<_, String>(0), "from a");
    // A name another client closed is gone for it only.
    drop(sb);
    assert_eq!(a.query_one(&sa, &[]).await.unwrap().get::<_, String>(0), "from a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bind_of_another_clients_statement_name_fails() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 1);
    config.server.log_connections = false;
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    // tokio-postgres numbers statements per process: A's is s0.
    let sa = a.prepare("SELECT 'secret'::text").await.unwrap();
    a.query("SELECT 1", &[]).await.unwrap();

    // B binds A's name (s0) and the server-side name, with raw messages.
    let mut b = raw_login(pooler.addr).await;
    const EXECUTE_SYNC: &[u8] = b"E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";
    for name in ["s0", "_pooler_1"] {
        let mut out = message_bytes(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes());
        out.extend_from_slice(EXECUTE_SYNC);
        b.write_all(&out).await.unwrap();
        let got = read_until(&mut b, b"Z\0\0\0\x05").await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("does not exist"), "{name}: {text}");
        assert!(!text.contains("secret"), "{name}: {text}");
    }
    // B may use the same name for its own statement; each sees its own.
    let mut out = message_bytes(b'P', b"s0\0SELECT 'mine'::text\0\0\0");
    out.extend(message_bytes(b'B', b"\0s0\0\0\0\0\0\0\0"));
    out.extend_from_slice(EXECUTE_SYNC);
    b.write_all(&out).await.unwrap();
    let got = read_until(&mut b, b"Z\0\0\0\x05").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("mine") && !text.contains("secret"), "{text}");
    assert_eq!(a.query_one(&sa, &[]).await.unwrap().get::<_, String>(0), "secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_extended_queries_from_many_clients_succeed() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 3), None).await;
    let mut tasks = Vec::new();
    for c in 0..8i32 {
        let client = pooler.connect("postgres").await;
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare("SELECT $1::int4 + $2::int4").await.unwrap();
            for round in 0..20i32 {
                // tokio-postgres pipelines concurrent queries on one connection:
                // many Parse/Bind/Execute/Sync in flight before the first answer.
                let futs: Vec<_> = (0..10i32)
                    .map(|i| {
                        let client = &client;
                        let stmt = &stmt;
                        async move { client.query_one(stmt, &[&(c * 1000 + i), &round]).await }
                    })
                    .collect();
                for (i, r) in futures_util::future::join_all(futs).await.into_iter().enumerate() {
                    assert_eq!(r.unwrap().get::<_, i32>(0), c * 1000 + i as i32 + round);
                }
                // Unnamed statements too (query with parameters, no prepare).
                let r = client.query_one("SELECT $1::text", &[&format!("c{c}r{round}")]).await.unwrap();
                assert_eq!(r.get::<_, String>(0), format!("c{c}r{round}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_follow_the_client_and_do_not_leak_to_others() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    a.batch_execute(
        "SET application_name = 'client-a'; SET TimeZone = 'Asia/Tokyo'; SET search_path = a_schema, public; \
         SET work_mem = '7MB'; SET DateStyle = 'German'",
    )
    .await
    .unwrap();
    for i in 0..20 {
        // B holds a connection now and then so A moves between connections.
        if i % 3 == 0 {
            b.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        let row = a
            .query_one(
                "SELECT current_setting('application_name'), current_setting('TimeZone'), \
                 current_setting('search_path'), current_setting('work_mem'), current_setting('DateStyle')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "client-a");
        assert_eq!(row.get::<_, String>(1), "Asia/Tokyo");
        assert_eq!(row.get::<_, String>(2), "a_schema, public");
        assert_eq!(row.get::<_, String>(3), "7MB");
        assert_eq!(row.get::<_, String>(4), "German, DMY");
        if i % 3 == 0 {
            b.batch_execute("COMMIT").await.unwrap();
        }
        let row = b
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path'), \
                 current_setting('work_mem')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "", "B never sees A's application_name");
        assert_eq!(row.get::<_, String>(1), "\"$user\", public");
        assert_eq!(row.get::<_, String>(2), "4MB");
    }
    // RESET brings A back to the defaults, everywhere it goes.
    a.batch_execute("RESET work_mem; RESET search_path").await.unwrap();
    b.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let row = a.query_one("SELECT current_setting('work_mem'), current_setting('search_path')", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "4MB");
    assert_eq!(row.get::<_, String>(1), "\"$user\", public");
    b.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_apply_on_every_connection_the_client_uses() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let mut cfg = pooler.pg_config("postgres", "postgres");
    cfg.application_name("startup-app").options("-c search_path=s1,public -c statement_timeout=1234");
    let a = connect_with(cfg).await.unwrap();
    let b = pooler.connect("postgres").await;
    for _ in 0..6 {
        b.batch_execute("BEGIN; SELECT 1").await.unwrap();
        let row = a
            .query_one(
                "SELECT current_setting('application_name'), current_setting('search_path'), \
                 current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "startup-app");
        // As PostgreSQL shows a startup option: the raw text.
        assert_eq!(row.get::<_, String>(1), "s1,public");
        assert_eq!(row.get::<_, String>(2), "1234ms");
        b.batch_execute("COMMIT").await.unwrap();
        let row = b.query_one("SELECT current_setting('statement_timeout')", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_features_pin_the_server_connection() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 3), None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    a.batch_execute("CREATE TEMP TABLE scratch (v int); INSERT INTO scratch VALUES (1)").await.unwrap();
    let pid = backend_pid(&a).await;
    for _ in 0..5 {
        b.batch_execute("BEGIN; SELECT 1").await.unwrap();
        assert_eq!(backend_pid(&a).await, pid, "pinned: always the same server connection");
        let n: i64 = a.query_one("SELECT count(*) FROM scratch", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
        b.batch_execute("COMMIT").await.unwrap();
    }
    // SQL-level PREPARE / EXECUTE work once pinned.
    a.batch_execute("PREPARE q(int) AS SELECT $1 + 1").await.unwrap();
    let rows = a.simple_query("EXECUTE q(41)").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("42"))));
    // The pinned connection is reset before anyone else gets it: B never sees the temp table.
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let e = b.query("SELECT * FROM scratch", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_pins_and_notifications_arrive() {
    use futures_util::StreamExt;
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let (listener, mut conn) = pooler.pg_config("postgres", "postgres").connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener.batch_execute("LISTEN chan").await.unwrap();
    let other = pooler.connect("postgres").await;
    other.batch_execute("NOTIFY chan, 'hello'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    // A notice passes through too, and the listener keeps working.
    listener.batch_execute("DO $$ BEGIN RAISE NOTICE 'note'; END $$").await.unwrap();
    other.batch_execute("NOTIFY chan, 'again'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
    assert_eq!(got.as_deref(), Some("again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_client_hears_its_own_notifications_with_the_pid_it_was_given() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let (mut s, given, _) = raw_login_key(pooler.addr).await;
    let mut pending = Vec::new();
    raw_query(&mut s, &mut pending, "LISTEN chan").await;
    let real = first_value(&raw_query(&mut s, &mut pending, "SELECT pg_backend_pid()").await).unwrap();
    let real: i32 = real.parse().unwrap();
    assert_ne!(real, given, "transaction mode gives a pid of the pooler's");

    // Its own NOTIFY, on the pinned connection: the pid it was given.
    let got = raw_query(&mut s, &mut pending, "NOTIFY chan, 'self'").await;
    let notes: Vec<_> = got.iter().filter(|(t, _)| *t == b'A').map(|(_, b)| notification(b)).collect();
    assert_eq!(notes, vec![(given, "chan".to_string(), "self".to_string())]);

    // Another session's notification keeps that session's real pid (heard
    // while the listener is idle).
    let other = pooler.connect("postgres").await;
    let answer = other.simple_query("SELECT pg_backend_pid()::text; NOTIFY chan, 'other'").await.unwrap();
    let other_pid: i32 = answer
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap();
    assert_ne!(other_pid, real);
    let (tag, body) = read_message(&mut s, &mut pending).await.expect("the notification");
    assert_eq!(tag, b'A');
    assert_eq!(notification(&body), (other_pid, "chan".to_string(), "other".to_string()));

    // The pid given names no backend: terminating it kills nobody.
    let killed: bool = other.query_one("SELECT pg_terminate_backend($1)", &[&given]).await.unwrap().get(0);
    assert!(!killed);
    let got = raw_query(&mut s, &mut pending, "NOTIFY chan, 'still here'").await;
    assert!(got.iter().any(|(t, b)| *t == b'A' && notification(b) == (given, "chan".into(), "still here".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_transaction_blocks() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 2);
    config.pool.mode = PoolMode::Statement;
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    assert_eq!(a.query_one("SELECT 5", &[]).await.unwrap().get::<_, i32>(0), 5);
    let e = a.batch_execute("BEGIN").await.unwrap_err();
    assert!(message(&e).contains("statement pooling mode"), "{e}");
    assert!(a.is_closed() || a.query_one("SELECT 1", &[]).await.is_err());
    // The refused transaction did not leave anything open for the next client
    // (the rollback runs as the connection goes back: poll for it).
    assert!(no_open_transactions(cluster.primary().port()).await, "the refused transaction was rolled back");
    let b = pooler.connect("postgres").await;
    assert_eq!(b.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_copy_and_rollback_work_in_transaction_mode() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let a = pooler.connect("postgres").await;
    a.batch_execute("CREATE TABLE IF NOT EXISTS copied (id int, t text)").await.unwrap();
    // An error inside a transaction block, then ROLLBACK.
    a.batch_execute("BEGIN").await.unwrap();
    let e = a.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    let e = a.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    a.batch_execute("ROLLBACK").await.unwrap();
    // COPY in, then out, with rows bigger than the streaming threshold.
    let big = "x".repeat(100_000);
    let data: String = (0..50).map(|i| format!("{i}\t{big}\n")).collect();
    let out = psql_through(
        &cluster,
        pooler.port(),
        &["-v", "ON_ERROR_STOP=1", "-c", "\\copy copied FROM STDIN"],
        Some(data.as_bytes()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n: i64 = a.query_one("SELECT count(*) FROM copied WHERE length(t) = 100000", &[]).await.unwrap().get(0);
    assert_eq!(n, 50);
    let out = psql_through(
        &cluster,
        pooler.port(),
        &["-At", "-c", "COPY (SELECT id, t FROM copied ORDER BY id) TO STDOUT"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), data);
    // A 20 MB row through the extended protocol.
    let r = a.query_one("SELECT repeat('y', 20000000)", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0).len(), 20_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_running_query_only() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let a = pooler.connect("postgres").await;
    let token = a.cancel_token();
    let started = Instant::now();
    let sleeper = tokio::spawn(async move { a.batch_execute("SELECT pg_sleep(30)").await });
    // Cancel once the query runs on the server (a cancel before that is
    // rightly a no-op in transaction mode: no connection is lent yet).
    let port = cluster.primary().port();
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    assert!(eventually(Duration::from_secs(10), || server_says(port, sql, "1")).await);
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = sleeper.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(20));
    // A late cancel from a client that holds no connection touches nobody.
    let b = pooler.connect("postgres").await;
    let c = pooler.connect("postgres").await;
    let idle_token = b.cancel_token();
    let long = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(1)").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    idle_token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    long.await.unwrap().expect("another client's query is not cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_use_the_reserve_then_time_out_with_a_clear_error() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 1);
    config.pool.reserve_size = 1;
    config.pool.reserve_timeout = Duration::from_millis(200);
    config.pool.checkout_timeout = Duration::from_secs(2);
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    let c = pooler.connect("postgres").await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    // The pool's only slot is held: B gets the reserve after 200 ms.
    let started = Instant::now();
    b.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Both slots held: C waits checkout_timeout and is told why.
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e}");
    assert!(message(&e).contains("no server connection available"), "{e}");
    a.batch_execute("COMMIT").await.unwrap();
    b.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeouts_disconnect_idle_clients_and_idle_transactions() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 2);
    config.pool.client_idle_timeout = Duration::from_millis(400);
    config.pool.idle_transaction_timeout = Duration::from_millis(400);
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let e = a.batch_execute("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || sqlstate(&e).as_deref() == Some("25P03"), "idle transaction was ended: {e}");
    let b = pooler.connect("postgres").await;
    b.batch_execute("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let e = b.batch_execute("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || sqlstate(&e).as_deref() == Some("57P05"), "idle client was disconnected: {e}");
    // Nothing was left open on the server.
    assert!(no_open_transactions(cluster.primary().port()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_opens_connections_ahead_of_demand() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 5);
    config.pool.min_size = 3;
    config.pool.server_idle_timeout = Duration::from_secs(2);
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    a.batch_execute("SELECT 1").await.unwrap();
    let port = cluster.primary().port();
    let count = || {
        pooler_testkit::psql_at(
            port,
            "postgres",
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = ''",
        )
        .map(|s| s.trim().parse::<i32>().unwrap_or(0))
        .unwrap_or(0)
    };
    assert!(eventually(Duration::from_secs(10), || count() >= 3).await, "3 connections opened ahead");
}

/// pgbench with 100 clients on a pool of 10, every query protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_100_clients_on_10_connections_all_protocols_without_failures() {
    let cluster = primary_only().await;
    let primary = cluster.primary().port().to_string();
    let out = run_client(
        &cluster,
        "pgbench",
        &["-i", "-q", "-h", "127.0.0.1", "-p", &primary, "-U", "postgres", "postgres"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut config = txn_config(&cluster, 10);
    config.server.max_client_connections = 200;
    let pooler = TestPooler::start(config, None).await;
    let port = pooler.port().to_string();
    for (mode, extra) in [("simple", "-S"), ("extended", "-S"), ("prepared", "-S"), ("prepared", "-N")] {
        let args = [
            "-n",
            "-c",
            "100",
            "-j",
            "2",
            "-t",
            "20",
            "-M",
            mode,
            extra,
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "postgres",
        ];
        let cluster_ref = &cluster;
        let out = tokio::task::block_in_place(|| run_client(cluster_ref, "pgbench", &args, None));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pgbench -M {mode} {extra} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("number of transactions actually processed: 2000/2000"), "{mode} {extra}: {stdout}");
        assert!(
            !stdout.contains("number of failed transactions: ") || stdout.contains("number of failed transactions: 0 "),
            "{stdout}"
        );
    }
}

/// psycopg 3, which prepares statements server-side after a few executions
/// and keeps them for the connection's life, through transaction pooling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepared_statements_work_in_transaction_mode() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let script = r#"
import sys, threading, psycopg
dsn = f"host=127.0.0.1 port={sys.argv[1]} user=postgres dbname=postgres"
errors = []
def worker(n):
    try:
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=1) as conn:
            for i in range(60):
                cur = conn.execute("SELECT %s::int + %s::int, pg_backend_pid()", (n, i))
                assert cur.fetchone()[0] == n + i
                with conn.transaction():
                    conn.execute("SELECT %s::text", (str(i),)).fetchone()
                    conn.execute("SELECT %s::int * 2", (i,)).fetchone()
            assert len(conn._prepared._names) >= 2, "statements were prepared server-side"
    except Exception as e:
        errors.append(f"worker {n}: {e!r}")
threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
print("ok")
"#;
    let port = pooler.port().to_string();
    // scripts/test.sh installs psycopg in a virtualenv and names its python.
    let python = std::env::var("POOLER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&port)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'psycopg'"),
        "psycopg 3 is not installed for {python}: run the tests with scripts/test.sh (it installs psycopg in .venv/), \
         or install it (`pip install 'psycopg[binary]>=3.1'`) and point POOLER_TEST_PYTHON at that python"
    );
    assert!(out.status.success() && stdout.contains("ok"), "{stdout}\n{stderr}");
}

/// After an extended-protocol error the server skips everything up to Sync;
/// a connection in that state must never serve another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_stays_with_its_client_until_sync_after_an_extended_error() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 1), None).await;
    let b = pooler.connect("postgres").await;
    let mut a = raw_login(pooler.addr).await;
    // Parse of broken SQL, then Flush (no Sync): the answer is an ErrorResponse.
    let mut out = message_bytes(b'P', b"\0SELEC 1\0\0\0");
    out.extend(message_bytes(b'H', b""));
    a.write_all(&out).await.unwrap();
    read_until(&mut a, b"E").await;
    // Another client asks for the only connection meanwhile.
    let other = tokio::spawn(async move { b.query_one("SELECT 7", &[]).await.map(|r| r.get::<_, i32>(0)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.write_all(&message_bytes(b'S', b"")).await.unwrap();
    read_until(&mut a, b"Z\0\0\0\x05I").await;
    let r = tokio::time::timeout(Duration::from_secs(10), other).await.expect("B is served, not stuck").unwrap();
    assert_eq!(r.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_clients_and_lets_open_transactions_finish() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 2);
    config.server.shutdown_timeout = Duration::from_secs(20);
    let mut pooler = TestPooler::start(config, None).await;
    let setup = pooler.connect("postgres").await;
    setup.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    let busy = pooler.connect("postgres").await;
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();

    let done = pooler.shutdown();
    // The idle client (no server connection held) is told and closed.
    assert!(eventually(Duration::from_secs(5), || setup.is_closed()).await);
    // The open transaction may still finish; then its client is closed too.
    busy.batch_execute("INSERT INTO t VALUES (2); COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), done).await.expect("shutdown finishes").unwrap();
    assert!(eventually(Duration::from_secs(5), || busy.is_closed()).await);
    assert_eq!(cluster.primary().query_one("SELECT count(*) FROM t").unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_query_runs_on_connections_idle_past_check_delay() {
    let cluster = primary_only().await;
    let mut config = txn_config(&cluster, 1);
    config.pool.check_delay = Duration::from_secs(2);
    // A check that always fails makes every checked connection be replaced,
    // which shows when the check runs.
    config.pool.check_query = "SELECT 1/0".into();
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    let first = backend_pid(&a).await;
    // Reused at once: no check, same connection.
    assert_eq!(backend_pid(&a).await, first);
    // Idle past check_delay: checked, failed, replaced.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let second = backend_pid(&a).await;
    assert_ne!(first, second);
    // A connection killed behind the pooler's back is replaced too.
    let port = cluster.primary().port();
    pooler_testkit::psql_at(port, "postgres", "postgres", &format!("SELECT pg_terminate_backend({second})")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_ne!(backend_pid(&a).await, second);
}

/// A backend terminated under a transaction-mode client that holds it
/// (inside a transaction, in the middle of a request, or pinned by LISTEN):
/// the client gets exactly what a direct connection gets, the server's FATAL
/// 57P01 and the close, and nothing of the pooler's after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backends_fatal_is_the_last_message_of_a_client_holding_it() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(txn_config(&cluster, 2), None).await;
    let doings =
        [Doing::SleepingInTransaction, Doing::ExecutingNamed, Doing::SleepingWithQueued, Doing::IdleAfterListen];
    terminations_look_as_direct(pooler.addr, cluster.primary().port(), &doings).await;
    let c = pooler.connect("postgres").await;
    assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
}
