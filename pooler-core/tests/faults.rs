//! End-to-end: the guarantees under real faults. Failovers driven by the
//! pooler under synchronous replication lose no acknowledged commit;
//! read-your-writes holds with asynchronous commit and lagging standbys; a
//! primary demoted behind the pooler's back stops getting writes at once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pooler_testkit::{Cluster, Node};
use tokio_postgres::types::ToSql;

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: &str, signal: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.trim()).status().unwrap().success();
    assert!(ok, "kill -{signal} {pid}");
}

/// The pid of `standby`'s WAL receiver.
fn wal_receiver_pid(standby: &Node) -> String {
    let pid = standby.query_one("SELECT pid FROM pg_stat_wal_receiver").unwrap();
    assert!(!pid.trim().is_empty(), "{} has a WAL receiver", standby.name());
    pid
}

/// Writes ids 1, 2, 3... one autocommit INSERT each through `client` until
/// `stop`; returns the ids whose commit was acknowledged (the ledger) and
/// how many writes failed.
async fn ledger_writer(
    client: tokio_postgres::Client,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Vec<i64>>>,
) -> (tokio_postgres::Client, usize) {
    let mut failed = 0;
    let mut id = 0i64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        match client.execute("INSERT INTO ledger (id) VALUES ($1)", &[&id]).await {
            Ok(_) => ledger.lock().unwrap().push(id),
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (client, failed)
}

/// Acknowledged ids missing on the node at `port`.
fn missing_on(port: u16, acknowledged: &[i64]) -> Vec<i64> {
    let rows = pooler_testkit::psql_at(port, "postgres", "postgres", "SELECT id FROM ledger ORDER BY id").unwrap();
    let present: std::collections::HashSet<i64> = rows.lines().filter_map(|l| l.trim().parse().ok()).collect();
    acknowledged.iter().copied().filter(|id| !present.contains(id)).collect()
}

/// The scenario: synchronous replication (`ANY 1 (*)`), standby 1
/// with replay paused (it receives, flushes and acknowledges, but applies
/// nothing), standby 2's WAL receiver frozen for the last two seconds before
/// the primary dies. Standby 2 has replayed more, standby 1 has received
/// more: the pooler must ask them at failover time and promote standby 1
/// (the shipped script resumes its replay first). Every commit the writer
/// saw acknowledged is on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_synchronous_replication_loses_no_acknowledged_commit() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::builder()
            .standbys(2)
            .init_sql("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .start()
            .expect("start PostgreSQL");
        // Synchronous on the primary only: a promoted standby must not wait
        // for standbys of its own.
        c.primary().query_one("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'").unwrap();
        c.primary().query_one("SELECT pg_reload_conf()").unwrap();
        c.wait_for_replication(Duration::from_secs(30)).expect("standbys catch up");
        c
    })
    .await
    .unwrap();
    let mut config = failover_config(&cluster);
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    config.failover.command = example_script(&cluster, "pg_failover.sh", "%d %h %p %D %m %H %r %R");
    config.failover.search_primary_node_timeout = Duration::from_secs(30);
    let pooler = TestPooler::start(config, None).await;
    let (s1, s2) = (cluster.standbys()[0].clone(), cluster.standbys()[1].clone());
    s1.query_one("SELECT pg_wal_replay_pause()").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Vec::new()));
    let writer = tokio::spawn(ledger_writer(pooler.connect("postgres").await, stop.clone(), ledger.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let receiver = wal_receiver_pid(&s2);
    signal(&receiver, "STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_before_death = ledger.lock().unwrap().len();
    let old = cluster.primary().clone();
    tokio::task::block_in_place(|| old.stop(pooler_testkit::StopMode::Immediate)).unwrap();
    let p = pooler.pooler.clone();
    let promoted = eventually(Duration::from_secs(30), || p.primary_node() != 0).await;
    // Writes go on on the new primary for a moment, then the books close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (_client, failed) = writer.await.unwrap();
    signal(&receiver, "CONT");
    assert!(promoted, "a standby was promoted");
    assert!(acked_before_death > 100, "the writer made progress: {acked_before_death}");
    assert_eq!(p.primary_node(), 1, "the standby that received the most (replay paused) is promoted");
    let acknowledged = ledger.lock().unwrap().clone();
    let missing = missing_on(s1.port(), &acknowledged);
    eprintln!(
        "sync failover: {} commits acknowledged ({acked_before_death} before the primary died), {failed} writes failed, {} missing",
        acknowledged.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged commits lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// How a read-your-writes client writes.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Autocommit INSERT, extended protocol; the session set
    /// `synchronous_commit = off` (tracked and restored by the pooler).
    SessionAsync,
    /// `BEGIN; SET LOCAL synchronous_commit = off; INSERT; COMMIT` as one
    /// simple-protocol string.
    LocalAsyncOneString,
    /// The same as separate statements, extended protocol.
    LocalAsyncBlock,
    /// INSERT and SELECT pipelined (sent together, answered in order).
    Pipelined,
}

/// One client's read-after-write checks: `(checks, violations, reads served
/// by a standby)`.
async fn read_your_writes_client(
    client: tokio_postgres::Client,
    who: i32,
    style: Style,
    rounds: i32,
    primary_port: i32,
) -> (u32, u32, u32) {
    let (mut checks, mut violations, mut on_standby) = (0, 0, 0);
    if matches!(style, Style::SessionAsync | Style::Pipelined) {
        client.batch_execute("SET synchronous_commit = off").await.unwrap();
    }
    let select = "SELECT coalesce(max(n), 0), inet_server_port() FROM rw WHERE who = $1";
    let mut statements = Vec::new();
    if matches!(style, Style::Pipelined) {
        statements.push(client.prepare("INSERT INTO rw (who, n) VALUES ($1, $2)").await.unwrap());
        statements.push(client.prepare(select).await.unwrap());
    }
    for n in 1..=rounds {
        let row = match style {
            Style::SessionAsync => {
                client.execute("INSERT INTO rw (who, n) VALUES ($1, $2)", &[&who, &n]).await.unwrap();
                client.query_one(select, &[&who]).await.unwrap()
            }
            Style::LocalAsyncOneString => {
                client
                    .batch_execute(&format!(
                        "BEGIN; SET LOCAL synchronous_commit = off; INSERT INTO rw (who, n) VALUES ({who}, {n}); COMMIT"
                    ))
                    .await
                    .unwrap();
                client.query_one(select, &[&who]).await.unwrap()
            }
            Style::LocalAsyncBlock => {
                client.batch_execute("BEGIN").await.unwrap();
                client.execute("SET LOCAL synchronous_commit = off", &[]).await.unwrap();
                client.execute("INSERT INTO rw (who, n) VALUES ($1, $2)", &[&who, &n]).await.unwrap();
                client.batch_execute("COMMIT").await.unwrap();
                client.query_one(select, &[&who]).await.unwrap()
            }
            Style::Pipelined => {
                // Prepared beforehand, so each call sends its Bind at its
                // first poll: the write goes out first, the read right
                // behind it, before any answer.
                let (insert_params, read_params): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 1]) =
                    ([&who, &n], [&who]);
                let insert = client.execute(&statements[0], &insert_params);
                let read = client.query_one(&statements[1], &read_params);
                let (w, r) = tokio::join!(insert, read);
                w.unwrap();
                r.unwrap()
            }
        };
        let mut rows = vec![row];
        if n % 10 == 0 {
            // A read a moment later: standbys have usually replayed by then.
            tokio::time::sleep(Duration::from_millis(300)).await;
            rows.push(client.query_one(select, &[&who]).await.unwrap());
        }
        for row in rows {
            checks += 1;
            if row.get::<_, i32>(0) < n {
                violations += 1;
                eprintln!(
                    "violation {style:?} who={who} n={n} saw={} port={}",
                    row.get::<_, i32>(0),
                    row.get::<_, i32>(1)
                );
            }
            if row.get::<_, i32>(1) != primary_port {
                on_standby += 1;
            }
        }
    }
    (checks, violations, on_standby)
}

/// Read-your-writes with asynchronous commit: twelve clients write and at
/// once read their own rows back, over 3,000 times in all, through a pooler
/// balancing reads over two asynchronous standbys (one of them with replay
/// paused for a while). Commits are asynchronous for the session or for the
/// one transaction, in the simple, extended and pipelined protocols. No read
/// may miss the client's own last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_with_asynchronous_commit_and_lagging_standbys() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::builder()
            .standbys(2)
            .init_sql("CREATE TABLE rw (who int, n int); CREATE INDEX ON rw (who, n);")
            .start()
            .expect("start PostgreSQL");
        c.wait_for_replication(Duration::from_secs(30)).expect("standbys catch up");
        c
    })
    .await
    .unwrap();
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let primary_port = cluster.primary().port() as i32;
    let styles = [Style::SessionAsync, Style::LocalAsyncOneString, Style::LocalAsyncBlock, Style::Pipelined];
    let mut tasks = Vec::new();
    for who in 0..12 {
        let client = pooler.connect("postgres").await;
        let style = styles[who as usize % 4];
        tasks.push(tokio::spawn(async move {
            match tokio::time::timeout(
                Duration::from_secs(60),
                read_your_writes_client(client, who, style, 230, primary_port),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => panic!("client {who} ({style:?}) stuck"),
            }
        }));
    }
    // One standby stops replaying for a while, then catches up.
    let lagging = cluster.standbys()[0].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    lagging.query_one("SELECT pg_wal_replay_pause()").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lagging.query_one("SELECT pg_wal_replay_resume()").unwrap();
    let (mut checks, mut violations, mut on_standby) = (0, 0, 0);
    for t in tasks {
        let (c, v, s) = t.await.unwrap();
        checks += c;
        violations += v;
        on_standby += s;
    }
    eprintln!("read-your-writes: {checks} checks, {violations} violations, {on_standby} reads on a standby");
    assert!(checks >= 3000);
    assert!(on_standby > 0, "some reads were balanced to a standby (else nothing was tested)");
    assert_eq!(violations, 0, "a read missed the client's own write");
}

