//! Repeated failovers under a steady writer, with a ledger of every
//! acknowledged commit: proves (and measures) that with synchronous
//! replication a failover the pooler drives loses no acknowledged commit.
//!
//! A primary + 2 streaming standbys (`full_page_writes` and `wal_log_hints`
//! on, for pg_rewind), `synchronous_standby_names = 'ANY 1 (*)'` and
//! `synchronous_commit = on` on every node (set with ALTER SYSTEM once both
//! standbys stream, so whichever node is promoted is synchronous at once and
//! its commits wait until a standby follows it: a stall, measured, not a
//! loss). The pooler binary in transaction mode in front of the three nodes,
//! promoting with the shipped `examples/failover/pg_failover.sh` and
//! re-pointing the surviving standby with `pg_follow_primary.sh`. Writers
//! (`--clients`, default 4) insert fresh ids through the pooler, one
//! autocommit INSERT at a time; an id enters the ledger only when its INSERT
//! was acknowledged. Each round (`--failovers`, default 5): writes for 2 s,
//! replay paused on one standby (`--paused-replay off` to skip), the primary
//! killed (`pg_ctl stop -m immediate`), the pooler's new primary awaited,
//! 1 s more of writes, the killed node rebuilt as a standby of the new primary
//! (`pg_follow_primary.sh`: pg_rewind, start) and taken back by the pooler
//! (auto_failback). At the end every acknowledged id is looked up on the final
//! primary; any missing one makes the exit status non-zero (with `--async`,
//! asynchronous replication, they are reported only, for comparison).
//!
//! Run: `cargo build --release -p pooler-bin -p pooler-benches && ./target/release/failover-ledger`
//! (`--log DIR` keeps the pooler's info-level log there, `--keep` the
//! servers' logs and data directories; `--help` lists the options).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pooler_benches::failover::{example_hooks_toml, example_script, nodes_toml, run_shell, TUNED_HEALTH};
use pooler_benches::PoolerProcess;
use tokio_postgres::{NoTls, SimpleQueryMessage, SimpleQueryRow};

type Error = Box<dyn std::error::Error>;

/// Longest wait for any single condition (a new primary, a rebuilt node streaming...).
const WAIT: Duration = Duration::from_secs(60);
/// Longest a single statement (a write, a control query) may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    pooler: PathBuf,
    log_dir: Option<PathBuf>,
    failovers: usize,
    clients: usize,
    paused_replay: bool,
    sync: bool,
    /// Keep the cluster's files (server logs, data directories) after the run.
    keep: bool,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        pooler: PathBuf::from("target/release/pooler"),
        log_dir: None,
        failovers: 5,
        clients: 4,
        paused_replay: true,
        sync: true,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--pooler" => a.pooler = PathBuf::from(value("PATH")?),
            "--log" => a.log_dir = Some(PathBuf::from(value("DIR")?)),
            "--failovers" => a.failovers = value("N")?.parse()?,
            "--clients" => a.clients = value("N")?.parse()?,
            "--paused-replay" => {
                a.paused_replay = match value("on|off")?.as_str() {
                    "on" | "true" | "1" => true,
                    "off" | "false" | "0" => false,
                    v => return Err(format!("--paused-replay on|off, not {v}").into()),
                }
            }
            "--no-paused-replay" => a.paused_replay = false,
            "--async" => a.sync = false,
            "--keep" => a.keep = true,
            "-h" | "--help" => {
                println!(
                    "failover-ledger [--failovers N (5)] [--clients N (4)] [--paused-replay on|off (on)] [--async] \
                     [--log DIR] [--keep] [--pooler PATH (target/release/pooler)]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg} (try --help)").into()),
        }
    }
    if a.failovers == 0 || a.clients == 0 {
        return Err("--failovers and --clients must be at least 1".into());
    }
    Ok(a)
}

/// A write the pooler acknowledged: its id committed on the node listening on `port`.
struct Ack {
    id: i64,
    done: Instant,
    port: u16,
}

/// A write that failed (error, or no answer in time): never retried with the same id.
struct Failed {
    id: i64,
    sent: Instant,
    done: Instant,
    error: String,
}

/// What the writers share with the conductor.
#[derive(Default)]
struct Ledger {
    next_id: AtomicI64,
    stop: AtomicBool,
    acks: Mutex<Vec<Ack>>,
    failed: Mutex<Vec<Failed>>,
    /// Writers' logins that failed: (started, failed, error).
    connect_failures: Mutex<Vec<(Instant, Instant, String)>>,
    /// Writers still running.
    running: AtomicUsize,
}

fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

async fn connect(port: u16) -> Result<tokio_postgres::Client, String> {
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10");
    match tokio::time::timeout(Duration::from_secs(15), tokio_postgres::connect(&conn, NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(error_text(&e)),
        Err(_) => Err(format!("connecting to 127.0.0.1:{port} took more than 15 s")),
    }
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// One writer: fresh ids, one autocommit INSERT at a time, through the pooler.
async fn writer(port: u16, ledger: Arc<Ledger>) {
    let mut client: Option<tokio_postgres::Client> = None;
    while !ledger.stop.load(Ordering::Relaxed) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            let started = Instant::now();
            match connect(port).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    client = None;
                    ledger.connect_failures.lock().unwrap().push((started, Instant::now(), e));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let id = ledger.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let sql = format!("INSERT INTO ledger (id) VALUES ({id}) RETURNING inet_server_port()");
        let sent = Instant::now();
        let result = tokio::time::timeout(STATEMENT_TIMEOUT, c.simple_query(&sql)).await;
        let done = Instant::now();
        let error = match result {
            Ok(Ok(messages)) => {
                match rows(messages).first().and_then(|r| r.get(0)).and_then(|p| p.parse::<u16>().ok()) {
                    Some(port) => {
                        ledger.acks.lock().unwrap().push(Ack { id, done, port });
                        continue;
                    }
                    None => "acknowledged without the server's port".to_owned(),
                }
            }
            Ok(Err(e)) => {
                // A FATAL error ends the session: the next write goes on a
                // new login, not into a connection about to be closed.
                if e.as_db_error().is_none_or(|d| d.severity() == "FATAL" || d.severity() == "PANIC") {
                    client = None;
                }
                error_text(&e)
            }
            Err(_) => {
                client = None;
                format!("no answer within {} s", STATEMENT_TIMEOUT.as_secs())
            }
        };
        ledger.failed.lock().unwrap().push(Failed { id, sent, done, error });
    }
    ledger.running.fetch_sub(1, Ordering::Relaxed);
}

/// A node as the pooler lists it in `SHOW pool_nodes`.
#[derive(Clone, Debug)]
struct PoolNode {
    status: String,
    role: String,
}

/// Runs the orchestration's queries on a runtime shared with the writers.
struct Conductor {
    rt: tokio::runtime::Runtime,
    pooler_port: u16,
    control: Option<tokio_postgres::Client>,
}

impl Conductor {
    /// `sql` (simple protocol) on a fresh connection straight to a node.
    fn node_query(&self, port: u16, sql: &str) -> Result<Vec<SimpleQueryRow>, String> {
        self.rt.block_on(async {
            let client = connect(port).await?;
            match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(sql)).await {
                Ok(Ok(m)) => Ok(rows(m)),
                Ok(Err(e)) => Err(format!("{sql} on 127.0.0.1:{port}: {}", error_text(&e))),
                Err(_) => Err(format!("{sql} on 127.0.0.1:{port}: no answer within {} s", STATEMENT_TIMEOUT.as_secs())),
            }
        })
    }

    /// The first row of `sql` on each node of `ports`, asked at the same
    /// moment (connections opened first, then the queries sent together).
    fn at_once(&self, ports: &[u16], sql: &str) -> Result<Vec<Vec<String>>, String> {
        self.rt.block_on(async {
            let mut clients = Vec::new();
            for &port in ports {
                clients.push(connect(port).await?);
            }
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|c| {
                    let sql = sql.to_owned();
                    tokio::spawn(async move { tokio::time::timeout(STATEMENT_TIMEOUT, c.simple_query(&sql)).await })
                })
                .collect();
            let mut out = Vec::new();
            for (t, port) in tasks.into_iter().zip(ports) {
                let m = match t.await {
                    Ok(Ok(Ok(m))) => m,
                    Ok(Ok(Err(e))) => return Err(format!("{sql} on 127.0.0.1:{port}: {}", error_text(&e))),
                    _ => return Err(format!("{sql} on 127.0.0.1:{port}: no answer")),
                };
                let rows = rows(m);
                let row = rows.first().ok_or_else(|| format!("{sql} on 127.0.0.1:{port}: no row"))?;
                out.push((0..row.len()).map(|i| row.get(i).unwrap_or("").to_owned()).collect());
            }
            Ok(out)
        })
    }

    /// The first column of the first row of `sql` on a node.
    fn node_value(&self, port: u16, sql: &str) -> Result<Option<String>, String> {
        Ok(self.node_query(port, sql)?.first().and_then(|r| r.get(0).map(str::to_owned)))
    }

    /// `SHOW pool_nodes` through the pooler, over one connection kept open.
    fn pool_nodes(&mut self) -> Result<Vec<PoolNode>, String> {
        let port = self.pooler_port;
        let control = self.control.take();
        let (result, control) = self.rt.block_on(async move {
            let client = match control {
                Some(c) if !c.is_closed() => c,
                _ => match connect(port).await {
                    Ok(c) => c,
                    Err(e) => return (Err(e), None),
                },
            };
            let r = match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query("SHOW pool_nodes")).await {
                Ok(Ok(m)) => Ok(rows(m)),
                Ok(Err(e)) => Err(error_text(&e)),
                Err(_) => Err("SHOW pool_nodes: no answer".to_owned()),
            };
            (r, Some(client))
        });
        self.control = control;
        let rows = result?;
        rows.iter()
            .map(|r| {
                let col = |name: &str| r.try_get(name).ok().flatten().unwrap_or_default().to_owned();
                Ok(PoolNode { status: col("status"), role: col("role") })
            })
            .collect()
    }
}

