//! End to end, SIGUSR2: the running binary starts itself again and hands
//! the new process its listening sockets (TCP, the Unix socket, metrics);
//! new clients are never refused meanwhile, and the old process drains and
//! exits. A new process that cannot start leaves the old one serving.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pooler_testkit::Cluster;

mod common;
use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_pooler");

/// The first pooler process, and whatever successor its log names: both
/// killed on drop.
struct Poolers {
    first: Child,
    log: PathBuf,
}

impl Poolers {
    fn start(config: &PathBuf, log: PathBuf, port: u16) -> Poolers {
        let file = std::fs::File::create(&log).unwrap();
        let first = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the pooler did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Poolers { first, log }
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// The pid of the successor the first process started (from its log).
    fn successor(&self) -> Option<u32> {
        let log = self.log_text();
        let line = log.lines().find(|l| l.contains("upgrade: started the new process"))?;
        line.split("pid=").nth(1)?.split_whitespace().next()?.parse().ok()
    }

    fn usr2(&self) {
        assert!(Command::new("kill").arg("-USR2").arg(self.first.id().to_string()).status().unwrap().success());
    }
}

impl Drop for Poolers {
    fn drop(&mut self) {
        if let Some(pid) = self.successor() {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

fn psql(port: u16, db: &str, sql: &str) -> Option<String> {
    pooler_testkit::psql_at(port, "postgres", db, sql).ok()
}

fn config(dir: &TempDir, port: u16, metrics: u16, pg: &Cluster) -> PathBuf {
    let body = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_client_connections = 5000\nunix_socket_dir = \"{}\"\nshutdown_timeout = \"3s\"\n\
         [auth]\nmethod = \"trust\"\n[admin]\nadmin_users = [\"postgres\"]\n[pool]\nmode = \"transaction\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
        dir.0.display(),
        pg.primary().port()
    );
    let p = dir.0.join("pooler.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn metrics_answer(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200")
}

#[test]
fn sigusr2_hands_the_listening_sockets_to_a_new_process_and_no_new_client_is_refused() {
    let pg = Cluster::builder().start().expect("a primary");
    let dir = TempDir::new("upgrade-handover");
    let (port, metrics) = (pooler_testkit::free_port().unwrap(), pooler_testkit::free_port().unwrap());
    let cfg = config(&dir, port, metrics, &pg);
    let mut p = Poolers::start(&cfg, dir.0.join("pooler.log"), port);
    // New clients arrive all along, over TCP: one every few milliseconds.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let longest = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, ok, refused, longest) = (stop.clone(), ok.clone(), refused.clone(), longest.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                match psql(port, "postgres", "SELECT 1") {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    None => refused.fetch_add(1, Ordering::Relaxed),
                };
                longest.fetch_max(asked.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let old = p.first.id();
    p.usr2();
    // The old process gives way: it exits once its clients are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = p.first.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the old process did not exit:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}:\n{}", p.log_text());
    let new = p.successor().expect("a successor was started");
    assert_ne!(new, old);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    let longest = Duration::from_micros(longest.load(Ordering::Relaxed));
    eprintln!(
        "FIGURES upgrade: {ok} connections (psql, one query each) across the handover, {refused} refused or failed, \
         the longest {longest:?}"
    );
    assert_eq!(refused, 0, "no client refused:\n{}", p.log_text());
    assert!(ok > 10, "clients were served meanwhile: {ok}");
    // The new process serves TCP, the Unix socket and metrics on the same
    // sockets; the socket file is still there.
    assert!(std::path::Path::new(&dir.0.join(format!(".s.PGSQL.{port}"))).exists(), "the socket file stays");
    let over_unix = Command::new(pooler_testkit::pg_bin_dir().unwrap().join("psql"))
        .args(["-X", "-At", "-h", &dir.0.display().to_string(), "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-c", "SELECT 2"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&over_unix.stdout).trim(),
        "2",
        "{}",
        String::from_utf8_lossy(&over_unix.stderr)
    );
    assert!(metrics_answer(metrics), "the metrics endpoint answers from the new process");
    assert!(std::fs::metadata(format!("/proc/{new}")).is_ok(), "the new process runs");
    assert!(p.log_text().contains("took over the listening sockets"), "{}", p.log_text());
    // And it can be upgraded in turn.
    assert!(Command::new("kill").arg("-USR2").arg(new.to_string()).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(format!("/proc/{new}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(Instant::now() < deadline, "the second process did not give way:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(psql(port, "postgres", "SELECT 3").as_deref().map(str::trim), Some("3"));
    // The third process: kill it too (its pid is in the log, after the second).
    let third: Vec<u32> = p
        .log_text()
        .lines()
        .filter(|l| l.contains("upgrade: started the new process"))
        .filter_map(|l| l.split("pid=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    for pid in third {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
}

#[test]
fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let pg = Cluster::builder().start().expect("a primary");
    let dir = TempDir::new("upgrade-failed");
    let (port, metrics) = (pooler_testkit::free_port().unwrap(), pooler_testkit::free_port().unwrap());
    let cfg = config(&dir, port, metrics, &pg);
    let mut p = Poolers::start(&cfg, dir.0.join("pooler.log"), port);
    // A client connected before, idle.
    assert_eq!(psql(port, "postgres", "SELECT 1").as_deref().map(str::trim), Some("1"));
    // The file the new process would read is broken.
    std::fs::write(&cfg, "[server\nnot toml").unwrap();
    p.usr2();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log_text().contains("upgrade failed") {
        assert!(Instant::now() < deadline, "the upgrade did not fail:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.first.try_wait().unwrap().is_none(), "the old process still runs");
    for _ in 0..5 {
        assert_eq!(psql(port, "postgres", "SELECT 1").as_deref().map(str::trim), Some("1"), "{}", p.log_text());
    }
    assert!(metrics_answer(metrics));
    assert!(dir.0.join(format!(".s.PGSQL.{port}")).exists());
}

/// While the old process drains after a handover, the primary dies: only the
/// new process runs the failover command (the old one is retired), so it
/// runs once.
#[test]
fn a_draining_old_process_runs_no_failover_command_the_new_one_runs_it_once() {
    let pg = Cluster::builder().standbys(1).start().expect("a primary and a standby");
    pg.wait_for_replication(Duration::from_secs(30)).unwrap();
    let dir = TempDir::new("upgrade-retired");
    let (port, metrics) = (pooler_testkit::free_port().unwrap(), pooler_testkit::free_port().unwrap());
    let log = dir.0.join("failovers.log");
    let runas = pooler_testkit::server_os_user().map(|(u, _, _)| format!("runuser -u {u} -- ")).unwrap_or_default();
    let failover =
        format!("echo $PPID >> {} && {runas}{}/pg_ctl promote -w -D %R", log.display(), pg.bin_dir().display());
    let standby = &pg.standbys()[0];
    let body = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"30s\"\n\
         [auth]\nmethod = \"trust\"\n[admin]\nadmin_users = [\"postgres\"]\n\
         [pool]\nmode = \"transaction\"\n\
         [routing]\nload_balance = true\ndatabase_preference = {{ postgres = \"standby\" }}\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [health]\nperiod = \"100ms\"\n[failover]\ncommand = '{failover}'\n\
         [[nodes]]\nhost = \"127.0.0.1\"\nport = {}\ndata_dir = \"{}\"\n\
         [[nodes]]\nhost = \"127.0.0.1\"\nport = {}\ndata_dir = \"{}\"\n",
        pg.primary().port(),
        pg.primary().data_dir().display(),
        standby.port(),
        standby.data_dir().display(),
    );
    let cfg = dir.0.join("pooler.toml");
    std::fs::write(&cfg, body).unwrap();
    let mut p = Poolers::start(&cfg, dir.0.join("pooler.log"), port);
    // A long read on the standby keeps the old process draining (a session
    // closes when its transaction ends), and outlives the primary. Once the
    // standby is up (checked), so that it goes there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !psql(port, "pooler", "SHOW NODES").is_some_and(|t| t.lines().filter(|l| l.contains("|up|")).count() == 2) {
        assert!(Instant::now() < deadline, "both nodes up:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut holder = Command::new(pooler_testkit::pg_bin_dir().unwrap().join("psql"))
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-c", "SELECT pg_sleep(6)"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the standby has served it and the checks have seen both nodes.
    std::thread::sleep(Duration::from_millis(1500));
    p.usr2();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log_text().contains("the new process serves") {
        assert!(Instant::now() < deadline, "no handover:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.primary().stop(pooler_testkit::StopMode::Immediate).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while psql(port, "postgres", "CREATE TABLE IF NOT EXISTS after_upgrade (x int)").is_none() {
        assert!(Instant::now() < deadline, "writes resume on the promoted standby:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let still_draining = p.first.try_wait().unwrap().is_none();
    let runs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "one failover command: {runs:?}\n{}", p.log_text());
    let ran_by: u32 = runs.trim().parse().unwrap();
    assert_ne!(ran_by, p.first.id(), "not by the old process");
    assert!(
        still_draining,
        "the old process was still draining when the primary died (the case under test):\n{}",
        p.log_text()
    );
    // The old process either reached the decision and held its command
    // back, or looked after the new one had promoted and followed it (the
    // new process, which ran the command, logs "promoted by the failover
    // hook" instead): either way it ran none, as counted above.
    let text = p.log_text();
    assert!(
        text.contains("handed over to its successor") || text.contains("this node answers as a primary"),
        "the old process held its command back or followed the promotion:\n{text}"
    );
    assert!(holder.wait().unwrap().success(), "the long read on the standby finished in the old process");
}

/// 200 clients under steady load go to the new process at their idle points,
/// with their sessions: none sees an error; each one's next
/// query there uses its prepared statement and its SET state, a cancel sent
/// with its old key reaches it, and the old process exits once they went.
#[test]
fn clients_under_load_move_to_the_new_process_with_their_settings_statements_and_cancel_keys() {
    let pg = Cluster::builder()
        .init_sql("CREATE SCHEMA s1")
        .init_sql("CREATE TABLE s1.t (x int)")
        .init_sql("INSERT INTO s1.t VALUES (42)")
        .start()
        .expect("a primary");
    let dir = TempDir::new("upgrade-clients");
    let (port, metrics) = (pooler_testkit::free_port().unwrap(), pooler_testkit::free_port().unwrap());
    let cfg = config(&dir, port, metrics, &pg);
    let mut p = Poolers::start(&cfg, dir.0.join("pooler.log"), port);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // POOLER_TEST_HANDOVER_CLIENTS=1000 for the figure of a larger handover.
    let clients_wanted = std::env::var("POOLER_TEST_HANDOVER_CLIENTS").ok().and_then(|n| n.parse().ok());
    let count: usize = clients_wanted.unwrap_or(200);
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for i in 0..count {
            let mut c = tokio_postgres::Config::new();
            c.host("127.0.0.1").port(port).user("postgres").dbname("postgres");
            let (client, conn) = c.connect(tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute(&format!("SET search_path = s1; SET work_mem = '{}kB'", 3001 + 2 * i)).await.unwrap();
            let stmt = client.prepare("SELECT x FROM t").await.unwrap();
            assert_eq!(client.query_one(&stmt, &[]).await.unwrap().get::<_, i32>(0), 42);
            clients.push((client, stmt));
        }
        clients
    });
    // psycopg (a driver that prepares server-side) holding a prepared
    // statement and SET state: it waits, idle, until told to go on.
    let psycopg: Vec<Child> = (0..4).map(|i| psycopg_client(port, i)).collect();
    let mut psycopg: Vec<(Child, std::io::BufReader<std::process::ChildStdout>)> = psycopg
        .into_iter()
        .map(|mut c| {
            let out = std::io::BufReader::new(c.stdout.take().unwrap());
            (c, out)
        })
        .collect();
    for (_, out) in &mut psycopg {
        let mut line = String::new();
        std::io::BufRead::read_line(out, &mut line).unwrap();
        assert_eq!(line.trim(), "prepared", "the psycopg client started: {line:?}");
    }
    // Steady load: every client runs its prepared statement in a loop, one
    // in an explicit transaction that stays open across the SIGUSR2.
    let clients: Vec<_> = clients.into_iter().map(Arc::new).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, longest, done) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = clients
        .iter()
        .skip(1)
        .map(|c| {
            let (c, stop, errors, longest, done) =
                (c.clone(), stop.clone(), errors.clone(), longest.clone(), done.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    match c.0.query_one(&c.1, &[]).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    longest.fetch_max(asked.elapsed().as_micros() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    rt.block_on(clients[0].0.batch_execute("BEGIN; SELECT 1")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    p.usr2();
    // The open transaction finishes on the old process, which waits for it.
    std::thread::sleep(Duration::from_millis(700));
    assert!(p.first.try_wait().unwrap().is_none(), "the old process waits for the open transaction");
    rt.block_on(clients[0].0.batch_execute("COMMIT")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = p.first.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the old process did not hand over its clients:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        rt.block_on(w).unwrap();
    }
    let (errors, done) = (errors.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
    let longest = Duration::from_micros(longest.load(Ordering::Relaxed));
    eprintln!(
        "FIGURES upgrade: {count} clients under load handed over, old process gone {took:?} after SIGUSR2 \
         (0.7 s of it waiting for an open transaction); {done} queries, {errors} errors, the longest {longest:?}"
    );
    assert_eq!(errors, 0, "no client saw an error:\n{}", p.log_text());
    // From the old log: the new process serving, to the last client but the
    // one in a transaction leaving the old one.
    let log = p.log_text();
    let at = |line: &str| -> Option<f64> {
        let t = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
        let mut parts = t.split(':');
        let (h, m, s): (f64, f64, f64) =
            (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let serving = log.lines().find(|l| l.contains("the new process serves")).and_then(at);
    let mut gone: Vec<f64> =
        log.lines().filter(|l| l.contains("handed over to the successor")).filter_map(at).collect();
    gone.sort_by(f64::total_cmp);
    if let (Some(start), Some(&last)) = (serving, gone.get(gone.len().saturating_sub(2))) {
        eprintln!(
            "FIGURES upgrade: {} clients left the old process within {:.0} ms of the new one serving",
            gone.len() - 1,
            (last - start) * 1000.0
        );
    }
    // The psycopg clients go on: their next executions run on the new
    // process, prepared statement and SET state intact.
    for (i, (mut child, mut out)) in psycopg.into_iter().enumerate() {
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success() && rest.contains(&format!("ok 42 {}kB", 5001 + 2 * i)), "psycopg client {i}: {rest}");
    }
    rt.block_on(async {
        for (i, c) in clients.iter().enumerate() {
            let (client, stmt) = &**c;
            let x: i32 = client.query_one(stmt, &[]).await.expect("the prepared statement works").get(0);
            assert_eq!(x, 42);
            let wm = client.query_one("SHOW work_mem", &[]).await.unwrap().get::<_, String>(0);
            assert_eq!(wm, format!("{}kB", 3001 + 2 * i), "client {i}'s SET survived");
        }
        // A cancel with a key given by the old process reaches the query.
        let (client, _) = &*clients[0];
        let token = client.cancel_token();
        let sleeping = client.simple_query("SELECT pg_sleep(20)");
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel_query(tokio_postgres::NoTls).await.expect("cancel sent");
        };
        let started = Instant::now();
        let (r, ()) = tokio::join!(sleeping, cancel);
        let e = r.expect_err("cancelled");
        assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
    assert!(
        p.log_text().contains("handed over its clients") || p.log_text().contains("the previous process handed over")
    );
}

/// The pool's idle server connections go to the new process: it opens
/// none of its own, serves its clients on the very backends the old one
/// had, and reset them first (their last statement is `DISCARD ALL`).
#[test]
fn idle_server_connections_move_to_the_new_process_which_opens_none() {
    hand_over_four_server_connections(4);
}

/// A new process whose pools are smaller takes what fits and closes the
/// rest: its pool's size holds across an upgrade too.
#[test]
fn a_smaller_pool_in_the_new_process_keeps_only_what_fits() {
    hand_over_four_server_connections(2);
}

/// Four idle server connections, then an upgrade to a process whose pool
/// size is `size`.
fn hand_over_four_server_connections(size: usize) {
    let pg = Cluster::builder().start().expect("a primary");
    let dir = TempDir::new("upgrade-servers");
    let (port, metrics) = (pooler_testkit::free_port().unwrap(), pooler_testkit::free_port().unwrap());
    let cfg = config(&dir, port, metrics, &pg);
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"transaction\"\n", "mode = \"transaction\"\nsize = 4\n");
    std::fs::write(&cfg, body).unwrap();
    let mut p = Poolers::start(&cfg, dir.0.join("pooler.log"), port);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Four transactions at once: four server connections, idle after.
    let connect = || async {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(port).user("postgres").dbname("postgres");
        let (client, conn) = c.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        client
    };
    let in_transactions = |clients: &[tokio_postgres::Client]| {
        let clients: Vec<_> = clients.iter().collect();
        rt.block_on(async move {
            let mut pids = std::collections::BTreeSet::new();
            for c in &clients {
                c.batch_execute("BEGIN").await.unwrap();
                pids.insert(c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
            }
            for c in &clients {
                c.batch_execute("COMMIT").await.unwrap();
            }
            pids
        })
    };
    let clients: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(connect().await);
        }
        v
    });
    let before = in_transactions(&clients);
    assert_eq!(before.len(), 4, "four server connections");
    let backends = |q: &str| -> Vec<String> {
        let sql = format!(
            "SELECT {q} FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid"
        );
        pg.primary().psql("postgres", &sql).unwrap().lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
    };
    let pids_of = |rows: Vec<String>| {
        rows.iter().map(|l| l.trim().parse::<i32>().unwrap()).collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(pids_of(backends("pid")), before);
    let body = std::fs::read_to_string(&cfg).unwrap().replace("size = 4\n", &format!("size = {size}\n"));
    std::fs::write(&cfg, body).unwrap();
    p.usr2();
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.first.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The backends the new pool has room for, each reset by the new
    // process; the others closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let kept = loop {
        let kept = pids_of(backends("pid"));
        if kept.len() == size || Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(kept.len(), size, "{}", p.log_text());
    assert!(kept.is_subset(&before), "{kept:?} of {before:?}");
    assert!(backends("query").iter().all(|q| q.trim() == "DISCARD ALL"), "{:?}", backends("query"));
    assert!(p.log_text().contains(&format!("servers={size}")), "{}", p.log_text());
    // The handed-over clients run their next transactions on them (four
    // at once: a smaller pool opens the missing ones).
    let used = in_transactions(&clients[..size]);
    assert_eq!(used, kept, "the handed-over backends serve");
    assert_eq!(pids_of(backends("pid")), kept, "and none was opened");
}

/// A psycopg 3 client (server-side prepared statements, `prepare_threshold
/// = 0`) that prepares and SETs, says `prepared`, waits for a line on its
/// stdin, then runs its statement again and prints `ok <x> <work_mem>`.
fn psycopg_client(port: u16, i: usize) -> Child {
    let python = std::env::var("POOLER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, psycopg
port, i = int(sys.argv[1]), int(sys.argv[2])
conn = psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True, prepare_threshold=0)
conn.execute("SET search_path = s1")
conn.execute("SET work_mem = '%dkB'" % (5001 + 2 * i))
q = "SELECT x FROM t WHERE x > %s"
assert conn.execute(q, (0,), prepare=True).fetchone()[0] == 42
print("prepared", flush=True)
sys.stdin.readline()
x = conn.execute(q, (1,), prepare=True).fetchone()[0]
wm = conn.execute("SHOW work_mem").fetchone()[0]
print("ok %d %s" % (x, wm), flush=True)
"#;
    Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(i.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh makes a venv with psycopg): {e}"))
}