/// A pipelining driver (tokio-postgres polling two queries at once) with
/// load balancing: a write and a read prepared and executed together, the
/// read's Bind sometimes arriving first. The read runs on a standby, the
/// connection goes back with the write already read from the client, and
/// the write must be routed at once: the client has sent everything and
/// waits (this used to stall until the client sent more, i.e. forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_for_different_nodes_never_stall() {
    let cluster = replicated(1).await;
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    for n in 0..200 {
        let a: [&(dyn ToSql + Sync); 1] = [&n];
        let insert = client.execute("INSERT INTO items (v) VALUES ($1)", &a);
        let read = client.query_one("SELECT count(*) FROM items WHERE v = $1", &a);
        let both = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(insert, read) }).await;
        let (w, r) = both.unwrap_or_else(|_| panic!("round {n}: the pipelined pair stalled"));
        assert_eq!(w.unwrap(), 1);
        r.unwrap();
    }
}

/// How long each of a series of writes took, and how they ended.
#[derive(Default, Debug)]
struct Stalls {
    ok: u32,
    failed: u32,
    longest: Duration,
}

/// The whole primary frozen (SIGSTOP of the postmaster and every backend: a
/// hung host, not a dead one), no failover command. Reads and logins go on
/// on the standby; every write ends (succeeds or fails with a clear error)
/// within the bound the docs give: detection (period, timeout, retries) plus
/// `search_primary_node_timeout`. Nothing waits on the frozen server's
/// sockets: writes in flight when it froze fail once the node is marked
/// down, later ones never reach it. After SIGCONT the primary takes writes
/// again. `POOLER_TEST_FREEZE_SECS` sets the freeze's length (default 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_bounds_every_write_and_reads_and_logins_go_on() {
    let freeze =
        Duration::from_secs(std::env::var("POOLER_TEST_FREEZE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(6));
    let cluster = replicated(1).await;
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.routing.load_balance = true;
    config.health.period = Duration::from_millis(300);
    config.health.timeout = Duration::from_millis(500);
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    config.failover.search_primary_node_timeout = Duration::from_secs(2);
    // Detection: a period, then two looks of up to `timeout` each, a retry delay apart.
    let bound = Duration::from_millis(300 + 2 * 500 + 100) + Duration::from_secs(2);
    let pooler = TestPooler::start(config, None).await;
    let primary = cluster.primary().clone();
    let reader = pooler.connect("postgres").await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let stop = stop.clone();
        let pg = pooler.pg_config("postgres", "postgres");
        let mut client = pooler.connect("postgres").await;
        tasks.push(tokio::spawn(async move {
            // Together at first, so the pool holds several server connections.
            client.execute("INSERT INTO items (v) SELECT 1 FROM pg_sleep(0.2)", &[]).await.unwrap();
            let mut s = Stalls::default();
            while !stop.load(Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let r = client.execute("INSERT INTO items (v) VALUES ($1)", &[&(i as i32)]).await;
                s.longest = s.longest.max(started.elapsed());
                match r {
                    Ok(_) => s.ok += 1,
                    Err(e) if e.is_closed() || client.is_closed() => {
                        // The pooler closed the session (its server was cut): log in again.
                        s.failed += 1;
                        match connect_with(pg.clone()).await {
                            Ok(c) => client = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                    Err(_) => {
                        s.failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            s
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::task::block_in_place(|| primary.signal_all("STOP")).unwrap();
    let frozen = std::time::Instant::now();
    let p = pooler.pooler.clone();
    let down = eventually(Duration::from_secs(10), || p.cluster().nodes[0].status == pooler_core::Status::Down).await;
    // Reads and new logins go on, on the standby, without waiting for the frozen primary.
    let mut reads = 0;
    let mut longest_login = Duration::ZERO;
    while frozen.elapsed() < freeze {
        let n: i64 = reader.query_one("SELECT count(*) FROM items", &[]).await.unwrap().get(0);
        assert!(n >= 4);
        reads += 1;
        let started = std::time::Instant::now();
        let c = pooler.connect("postgres").await;
        longest_login = longest_login.max(started.elapsed());
        c.query_one("SELECT 1", &[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| primary.signal_all("CONT")).unwrap();
    let back = eventually(Duration::from_secs(10), || p.cluster().primary_available()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Stalls::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.ok += s.ok;
        all.failed += s.failed;
        all.longest = all.longest.max(s.longest);
    }
    eprintln!(
        "frozen primary for {freeze:?}: writes ok {} failed {}, longest write {:?} (bound {bound:?}), {reads} reads, longest login {longest_login:?}",
        all.ok, all.failed, all.longest
    );
    assert!(down, "the frozen primary was marked down");
    assert!(back, "the primary came back after SIGCONT");
    assert!(
        all.longest <= bound + Duration::from_millis(500),
        "a write stalled {:?}, past the bound {bound:?}",
        all.longest
    );
    assert!(all.failed > 0, "writes during the freeze failed (no primary)");
    assert!(longest_login < Duration::from_secs(2), "logins did not wait for the frozen primary: {longest_login:?}");
    let port: i32 =
        reader.query_one("INSERT INTO items (v) VALUES (0) RETURNING inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, primary.port() as i32, "writes go to the thawed primary");
}

/// Clients that stop in the middle of a message (a Query announcing 100,000
/// bytes, sending 20) hold no server connection: with a pool of two, five of
/// them leave every connection to the others. A client that stops in the
/// middle of an extended request (Parse sent, Bind cut short) holds one, and
/// is timed out like an idle transaction, which frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalled_mid_message_do_not_starve_the_pool() {
    use tokio::io::AsyncWriteExt;
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.pool.size = 2;
    config.pool.checkout_timeout = Duration::from_secs(3);
    config.pool.idle_transaction_timeout = Duration::from_secs(1);
    let pooler = TestPooler::start(config, None).await;
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut s = raw_login(pooler.addr).await;
        let mut partial = vec![b'Q'];
        partial.extend_from_slice(&100_000u32.to_be_bytes());
        partial.extend_from_slice(b"SELECT 1 -- and then");
        s.write_all(&partial).await.unwrap();
        stalled.push(s);
    }
    let client = pooler.connect("postgres").await;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        client.query_one("SELECT 1", &[]).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "a query waited behind stalled clients");
    }
    // Two clients take both connections with a Parse, then stall in a Bind.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = raw_login(pooler.addr).await;
        let mut parse = message_bytes(b'P', b"\0SELECT pg_sleep(0)\0\0\0");
        parse.extend_from_slice(&message_bytes(b'H', b""));
        s.write_all(&parse).await.unwrap();
        read_until(&mut s, b"1\0\0\0\x04").await;
        let mut bind = vec![b'B'];
        bind.extend_from_slice(&1000u32.to_be_bytes());
        bind.extend_from_slice(b"\0\0");
        s.write_all(&bind).await.unwrap();
        holders.push(s);
    }
    // Freed by the timeout: the query gets a connection within the checkout timeout.
    let started = std::time::Instant::now();
    client.query_one("SELECT 1", &[]).await.unwrap();
    eprintln!("stalled mid-request: a query got a connection after {:?}", started.elapsed());
    for mut s in holders {
        let got = read_until(&mut s, b"25P03").await;
        assert!(got.windows(5).any(|w| w == b"25P03"), "the stalled client was told why");
    }
    drop(stalled);
}

/// The primary is demoted behind the pooler's back: another tool promotes
/// the standby and rebuilds the old primary as its standby (the shipped
/// follow script: pg_rewind), while the pooler's periodic checks are ten
/// minutes apart and no session ever fails to connect. The first write the
/// old primary refuses as read-only (25006) makes the pooler check it at
/// once, find it in recovery, look at the other node and move writes there:
/// only the writes already in flight see the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_behind_the_poolers_back_stops_getting_writes_after_its_first_refusal() {
    let cluster = rewindable().await;
    let mut config = failover_config(&cluster);
    config.health.period = Duration::from_secs(600);
    // Balanced: the refused write's session must survive its release too.
    config.routing.load_balance = true;
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    client.batch_execute("INSERT INTO items (v) VALUES (1)").await.unwrap();
    let (old, new) = (cluster.primary().clone(), cluster.standbys()[0].clone());
    // Behind the pooler's back: promote the standby, rebuild the old primary
    // as its standby.
    tokio::task::block_in_place(|| new.promote()).unwrap();
    rebuild_as_standby(&cluster, &old, &new);
    assert!(server_says(old.port(), "SELECT pg_is_in_recovery()", "t"));
    assert_eq!(pooler.pooler.primary_node(), 0, "the pooler has not noticed yet");
    let (mut refused, mut moved_after) = (0, None);
    let started = std::time::Instant::now();
    for i in 0..200 {
        match client.query_one("INSERT INTO items (v) VALUES ($1) RETURNING inet_server_port()", &[&i]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, i32>(0), new.port() as i32, "a write succeeded on the new primary");
                moved_after.get_or_insert(started.elapsed());
                if i > refused + 20 {
                    break;
                }
            }
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("25006"), "{e}");
                assert!(moved_after.is_none(), "no refusal once writes moved");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!("demoted primary: {refused} writes refused, writes on the new primary after {moved_after:?}");
    assert!(
        moved_after.is_some_and(|t| t < Duration::from_secs(5)),
        "writes moved to the new primary: {moved_after:?}"
    );
    assert!(refused >= 1 && refused <= 5, "only the first writes saw the refusal: {refused}");
    assert_eq!(pooler.pooler.primary_node(), 1);
}

/// User functions that write, called from what looks like a read (`SELECT
/// f()`, `SELECT * FROM f()`, `... WHERE f() > 0`), are judged by the
/// catalog: VOLATILE means the primary. A STABLE one is balanced once the
/// answer is known; redefining it VOLATILE through the pooler sends it to
/// the primary at once. Simple and extended protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_user_functions_go_to_the_primary_and_stable_ones_are_balanced() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::builder()
            .standbys(1)
            .init_sql(
                "CREATE TABLE adv_log (t text); \
                 CREATE FUNCTION adv_write(x text) RETURNS int LANGUAGE sql AS 'INSERT INTO adv_log VALUES (x) RETURNING 1'; \
                 CREATE FUNCTION adv_read() RETURNS int LANGUAGE sql STABLE AS 'SELECT count(*)::int FROM adv_log';",
            )
            .start()
            .expect("start PostgreSQL");
        c.wait_for_replication(Duration::from_secs(30)).expect("standby catches up");
        c
    })
    .await
    .unwrap();
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.routing.load_balance = true;
    config.nodes[0].weight = 0.0;
    config.health.period = Duration::from_millis(100);
    let pooler = TestPooler::start(config, None).await;
    let client = pooler.connect("postgres").await;
    let primary = cluster.primary().port() as i32;
    for sql in [
        "SELECT adv_write('a'), inet_server_port()",
        "SELECT *, inet_server_port() FROM adv_write('b')",
        "SELECT 1, inet_server_port() WHERE adv_write('c') > 0",
        "SELECT public.\"adv_write\"('d'), inet_server_port()",
    ] {
        let rows = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(1).unwrap_or_default().to_owned()),
            _ => None,
        });
        assert_eq!(row, Some(primary.to_string()), "{sql} ran on the primary");
        let port: i32 = client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(1);
        assert_eq!(port, primary, "{sql} (extended) ran on the primary");
    }
    assert_eq!(server_says(cluster.primary().port(), "SELECT count(*) FROM adv_log", "8"), true);
    // A STABLE function is a read once the catalog has answered.
    let balanced = eventually_async(Duration::from_secs(10), || async {
        let port: i32 = client.query_one("SELECT adv_read(), inet_server_port()", &[]).await.unwrap().get(1);
        port != primary
    })
    .await;
    assert!(balanced, "a stable function's read is balanced to the standby");
    // Redefined VOLATILE through the pooler: the cache is dropped at once.
    client
        .batch_execute("CREATE OR REPLACE FUNCTION adv_read() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT count(*)::int FROM adv_log'")
        .await
        .unwrap();
    for _ in 0..5 {
        let port: i32 = client.query_one("SELECT adv_read(), inet_server_port()", &[]).await.unwrap().get(1);
        assert_eq!(port, primary, "a volatile function goes to the primary");
    }
}