/// `X/Y` → a byte position.
fn lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Polls `check` every 20 ms until it gives a value, for up to `timeout`;
/// the error names `what` and the last thing `check` said.
fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {} s waiting for {what} (last: {last})", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One failover's figures.
struct Round {
    killed: usize,
    promoted: usize,
    /// (node, received, replayed) just before the kill, per standby.
    before: Vec<(usize, String, String)>,
    /// (node, received) just after the kill (frozen: nothing is streamed any more).
    after: Vec<(usize, String)>,
    paused: Option<usize>,
    sync_at_kill: String,
    /// synchronous_standby_names / synchronous_commit on the new primary as soon as the pooler names it.
    sync_on_promoted: String,
    to_pooler_primary: Duration,
    to_first_write: Duration,
    stall: Duration,
    stall_from_death_ms: i64,
    acked: usize,
    failed: usize,
    rebuild: Duration,
    back_in_pool: Duration,
    /// The round's span, to attribute missing ids to it.
    span: (Instant, Instant),
    /// Acknowledged ids of this round missing at the end.
    missing: usize,
    /// Where and when (ms from the kill) they were acknowledged.
    missing_acks: Vec<(usize, i64)>,
    died: Instant,
}

struct ErrorGroup {
    what: &'static str,
    error: String,
    count: usize,
    /// How many were sent (the write, or the login) after the first failure
    /// of their failover, when the pooler had already seen the node fail
    /// (the others were in flight when the primary died).
    sent_after_first_failure: usize,
    /// Milliseconds from the latest kill to the failure (none: before the first).
    from_death_ms: Option<(u128, u128)>,
}

