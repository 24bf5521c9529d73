//! End-to-end: session pooling through the pooler against a real PostgreSQL.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_return_server_results() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let client = pooler.connect("postgres").await;

    let rows = client.simple_query("SELECT 1 AS one, 'two' AS two").await.unwrap();
    let row = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    assert_eq!(row.unwrap().get("two"), Some("two"));

    // Extended protocol with parameters, and a prepared statement reused.
    let stmt = client.prepare("SELECT $1::int4 + $2::int4").await.unwrap();
    for i in 0..20 {
        let r = client.query_one(&stmt, &[&i, &1i32]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i + 1);
    }
    // The session really runs on the primary.
    let r = client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap();
    assert!(!r.get::<_, bool>(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_reported_and_the_session_recovers() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let client = pooler.connect("postgres").await;

    let e = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    let e = client.query("SELECT * FROM no_such_table", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    assert_eq!(client.query_one("SELECT 41 + 1", &[]).await.unwrap().get::<_, i32>(0), 42);

    // An error inside a transaction block, then ROLLBACK.
    client.batch_execute("BEGIN").await.unwrap();
    let e = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));
    let e = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(client.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_and_to_stdout_pass_through() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let client = pooler.connect("postgres").await;
    client.batch_execute("CREATE TABLE items (id int, name text)").await.unwrap();

    // tokio-postgres COPY FROM STDIN, in several chunks.
    let sink = client.copy_in("COPY items FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    for chunk in 0..10 {
        let mut data = String::new();
        for i in 0..1000 {
            data.push_str(&format!("{}\tname {}\n", chunk * 1000 + i, i));
        }
        sink.send(bytes::Bytes::from(data)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);

    // COPY TO STDOUT.
    let stream = client.copy_out("COPY (SELECT * FROM items ORDER BY id) TO STDOUT").await.unwrap();
    futures_util::pin_mut!(stream);
    let mut total = Vec::new();
    while let Some(chunk) = stream.next().await {
        total.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(total).unwrap();
    assert_eq!(text.lines().count(), 10_000);
    assert_eq!(text.lines().next(), Some("0\tname 0"));

    // psql's \copy uses the same protocol from a real libpq client.
    let port = pooler.port().to_string();
    let out = run_client(
        &cluster,
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "COPY items FROM STDIN",
        ],
        Some(b"20000\tfrom psql\n20001\tfrom psql\n\\.\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n = psql(pooler.port(), "postgres", "SELECT count(*) FROM items WHERE name = 'from psql'");
    assert_eq!(n, "2");
    // A failed COPY (bad data) reports the error and the session goes on.
    let sink = client.copy_in::<_, bytes::Bytes>("COPY items FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not-a-number\tx\n")).await.unwrap();
    let e = sink.finish().await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22P02"));
    assert_eq!(client.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get::<_, i64>(0), 10_002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_queue_on_a_pool_of_ten_and_all_finish() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 10;
    config.pool.checkout_timeout = Duration::from_secs(120);
    let pooler = TestPooler::start(config, None).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let cfg = pooler.pg_config("postgres", "postgres");
        tasks.push(tokio::spawn(async move {
            let client = connect_with(cfg).await?;
            let r = client.query_one("SELECT $1::int4, pg_sleep(0.02)::text", &[&i]).await?;
            Ok::<i32, tokio_postgres::Error>(r.get(0))
        }));
    }
    let mut sum = 0i64;
    for t in tasks {
        sum += t.await.unwrap().expect("every client succeeds") as i64;
    }
    assert_eq!(sum, (0..200).sum::<i64>());
    let pools = pooler.pooler.pools().all();
    assert_eq!(pools.len(), 1);
    let stats = pools[0].stats();
    assert!(stats.opened.load(Ordering::Relaxed) <= 10, "opened {}", stats.opened.load(Ordering::Relaxed));
    assert!(stats.waits.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.checkouts.load(Ordering::Relaxed), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connection_is_reused_and_reset_between_clients() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let mut pids = Vec::new();
    for i in 0..5 {
        let mut cfg = pooler.pg_config("postgres", "postgres");
        cfg.application_name(format!("client{i}"));
        let client = connect_with(cfg).await.unwrap();
        let r = client.query_one("SELECT pg_backend_pid(), current_setting('application_name')", &[]).await.unwrap();
        pids.push(r.get::<_, i32>(0));
        assert_eq!(r.get::<_, String>(1), format!("client{i}"));
        // State left behind must not reach the next client.
        client
            .batch_execute(
                "SET work_mem = '7MB'; PREPARE leftover AS SELECT 1; LISTEN leftover_channel; \
                 SELECT pg_advisory_lock(42); CREATE TEMP TABLE leftover_temp (x int)",
            )
            .await
            .unwrap();
        drop(client);
        let pool = pooler.pooler.pools().all()[0].clone();
        assert!(eventually(Duration::from_secs(5), || pool.idle_count() == 1).await);
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "one backend served everyone: {pids:?}");
    let client = pooler.connect("postgres").await;
    let r = client
        .query_one(
            "SELECT current_setting('work_mem'), (SELECT count(*) FROM pg_prepared_statements WHERE name = 'leftover')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "4MB");
    assert_eq!(r.get::<_, i64>(1), 0);
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_listening_channels()), \
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'), \
                    (SELECT count(*) FROM pg_class WHERE relname = 'leftover_temp')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (0, 0, 0),
        "LISTEN, advisory lock, temp table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_reach_the_server_and_are_reported() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let mut cfg = pooler.pg_config("postgres", "postgres");
    cfg.application_name("reporting").options("-c search_path=pg_catalog,public -c statement_timeout=1234");
    let client = connect_with(cfg).await.unwrap();
    let r = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('search_path'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "reporting");
    assert_eq!(r.get::<_, String>(1), "pg_catalog,public");
    assert_eq!(r.get::<_, String>(2), "1234ms");

    // psql shows what the server reported at startup (server_version etc.).
    let v = psql(pooler.port(), "postgres", "SHOW server_version");
    assert!(v.starts_with(char::is_numeric), "{v}");

    // A bad startup parameter fails the connection with the server's error.
    let mut cfg = pooler.pg_config("postgres", "postgres");
    cfg.options("-c no_such_setting_x=1");
    let e = connect_with(cfg).await.unwrap_err();
    assert!(message(&e).contains("no_such_setting_x") || sqlstate(&e).is_some(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_serving_backend_within_a_second() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let client = pooler.connect("postgres").await;
    let token = client.cancel_token();
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    let primary = cluster.primary().clone();
    let canceller = tokio::spawn(async move {
        // Cancel once the query really runs; time from the cancel to the error.
        assert!(eventually(Duration::from_secs(10), || primary.query_one(sleeping).unwrap() == "1").await);
        let sent = Instant::now();
        token.cancel_query(tokio_postgres::NoTls).await.map(|_| sent)
    });
    let e = client.simple_query("SELECT pg_sleep(30)").await.unwrap_err();
    let errored = Instant::now();
    let sent = canceller.await.unwrap().unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e}");
    let took = errored.saturating_duration_since(sent);
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
    // The session keeps working after the cancel.
    assert_eq!(client.query_one("SELECT 3", &[]).await.unwrap().get::<_, i32>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_cancels_nothing() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let client = pooler.connect("postgres").await;
    // A raw CancelRequest with made-up keys: accepted and ignored.
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(pooler.addr).await.unwrap();
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&16u32.to_be_bytes());
    pkt.extend_from_slice(&80877102u32.to_be_bytes());
    pkt.extend_from_slice(&1i32.to_be_bytes());
    pkt.extend_from_slice(&2i32.to_be_bytes());
    s.write_all(&pkt).await.unwrap();
    let r = client.query_one("SELECT pg_sleep(0.3)::text, 5", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(1), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_gives_client_an_error_and_pool_recovers() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let victim = pooler.connect("postgres").await;
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);

    // Kill the backend under the client, from a direct connection.
    let killed = cluster.primary().query_one(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    assert_eq!(killed, "t");
    let e = victim.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || sqlstate(&e).is_some(), "client sees an error: {e}");
    drop(victim);

    // The next client gets a working (new) backend.
    let next = pooler.connect("postgres").await;
    let pid2: i32 = next.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid, pid2);

    // An idle pooled connection killed behind the pooler's back is not handed out.
    drop(next);
    let pool = pooler.pooler.pools().all()[0].clone();
    assert!(eventually(Duration::from_secs(5), || pool.idle_count() == 1).await);
    cluster.primary().query_one(&format!("SELECT pg_terminate_backend({pid2})")).unwrap();
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid2}");
    assert!(eventually(Duration::from_secs(5), || cluster.primary().query_one(&gone).unwrap() == "0").await);
    let third = pooler.connect("postgres").await;
    let pid3: i32 = third.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid3, pid2);
}

/// A backend terminated under a session-mode client (pg_terminate_backend
/// from another connection): the client gets exactly what a direct
/// connection gets, the server's FATAL 57P01 and the close, whether it was
/// idle, running a query with another queued behind it, sending more after
/// the end, or executing a named prepared statement. Nothing of the pooler's
/// is added (it used to add its 08006 after the server's FATAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backends_fatal_is_the_clients_last_message_as_on_a_direct_connection() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let doings = [Doing::Idle, Doing::SleepingWithQueued, Doing::SleepingThenSending, Doing::ExecutingNamed];
    terminations_look_as_direct(pooler.addr, cluster.primary().port(), &doings).await;
    let c = pooler.connect("postgres").await;
    assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
}

/// A backend that dies without a word (SIGKILL): PostgreSQL sends nothing,
/// a direct client's libpq says "server closed the connection
/// unexpectedly"; through the pooler, the pooler says it (08006), since the
/// client's socket stays open otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_without_a_word_gets_the_poolers_08006() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let mut s = raw_login(pooler.addr).await;
    s.write_all(&message_bytes(b'Q', b"SELECT pg_sleep(5)\0")).await.unwrap();
    let pid = sleeping_backend(cluster.primary().port()).await;
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let got = read_until_closed(&mut s, &mut Vec::new()).await;
    assert_eq!(
        describe(&got),
        ["E FATAL 08006 server closed the connection unexpectedly; the query may or may not have run"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_full_pool_times_out_with_a_clear_error() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    config.pool.checkout_timeout = Duration::from_millis(300);
    let pooler = TestPooler::start(config, None).await;
    let holder = pooler.connect("postgres").await;
    holder.simple_query("SELECT 1").await.unwrap();
    let started = Instant::now();
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e}");
    assert!(message(&e).contains("no server connection available"), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(holder);
    // Once the holder leaves, the next client gets in.
    let c = pooler.connect("postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_limit_are_refused_like_postgres() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.server.max_client_connections = 2;
    let pooler = TestPooler::start(config, None).await;
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
    assert!(message(&e).contains("too many clients"), "{e}");
    drop(a);
    // A slot frees up when a client leaves.
    let mut ok = false;
    for _ in 0..250 {
        if connect_with(pooler.pg_config("postgres", "postgres")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_transactions_finish_and_closes_idle_clients() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.server.shutdown_timeout = Duration::from_secs(20);
    let mut pooler = TestPooler::start(config, None).await;
    let setup = pooler.connect("postgres").await;
    setup.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    drop(setup);
    let busy = pooler.connect("postgres").await;
    let idle = pooler.connect("postgres").await;
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();
    idle.simple_query("SELECT 1").await.unwrap();

    let done = pooler.shutdown();
    // The idle client is told and closed.
    assert!(eventually(Duration::from_secs(5), || idle.is_closed()).await);
    // New clients are not accepted.
    assert!(connect_with(pooler.pg_config("postgres", "postgres")).await.is_err());
    // The open transaction may still finish.
    busy.batch_execute("INSERT INTO t VALUES (2); COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), done).await.expect("shutdown finishes").unwrap();
    assert!(busy.is_closed() || busy.simple_query("SELECT 1").await.is_err());
    assert_eq!(cluster.primary().query_one("SELECT count(*) FROM t").unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_closes_transactions_that_do_not_finish() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.server.shutdown_timeout = Duration::from_millis(300);
    let mut pooler = TestPooler::start(config, None).await;
    let busy = pooler.connect("postgres").await;
    busy.batch_execute("BEGIN").await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), pooler.shutdown()).await.expect("shutdown finishes").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(eventually(Duration::from_secs(5), || busy.is_closed()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_sslmode_prefer_falls_back_to_plain_text() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let port = pooler.port().to_string();
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=prefer gssencmode=prefer");
    let out = run_client(&cluster, "psql", &["-X", "-A", "-t", "-c", "SELECT 'plain'", &dsn], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "plain");
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require");
    let out = run_client(&cluster, "psql", &["-X", "-c", "SELECT 1", &dsn], None);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_error_comes_from_the_server() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let e = connect_with(pooler.pg_config("postgres", "no_such_db")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_the_pooler_has_no_failed_transactions() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 20;
    let pooler = TestPooler::start(config, None).await;
    let port = pooler.port().to_string();
    let common = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let bench = {
        let cluster = &cluster;
        move |args: Vec<&str>| {
            let mut all: Vec<&str> = common.to_vec();
            all.extend(args);
            all.push("postgres");
            run_client(cluster, "pgbench", &all, None)
        }
    };
    let out = tokio::task::block_in_place(|| bench(vec!["-i", "-q", "-s", "1"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tokio::task::block_in_place(|| bench(vec!["-c", "20", "-j", "2", "-t", "50", "-M", "extended"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("number of transactions actually processed: 1000/1000"), "{stdout}");
    assert!(stdout.contains("number of failed transactions: 0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_old_server_connections_are_closed() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.server_idle_timeout = Duration::from_millis(300);
    let pooler = TestPooler::start(config, None).await;
    let c = pooler.connect("postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let pool = pooler.pooler.pools().all()[0].clone();
    // Returned to the pool, then past the idle timeout the maintenance task
    // closes it (the pool may be seen idle only briefly; don't race for it).
    assert!(eventually(Duration::from_secs(5), || pool.stats().closed.load(Ordering::Relaxed) == 1).await);
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(pool.stats().opened.load(Ordering::Relaxed), 1);
    let count =
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
    assert!(eventually(Duration::from_secs(5), || cluster.primary().query_one(count).unwrap() == "0").await);

    let cluster2 = primary_only().await;
    let mut config = trust_config(&cluster2);
    config.pool.server_lifetime = Duration::from_millis(300);
    let pooler = TestPooler::start(config, None).await;
    let c = pooler.connect("postgres").await;
    let pid1: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(c);
    // Too old to be reused: closed when it comes back, not kept idle.
    let pool = pooler.pooler.pools().all()[0].clone();
    assert!(eventually(Duration::from_secs(5), || pool.stats().closed.load(Ordering::Relaxed) == 1).await);
    assert_eq!(pool.idle_count(), 0);
    let c = pooler.connect("postgres").await;
    let pid2: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid1, pid2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_or_absent_server_gives_a_connect_error_in_time() {
    // A "server" that accepts TCP connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let node = pooler_core::config::NodeConfig::new("127.0.0.1", port);
    let mut config = pooler_core::Config::with_nodes(vec![node]);
    config.auth.method = pooler_core::config::AuthMethod::Trust;
    config.pool.connect_timeout = Duration::from_millis(300);
    let pooler = TestPooler::start(config, None).await;
    let started = Instant::now();
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    assert!(message(&e).contains("timeout while connecting"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);

    // Nothing listening at all: connection refused, reported as such.
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    assert!(message(&e).contains("could not connect to server"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_on_one_connection_all_get_their_own_answers() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    // Statement logging makes the relay look into every Query and Parse too.
    config.server.log_statements = true;
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let stmt = client.prepare("SELECT $1::int8 * 2, repeat('r', $1::int4)").await.unwrap();
    // tokio-postgres sends all of these before reading any answer.
    let params: Vec<i64> = (0..200).collect();
    let (client, stmt) = (&client, &stmt);
    let futures: Vec<_> = params.iter().map(|i| async move { client.query_one(stmt, &[i]).await }).collect();
    let rows = futures_util::future::join_all(futures).await;
    for (i, r) in rows.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.get::<_, i64>(0), i as i64 * 2);
        assert_eq!(r.get::<_, String>(1).len(), i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_query_never_lends_out_the_busy_server_connection() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    let pooler = TestPooler::start(config, None).await;
    let mut raw = raw_login(pooler.addr).await;
    let busy_pid: i32 = cluster
        .primary()
        .query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        .unwrap()
        .parse()
        .unwrap();
    let mut q = bytes::BytesMut::new();
    pooler_core::internals::write::query(&mut q, "SELECT pg_sleep(30)");
    use tokio::io::AsyncWriteExt;
    raw.write_all(&q).await.unwrap();
    // Wait until the sleep runs, then make the client disappear.
    let running = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {busy_pid} AND query LIKE '%pg_sleep(30)%' AND state = 'active'");
    assert!(eventually(Duration::from_secs(5), || cluster.primary().query_one(&running).unwrap() == "1").await);
    drop(raw);
    // The next client gets a fresh, idle server connection right away.
    let started = Instant::now();
    let next = pooler.connect("postgres").await;
    let pid: i32 = next.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid, busy_pid);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_backend_restarting_the_server_is_survived_by_the_pool() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    // Two pooled connections: one lent out, one idle in the pool.
    let victim = pooler.connect("postgres").await;
    let bystander = pooler.connect("postgres").await;
    bystander.simple_query("SELECT 1").await.unwrap();
    drop(bystander);
    let pool = pooler.pooler.pools().all()[0].clone();
    assert!(eventually(Duration::from_secs(5), || pool.idle_count() == 1).await);

    // SIGKILL one backend: PostgreSQL kills every backend and runs crash recovery.
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let e = victim.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || sqlstate(&e).is_some(), "{e}");
    // Wait for the server to be back.
    assert!(eventually(Duration::from_secs(30), || cluster.primary().query_one("SELECT 1").is_ok()).await);

    // The idle pooled connection died with the restart; it is not handed out.
    let next = pooler.connect("postgres").await;
    assert_eq!(next.query_one("SELECT 5", &[]).await.unwrap().get::<_, i32>(0), 5);
}

/// True once the backend `pid` runs `query` (state active), asked directly.
async fn backend_runs(cluster: &pooler_testkit::Cluster, pid: i32, query: &str) -> bool {
    let sql =
        format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND query = '{query}' AND state = 'active'");
    let port = cluster.primary().port();
    eventually(Duration::from_secs(10), || server_says(port, &sql, "1")).await
}

/// The SQLSTATE of the ErrorResponse among `messages`, if any.
fn error_code(messages: &[(u8, Vec<u8>)]) -> Option<String> {
    let (_, body) = messages.iter().find(|(t, _)| *t == b'E')?;
    pooler_core::internals::messages::ErrorFields::new(body).code().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_gives_the_client_its_backends_real_pid() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let (mut s, pid, secret) = raw_login_key(pooler.addr).await;
    let mut pending = Vec::new();
    let got = raw_query(&mut s, &mut pending, "SELECT pg_backend_pid()").await;
    assert_eq!(first_value(&got), Some(pid.to_string()), "BackendKeyData carries the real pid");

    // A cancel with the wrong secret does nothing; with the key given, it
    // cancels the running query.
    s.write_all(&message_bytes(b'Q', b"SELECT pg_sleep(30)\0")).await.unwrap();
    assert!(backend_runs(&cluster, pid, "SELECT pg_sleep(30)").await);
    send_cancel(pooler.addr, pid, secret.wrapping_add(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(backend_runs(&cluster, pid, "SELECT pg_sleep(30)").await, "a wrong secret cancels nothing");
    let started = Instant::now();
    send_cancel(pooler.addr, pid, secret).await;
    let got = read_to_ready(&mut s, &mut pending).await;
    assert_eq!(error_code(&got).as_deref(), Some("57014"), "the query was cancelled");
    assert!(started.elapsed() < Duration::from_secs(5));

    // pg_terminate_backend() of the pid given, from another connection,
    // ends this client's session.
    let other = pooler.connect("postgres").await;
    let killed: bool = other.query_one(&format!("SELECT pg_terminate_backend({pid})"), &[]).await.unwrap().get(0);
    assert!(killed);
    let mut codes = Vec::new();
    while let Some((tag, body)) = read_message(&mut s, &mut pending).await {
        if tag == b'E' {
            codes.push(error_code(&[(tag, body)]));
        }
    }
    // The server's FATAL, then the end: nothing of the pooler's after it.
    assert_eq!(codes, vec![Some("57P01".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_client_of_a_server_connection_gets_its_pid_with_another_secret() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    let pooler = TestPooler::start(config, None).await;
    let (mut a, pid_a, secret_a) = raw_login_key(pooler.addr).await;
    a.write_all(&message_bytes(b'X', b"")).await.unwrap();
    assert!(read_message(&mut a, &mut Vec::new()).await.is_none());
    let pool = pooler.pooler.pools().all()[0].clone();
    assert!(eventually(Duration::from_secs(5), || pool.idle_count() == 1).await);

    // Same server connection, so the same real pid; the key is new.
    let (mut b, pid_b, secret_b) = raw_login_key(pooler.addr).await;
    assert_eq!(pid_b, pid_a);
    assert_ne!(secret_b, secret_a);
    let mut pending = Vec::new();
    b.write_all(&message_bytes(b'Q', b"SELECT pg_sleep(30)\0")).await.unwrap();
    assert!(backend_runs(&cluster, pid_b, "SELECT pg_sleep(30)").await);
    // The first client's key is dead: it does not reach the next client's query.
    send_cancel(pooler.addr, pid_a, secret_a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(backend_runs(&cluster, pid_b, "SELECT pg_sleep(30)").await, "an old key cancels nothing");
    send_cancel(pooler.addr, pid_b, secret_b).await;
    let got = read_to_ready(&mut b, &mut pending).await;
    assert_eq!(error_code(&got).as_deref(), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_notifications_to_self_carry_the_pid_the_client_was_given() {
    use futures_util::StreamExt;
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let (mut s, pid, _) = raw_login_key(pooler.addr).await;
    let mut pending = Vec::new();
    raw_query(&mut s, &mut pending, "LISTEN chan").await;
    let got = raw_query(&mut s, &mut pending, "NOTIFY chan, 'self'").await;
    let notes: Vec<_> = got.iter().filter(|(t, _)| *t == b'A').map(|(_, b)| notification(b)).collect();
    assert_eq!(notes, vec![(pid, "chan".to_string(), "self".to_string())]);

    // What a driver's test suite checks: the notification's process id is
    // the session's pg_backend_pid().
    let (client, mut conn) = pooler.pg_config("postgres", "postgres").connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.process_id(), n.payload().to_owned()));
            }
        }
    });
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    client.batch_execute("LISTEN chan2; NOTIFY chan2, 'mine'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
    assert_eq!(got, Some((backend, "mine".to_string())));
}