/// Transaction mode answers a login from the server defaults it has seen
/// (as pgbouncer does): with the pool's one connection held in a
/// transaction, new clients log in at once and run once it is free; what
/// they are told (reported parameters, their application_name) is what the
/// server reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_logins_need_no_server_connection() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.pool.size = 1;
    config.pool.checkout_timeout = Duration::from_secs(10);
    let pooler = TestPooler::start(config, None).await;
    let holder = pooler.connect("postgres").await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let mut logins = Vec::new();
    for i in 0..5 {
        let started = std::time::Instant::now();
        let mut pg = pooler.pg_config("postgres", "postgres");
        pg.application_name(&format!("app{i}"));
        let c = connect_with(pg).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "login {i} waited {:?}", started.elapsed());
        logins.push(c);
    }
    let waiting = tokio::spawn(async move {
        let mut names = Vec::new();
        for c in &logins {
            names.push(c.query_one("SHOW application_name", &[]).await.unwrap().get::<_, String>(0));
        }
        names
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "their queries wait for the one connection");
    holder.batch_execute("COMMIT").await.unwrap();
    let names = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!(names, (0..5).map(|i| format!("app{i}")).collect::<Vec<_>>());
    // Reported parameters are the server's: compare with a direct login.
    let direct = psql_direct_params(&cluster);
    let through = psql(pooler.port(), "postgres", "SHOW server_version; SHOW integer_datetimes; SHOW server_encoding");
    assert_eq!(through, direct);
}

/// A few reported parameters as a direct connection shows them.
fn psql_direct_params(cluster: &Cluster) -> String {
    pooler_testkit::psql_at(
        cluster.primary().port(),
        "postgres",
        "postgres",
        "SHOW server_version; SHOW integer_datetimes; SHOW server_encoding",
    )
    .unwrap()
}

/// A server that refuses the connection a request needs (here PostgreSQL's
/// own 53300 "sorry, too many clients already") is quoted to the client as
/// the server said it, not wrapped in an error of the pooler's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_refusal_at_attach_reaches_the_client_in_its_own_words() {
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .setting("max_connections", "3")
            .setting("superuser_reserved_connections", "0")
            .start()
            .expect("start PostgreSQL")
    })
    .await
    .unwrap();
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    let pooler = TestPooler::start(config, None).await;
    let mut holders = Vec::new();
    for _ in 0..3 {
        let c = pooler.connect("postgres").await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        holders.push(c);
    }
    let fourth = pooler.connect("postgres").await;
    let e = fourth.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e}");
    assert_eq!(message(&e), "sorry, too many clients already");
}