/// Groups `(sent, failed, error)` by error, with when each failed relative
/// to the latest kill before it, and whether it was sent after the first
/// failure following that kill (`firsts`: the first failure of any kind
/// after each kill).
fn group_errors<'a>(
    what: &'static str,
    items: impl Iterator<Item = (Instant, Instant, &'a str)>,
    deaths: &[Instant],
    firsts: &[Option<Instant>],
) -> Vec<ErrorGroup> {
    let mut groups: Vec<ErrorGroup> = Vec::new();
    for (sent, at, error) in items {
        let death = deaths.iter().enumerate().filter(|(_, d)| **d <= at).max_by_key(|(_, d)| **d);
        let offset = death.map(|(_, d)| at.duration_since(*d).as_millis());
        let g = match groups.iter_mut().position(|g| g.error == error) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(ErrorGroup {
                    what,
                    error: error.to_owned(),
                    count: 0,
                    sent_after_first_failure: 0,
                    from_death_ms: None,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.count += 1;
        if death.and_then(|(i, _)| firsts.get(i).copied().flatten()).is_some_and(|first| sent > first) {
            g.sent_after_first_failure += 1;
        }
        if let Some(o) = offset {
            g.from_death_ms = Some(g.from_death_ms.map_or((o, o), |(lo, hi)| (lo.min(o), hi.max(o))));
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    groups
}

struct Report {
    rounds: Vec<Round>,
    acknowledged: usize,
    missing: Vec<i64>,
    failed: usize,
    failed_committed: i64,
    /// Failed writes, then the writers' failed logins, grouped by error.
    errors: Vec<ErrorGroup>,
    final_primary: usize,
    ledger_rows: i64,
    seconds: f64,
}

/// Everything needed to run the rounds; dropped (pooler, then cluster) at the end.
struct Bench {
    // Fields drop in this order: the pooler, the writers' runtime, then the cluster.
    pooler: Option<PoolerProcess>,
    conductor: Conductor,
    args: Args,
    cluster: pooler_testkit::Cluster,
    ports: Vec<u16>,
    ledger: Arc<Ledger>,
    log: PathBuf,
    /// When each primary was killed.
    deaths: Vec<Instant>,
}

impl Bench {
    fn start(args: Args) -> Result<Bench, Error> {
        let mut cluster = pooler_testkit::Cluster::builder()
            .standbys(2)
            // What pg_rewind needs to rebuild a failed primary as a standby.
            .setting("full_page_writes", "on")
            .setting("wal_log_hints", "on")
            .init_sql("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .start()?;
        if args.keep {
            cluster.keep();
            eprintln!("failover-ledger: the cluster's files stay in {}", cluster.dir().display());
        }
        cluster.wait_for_replication(WAIT)?;
        let ports: Vec<u16> = cluster.nodes().map(|n| n.port()).collect();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let conductor = Conductor { rt, pooler_port: 0, control: None };
        if args.sync {
            // On every node, now that both standbys stream (a primary with
            // no synchronous standby blocks every commit): whichever node is
            // promoted later is synchronous from its first commit, and
            // pg_rewind copies postgresql.auto.conf to a rebuilt node.
            for &port in &ports {
                for sql in [
                    "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'",
                    "ALTER SYSTEM SET synchronous_commit = on",
                    "SELECT pg_reload_conf()",
                ] {
                    conductor.node_query(port, sql)?;
                }
            }
        }
        let log = match &args.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.join(if args.sync { "failover-ledger.log" } else { "failover-ledger-async.log" })
            }
            None => cluster.dir().join("pooler.log"),
        };
        let pooler = PoolerProcess::start_logged(
            &args.pooler,
            &cluster.dir().join("pooler"),
            "",
            &format!(
                "[pool]\nmode = \"transaction\"\n[auth]\nmethod = \"trust\"\n[health]\n{TUNED_HEALTH}\n\
                 [failover]\nauto_failback = true\n{}{}",
                example_hooks_toml(&cluster),
                nodes_toml(&cluster)
            ),
            "info",
            Some(&log),
        )?;
        let mut bench = Bench {
            args,
            cluster,
            ports,
            conductor: Conductor { pooler_port: pooler.port, ..conductor },
            ledger: Arc::new(Ledger::default()),
            log,
            pooler: Some(pooler),
            deaths: Vec::new(),
        };
        bench.wait_ready(0).map_err(|e| format!("{e}\n{}", bench.diagnostics()))?;
        Ok(bench)
    }

    /// The end of the pooler's log and of the nodes' logs, for an error.
    fn diagnostics(&self) -> String {
        let tail = |path: &Path, n: usize| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut s = format!("--- pooler log ({}), last lines ---\n{}\n", self.log.display(), tail(&self.log, 40));
        for n in self.cluster.nodes() {
            for log in [n.log_file().to_path_buf(), n.data_dir().join("follow-restart.log")] {
                if log.exists() {
                    s.push_str(&format!("--- {} ---\n{}\n", log.display(), tail(&log, 8)));
                }
            }
        }
        s
    }

    fn node(&self, i: usize) -> &pooler_testkit::Node {
        self.cluster.nodes().nth(i).expect("node index")
    }

    /// Waits until `primary` is the pooler's primary, every other node is
    /// an up standby in the pooler and streams from `primary`, and (with
    /// synchronous replication) the primary counts a synchronous standby.
    fn wait_ready(&mut self, primary: usize) -> Result<(), String> {
        let pport = self.ports[primary];
        let others: Vec<usize> = (0..self.ports.len()).filter(|&i| i != primary).collect();
        for &i in &others {
            let port = self.ports[i];
            let sql =
                format!("SELECT status FROM pg_stat_wal_receiver WHERE sender_port = {pport} AND status = 'streaming'");
            wait_for(WAIT, &format!("node {i} to stream from node {primary}"), || {
                Ok(self.conductor.node_value(port, &sql)?.map(|_| ()))
            })?;
        }
        wait_for(
            WAIT,
            &format!("the pooler to list node {primary} as the primary and the others as up standbys"),
            || {
                let nodes = self.conductor.pool_nodes()?;
                let ok = nodes.len() == self.ports.len()
                    && nodes
                        .iter()
                        .enumerate()
                        .all(|(i, n)| n.status == "up" && n.role == if i == primary { "primary" } else { "standby" });
                if ok {
                    Ok(Some(()))
                } else {
                    Err(format!("{nodes:?}"))
                }
            },
        )?;
        if self.args.sync {
            wait_for(WAIT, &format!("node {primary} to count a synchronous standby"), || {
                let n = self.conductor.node_value(
                    pport,
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')",
                )?;
                Ok(n.filter(|n| n != "0").map(|_| ()))
            })?;
        }
        Ok(())
    }

    fn start_writers(&self) {
        for _ in 0..self.args.clients {
            self.ledger.running.fetch_add(1, Ordering::Relaxed);
            self.conductor.rt.spawn(writer(self.conductor.pooler_port, self.ledger.clone()));
        }
    }

    fn acks_since(&self, since: Instant) -> usize {
        self.ledger.acks.lock().unwrap().iter().filter(|a| a.done > since).count()
    }

    /// The first write acknowledged after `since` by the node on `port`.
    fn first_ack_on(&self, port: u16, since: Instant) -> Option<Instant> {
        self.ledger.acks.lock().unwrap().iter().filter(|a| a.done > since && a.port == port).map(|a| a.done).min()
    }

    fn round(&mut self, n: usize, primary: usize) -> Result<Round, String> {
        let round_start = Instant::now();
        let standbys: Vec<usize> = (0..self.ports.len()).filter(|&i| i != primary).collect();
        std::thread::sleep(Duration::from_secs(2));
        let paused = if self.args.paused_replay {
            let s = standbys[n % standbys.len()];
            self.conductor.node_query(self.ports[s], "SELECT pg_wal_replay_pause()")?;
            // Let the paused standby's replay fall behind what it receives.
            std::thread::sleep(Duration::from_millis(500));
            Some(s)
        } else {
            None
        };
        let sync_at_kill = if self.args.sync {
            let names = self.conductor.node_value(self.ports[primary], "SHOW synchronous_standby_names")?;
            let commit = self.conductor.node_value(self.ports[primary], "SHOW synchronous_commit")?;
            let states = self.conductor.node_value(
                self.ports[primary],
                "SELECT string_agg(sync_state, ',' ORDER BY sync_state) FROM pg_stat_replication",
            )?;
            format!("{} / {} / {}", names.unwrap_or_default(), commit.unwrap_or_default(), states.unwrap_or_default())
        } else {
            String::new()
        };
        let standby_ports: Vec<u16> = standbys.iter().map(|&s| self.ports[s]).collect();
        let before: Vec<(usize, String, String)> = self
            .conductor
            .at_once(&standby_ports, "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()")?
            .into_iter()
            .zip(&standbys)
            .map(|(v, &s)| (s, v[0].clone(), v[1].clone()))
            .collect();

        let died = Instant::now();
        self.deaths.push(died);
        self.node(primary).stop(pooler_testkit::StopMode::Immediate).map_err(|e| e.to_string())?;
        let after: Vec<(usize, String)> = self
            .conductor
            .at_once(&standby_ports, "SELECT pg_last_wal_receive_lsn()")?
            .into_iter()
            .zip(&standbys)
            .map(|(v, &s)| (s, v[0].clone()))
            .collect();

        let promoted = wait_for(WAIT, "the pooler to report a new primary", || {
            let nodes = self.conductor.pool_nodes()?;
            Ok(nodes.iter().position(|n| n.role == "primary" && n.status == "up").filter(|&i| i != primary))
        })?;
        let to_pooler_primary = died.elapsed();
        let sync_on_promoted = if self.args.sync {
            let names = self.conductor.node_value(self.ports[promoted], "SHOW synchronous_standby_names")?;
            let commit = self.conductor.node_value(self.ports[promoted], "SHOW synchronous_commit")?;
            format!("{} / {}", names.unwrap_or_default(), commit.unwrap_or_default())
        } else {
            String::new()
        };
        if let Some(s) = paused.filter(|&s| s != promoted) {
            // Replay resumed, so it can follow the new primary's timeline
            // (pg_failover.sh resumes it itself when it is the one promoted).
            self.conductor.node_query(
                self.ports[s],
                "DO $$BEGIN IF pg_is_in_recovery() AND pg_is_wal_replay_paused() THEN \
                 PERFORM pg_wal_replay_resume(); END IF; END$$",
            )?;
        }
        let new_port = self.ports[promoted];
        let first = wait_for(WAIT, &format!("a write acknowledged by the new primary, node {promoted}"), || {
            Ok(self.first_ack_on(new_port, died))
        })?;
        let to_first_write = first.duration_since(died);
        std::thread::sleep(Duration::from_secs(1));

        // Rebuild the killed node as a standby of the new primary, as a DBA
        // would: the follow script finds it down, rewinds it and starts it.
        let rebuild_start = Instant::now();
        let old = self.node(primary);
        let script = example_script(
            &self.cluster.bin_dir().display().to_string(),
            "pg_follow_primary.sh",
            &format!("{primary} 127.0.0.1 {} {} {promoted} 127.0.0.1 {new_port}", old.port(), old.data_dir().display()),
        );
        let out = run_shell(&format!("FOLLOW_WAIT=1 {script}"), Duration::from_secs(180))?;
        if !out.contains("rewound and started as a standby") {
            return Err(format!("the follow script did not rebuild node {primary}:\n{out}"));
        }
        let rebuild = rebuild_start.elapsed();
        self.wait_ready(promoted)?;
        let back_in_pool = rebuild_start.elapsed();
        let round_end = Instant::now();

        // The longest time without any acknowledged write, over the round.
        let mut times: Vec<Instant> = self
            .ledger
            .acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.done > round_start && a.done <= round_end)
            .map(|a| a.done)
            .collect();
        let acked = times.len();
        times.push(round_start);
        times.push(round_end);
        times.sort();
        let (stall_start, stall) = times
            .windows(2)
            .map(|w| (w[0], w[1].duration_since(w[0])))
            .max_by_key(|(_, d)| *d)
            .unwrap_or((round_start, Duration::ZERO));
        let stall_from_death_ms = if stall_start >= died {
            stall_start.duration_since(died).as_millis() as i64
        } else {
            -(died.duration_since(stall_start).as_millis() as i64)
        };
        let failed =
            self.ledger.failed.lock().unwrap().iter().filter(|f| f.done > round_start && f.done <= round_end).count();
        Ok(Round {
            killed: primary,
            promoted,
            before,
            after,
            paused,
            sync_at_kill,
            sync_on_promoted,
            to_pooler_primary,
            to_first_write,
            stall,
            stall_from_death_ms,
            acked,
            failed,
            rebuild,
            back_in_pool,
            span: (round_start, round_end),
            missing: 0,
            missing_acks: Vec::new(),
            died,
        })
    }

    fn run(&mut self) -> Result<Report, String> {
        let started = Instant::now();
        self.start_writers();
        let t0 = Instant::now();
        wait_for(WAIT, "the first acknowledged write", || Ok((self.acks_since(t0) > 0).then_some(())))?;
        let mut primary = 0;
        let mut rounds = Vec::new();
        for n in 1..=self.args.failovers {
            let r = self.round(n, primary).map_err(|e| format!("failover {n}: {e}"))?;
            eprintln!(
                "failover {n}: node {} killed, node {} promoted; first acknowledged write there after {} ms; \
                 longest stall {} ms; node {} back as a standby",
                r.killed,
                r.promoted,
                r.to_first_write.as_millis(),
                r.stall.as_millis(),
                r.killed
            );
            primary = r.promoted;
            rounds.push(r);
        }
        self.ledger.stop.store(true, Ordering::Relaxed);
        // Each writer finishes its statement in flight (bounded by STATEMENT_TIMEOUT).
        wait_for(STATEMENT_TIMEOUT + Duration::from_secs(10), "the writers to stop", || {
            Ok((self.ledger.running.load(Ordering::Relaxed) == 0).then_some(()))
        })?;
        let seconds = started.elapsed().as_secs_f64();

        let acknowledged: Vec<i64> = self.ledger.acks.lock().unwrap().iter().map(|a| a.id).collect();
        let failed_ids: Vec<i64> = self.ledger.failed.lock().unwrap().iter().map(|f| f.id).collect();
        let final_port = self.ports[primary];
        if self.conductor.node_value(final_port, "SELECT pg_is_in_recovery()")?.as_deref() != Some("f") {
            return Err(format!("node {primary}, the last primary, is in recovery"));
        }
        // Every acknowledged id, looked up on the final primary in one query.
        let (missing, failed_committed, ledger_rows) = self.conductor.rt.block_on(async {
            let client = connect(final_port).await?;
            let err = |e: tokio_postgres::Error| error_text(&e);
            let missing: Vec<i64> = client
                .query_one(
                    "SELECT coalesce(array_agg(a.id ORDER BY a.id), '{}') FROM unnest($1::bigint[]) AS a(id) \
                     WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.id = a.id)",
                    &[&acknowledged],
                )
                .await
                .map_err(err)?
                .get(0);
            let committed: i64 = client
                .query_one("SELECT count(*) FROM ledger WHERE id = ANY($1::bigint[])", &[&failed_ids])
                .await
                .map_err(err)?
                .get(0);
            let rows: i64 = client.query_one("SELECT count(*) FROM ledger", &[]).await.map_err(err)?.get(0);
            Ok::<_, String>((missing, committed, rows))
        })?;
        {
            let acks = self.ledger.acks.lock().unwrap();
            let by_id: std::collections::HashMap<i64, &Ack> = acks.iter().map(|a| (a.id, a)).collect();
            for id in &missing {
                let Some(a) = by_id.get(id) else { continue };
                if let Some(r) = rounds.iter_mut().find(|r| r.span.0 < a.done && a.done <= r.span.1) {
                    r.missing += 1;
                    let node = self.ports.iter().position(|&p| p == a.port).unwrap_or(usize::MAX);
                    let ms = if a.done >= r.died {
                        a.done.duration_since(r.died).as_millis() as i64
                    } else {
                        -(r.died.duration_since(a.done).as_millis() as i64)
                    };
                    r.missing_acks.push((node, ms));
                }
            }
        }
        let failed = self.ledger.failed.lock().unwrap();
        let logins = self.ledger.connect_failures.lock().unwrap();
        // The first failure (write or login) after each kill: from then on the
        // pooler had seen the node fail.
        let firsts: Vec<Option<Instant>> = self
            .deaths
            .iter()
            .map(|d| failed.iter().map(|f| f.done).chain(logins.iter().map(|l| l.1)).filter(|t| t >= d).min())
            .collect();
        let mut errors =
            group_errors("write", failed.iter().map(|f| (f.sent, f.done, f.error.as_str())), &self.deaths, &firsts);
        errors.extend(group_errors(
            "login",
            logins.iter().map(|(s, t, e)| (*s, *t, e.as_str())),
            &self.deaths,
            &firsts,
        ));
        drop((failed, logins));
        Ok(Report {
            rounds,
            acknowledged: acknowledged.len(),
            missing,
            failed: failed_ids.len(),
            failed_committed,
            errors,
            final_primary: primary,
            ledger_rows,
            seconds,
        })
    }
}

fn print_report(args: &Args, r: &Report) {
    let mode = if args.sync {
        "synchronous replication (`synchronous_standby_names = 'ANY 1 (*)'`, `synchronous_commit = on`)"
    } else {
        "asynchronous replication"
    };
    println!(
        "\n## failover-ledger: {mode}, {} writers, replay paused on one standby: {}\n",
        args.clients,
        if args.paused_replay { "yes" } else { "no" }
    );
    println!(
        "| failover | killed → promoted | standbys' received WAL just before the kill (replayed) | received just after | \
         promoted received the most | death → pooler's new primary | death → first acknowledged write on it | \
         longest write stall (starts at, from death) | writes acked / failed / acked but missing | rebuild (pg_rewind + start) / back in the pool |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, x) in r.rounds.iter().enumerate() {
        let before: Vec<String> = x
            .before
            .iter()
            .map(|(n, recv, replay)| {
                let p = if Some(*n) == x.paused { ", paused" } else { "" };
                format!("{n}: {recv} ({replay}{p})")
            })
            .collect();
        let after: Vec<String> = x.after.iter().map(|(n, recv)| format!("{n}: {recv}")).collect();
        let most = |v: &[(usize, u64)]| {
            let max = v.iter().map(|(_, l)| *l).max().unwrap_or(0);
            v.iter().any(|(n, l)| *n == x.promoted && *l == max)
        };
        let b: Vec<(usize, u64)> = x.before.iter().map(|(n, l, _)| (*n, lsn(l).unwrap_or(0))).collect();
        let a: Vec<(usize, u64)> = x.after.iter().map(|(n, l)| (*n, lsn(l).unwrap_or(0))).collect();
        let yes = |v: bool| if v { "yes" } else { "no" };
        println!(
            "| {} | {} → {} | {} | {} | {} before / {} after | {} ms | {} ms | {} ms ({:+} ms) | {} / {} / {} | {:.1} s / {:.1} s |",
            i + 1,
            x.killed,
            x.promoted,
            before.join("; "),
            after.join("; "),
            yes(most(&b)),
            yes(most(&a)),
            x.to_pooler_primary.as_millis(),
            x.to_first_write.as_millis(),
            x.stall.as_millis(),
            x.stall_from_death_ms,
            x.acked,
            x.failed,
            x.missing,
            x.rebuild.as_secs_f64(),
            x.back_in_pool.as_secs_f64()
        );
    }
    if args.sync {
        let sync: Vec<&str> = r.rounds.iter().map(|x| x.sync_at_kill.as_str()).collect();
        println!(
            "\nOn the primary at each kill (synchronous_standby_names / synchronous_commit / its standbys' sync_state): {}",
            sync.join("; ")
        );
        let promoted: Vec<&str> = r.rounds.iter().map(|x| x.sync_on_promoted.as_str()).collect();
        println!("On the promoted node as soon as the pooler named it: {}", promoted.join("; "));
    }
    let max = |f: fn(&Round) -> Duration| r.rounds.iter().map(f).max().unwrap_or_default().as_millis();
    let min = |f: fn(&Round) -> Duration| r.rounds.iter().map(f).min().unwrap_or_default().as_millis();
    println!(
        "\n| failovers | acknowledged commits | missing acknowledged commits | failed writes | failed writes committed anyway | \
         death → first acknowledged write (min-max) | longest write stall | run |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | **{}** | {} | {} | {}-{} ms | {} ms | {:.0} s, {:.0} writes/s |",
        r.rounds.len(),
        r.acknowledged,
        r.missing.len(),
        r.failed,
        r.failed_committed,
        min(|x| x.to_first_write),
        max(|x| x.to_first_write),
        max(|x| x.stall),
        r.seconds,
        r.acknowledged as f64 / r.seconds
    );
    println!("\nFinal primary: node {}, {} rows in the ledger table.", r.final_primary, r.ledger_rows);
    if !r.errors.is_empty() {
        println!("\nWrites and writers' logins that failed, by error:\n");
        for g in &r.errors {
            let when = match g.from_death_ms {
                Some((lo, hi)) if lo == hi => format!("{lo} ms after a kill"),
                Some((lo, hi)) => format!("{lo}-{hi} ms after a kill"),
                None => "before the first failover".to_owned(),
            };
            println!(
                "- {} {} × `{}` ({when}; {} in flight when the primary died, {} sent after the first failure)",
                g.count,
                g.what,
                g.error,
                g.count - g.sent_after_first_failure,
                g.sent_after_first_failure
            );
        }
    }
    for (i, x) in r.rounds.iter().enumerate().filter(|(_, x)| x.missing > 0) {
        let mut nodes: Vec<usize> = x.missing_acks.iter().map(|(n, _)| *n).collect();
        nodes.sort();
        nodes.dedup();
        for n in nodes {
            let ms: Vec<i64> = x.missing_acks.iter().filter(|(m, _)| *m == n).map(|(_, ms)| *ms).collect();
            println!(
                "Failover {}: {} missing ids had been acknowledged by node {n}{}, {} to {} ms from the kill.",
                i + 1,
                ms.len(),
                if n == x.killed { " (the one killed)" } else { "" },
                ms.iter().min().unwrap_or(&0),
                ms.iter().max().unwrap_or(&0)
            );
        }
    }
    if !r.missing.is_empty() {
        println!(
            "Missing acknowledged ids (first {}): {:?}",
            r.missing.len().min(20),
            &r.missing[..r.missing.len().min(20)]
        );
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("failover-ledger: {e}");
            std::process::exit(2);
        }
    };
    let sync = args.sync;
    // Everything (writers, pooler, cluster) is stopped and removed when
    // `bench` drops, before the exit status is decided.
    let outcome = (|| -> Result<(Args, Report), Error> {
        let mut bench = Bench::start(args)?;
        let report = bench.run().map_err(|e| format!("{e}\n{}", bench.diagnostics()))?;
        bench.pooler.take();
        let Bench { args, conductor, .. } = bench;
        conductor.rt.shutdown_timeout(Duration::from_secs(5));
        Ok((args, report))
    })();
    match outcome {
        Ok((args, report)) => {
            print_report(&args, &report);
            if sync && !report.missing.is_empty() {
                eprintln!(
                    "failover-ledger: {} acknowledged commits are missing on the final primary",
                    report.missing.len()
                );
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("failover-ledger: {e}");
            std::process::exit(1);
        }
    }
}
