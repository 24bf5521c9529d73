//! The load harness: one PostgreSQL primary + streaming standby, and the same
//! pgbench workloads against each target in one run: PostgreSQL directly, the
//! `pooler` binary, the pooler in this process through the library, and, when
//! installed, pgbouncer and pgpool-II (Debian packages) with equivalent
//! settings (transaction pooling over a pool of 20 where the peer has it;
//! pgpool, a process per client, gets a child per client and its connection
//! cache). Every run starts its target afresh and reports throughput, latency
//! percentiles from pgbench's per-transaction log (`-l`), the target's own CPU
//! time per transaction (from /proc, process tree for pgpool) and its peak RSS.
//! Idle-client memory is measured apart, with N clients logged in and silent.
//!
//! Results go to `--out` (default `benches/results/<date>/`): `results.md`
//! (machine, tables, which targets hold) and one SVG chart per workload.
//!
//! Run: `cargo build --release -p pooler-bin -p pooler-benches && ./target/release/bench-matrix`
//! (about 15 minutes); `--quick` is a 3-minute smoke run. See docs/BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pooler_benches::report::{bar_chart, line_chart, quantile, read_latencies, Series};
use pooler_benches::{
    cpu_seconds, field, rss_kib, tree_cpu_seconds, tree_peak_rss_kib, Pgbouncer, Pgpool, PoolerProcess,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Direct,
    Pooler,
    PoolerLib,
    Pgbouncer,
    Pgpool,
}

const ALL: [Target; 5] = [Target::Direct, Target::Pooler, Target::PoolerLib, Target::Pgbouncer, Target::Pgpool];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pooler => "pooler",
            Target::PoolerLib => "pooler (library)",
            Target::Pgbouncer => "pgbouncer",
            Target::Pgpool => "pgpool-II",
        }
    }

    fn parse(s: &str) -> Option<Target> {
        match s {
            "direct" => Some(Target::Direct),
            "pooler" => Some(Target::Pooler),
            "lib" | "pooler-lib" => Some(Target::PoolerLib),
            "pgbouncer" => Some(Target::Pgbouncer),
            "pgpool" => Some(Target::Pgpool),
            _ => None,
        }
    }
}

struct Workload {
    name: &'static str,
    title: &'static str,
    args: Vec<String>,
    clients: Vec<usize>,
}

struct Row {
    target: Target,
    clients: usize,
    tps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    failed: u64,
    txns: u64,
    cpu_us: Option<f64>,
    rss_kib: Option<u64>,
    note: Option<String>,
}

/// The pooler running inside this process, through the library.
struct InProcess {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(config: pooler_core::Config) -> Result<InProcess, Box<dyn std::error::Error>> {
        let port = pooler_testkit::free_port()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let pooler = match pooler_core::Pooler::new(config) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                pooler
                    .run(listener, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        ready.recv()??;
        Ok(InProcess { port, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A target up and running for one measurement.
enum Running {
    Direct(u16),
    Process(PoolerProcess),
    Lib(InProcess),
    Bouncer(Pgbouncer),
    Pool(Pgpool),
}

impl Running {
    fn port(&self) -> u16 {
        match self {
            Running::Direct(p) => *p,
            Running::Process(p) => p.port,
            Running::Lib(p) => p.port,
            Running::Bouncer(b) => b.port,
            Running::Pool(p) => p.port,
        }
    }

    /// CPU seconds the target has used so far (`None`: PostgreSQL itself).
    fn cpu(&self) -> Option<f64> {
        match self {
            Running::Direct(_) => None,
            Running::Process(p) => cpu_seconds(p.pid()),
            Running::Lib(_) => cpu_seconds(std::process::id()),
            Running::Bouncer(b) => cpu_seconds(b.pid()),
            Running::Pool(p) => Some(tree_cpu_seconds(p.pid())),
        }
    }

    /// Peak resident size so far, KiB (pgpool: summed over its processes).
    fn peak_rss(&self) -> Option<u64> {
        match self {
            Running::Direct(_) => None,
            Running::Process(p) => rss_kib(p.pid()).map(|r| r.0),
            Running::Lib(_) => rss_kib(std::process::id()).map(|r| r.0),
            Running::Bouncer(b) => rss_kib(b.pid()).map(|r| r.0),
            Running::Pool(p) => Some(tree_peak_rss_kib(p.pid())),
        }
    }
}

/// How clients reach the target (`--transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// Plain TCP on loopback (the default).
    Tcp,
    /// TLS from pgbench to the pooler (`sslmode=require`); the pooler to
    /// PostgreSQL in plain text. Direct: no TLS (the server has none).
    Tls,
    /// Unix sockets from pgbench to the target and from the target to
    /// PostgreSQL.
    Unix,
}

struct Setup {
    transport: Transport,
    /// The poolers' certificate and key (TLS runs).
    tls_files: Option<(PathBuf, PathBuf)>,
    /// PostgreSQL's socket directory; the poolers' sockets go in `work`.
    pg_sockets: PathBuf,
    pooler_bin: PathBuf,
    pg_bin: PathBuf,
    work: PathBuf,
    nodes: Vec<u16>,
    pool: usize,
    /// `server.worker_threads` of the pooler binary (0: one per core).
    threads: usize,
}

fn pooler_toml(setup: &Setup, clients: usize) -> (String, String) {
    let host = match setup.transport {
        Transport::Unix => setup.pg_sockets.display().to_string(),
        _ => "127.0.0.1".into(),
    };
    let nodes: String = setup.nodes.iter().map(|p| format!("[[nodes]]\nhost = \"{host}\"\nport = {p}\n")).collect();
    let mut server = format!("max_client_connections = {}\nworker_threads = {}", clients + 100, setup.threads);
    let mut rest = format!("[pool]\nmode = \"transaction\"\nsize = {}\n[auth]\nmethod = \"trust\"\n", setup.pool);
    match (setup.transport, &setup.tls_files) {
        (Transport::Unix, _) => server.push_str(&format!("\nunix_socket_dir = \"{}\"", sockets_dir(setup).display())),
        (Transport::Tls, Some((cert, key))) => rest.push_str(&format!(
            "[client_tls]\nsslmode = \"require\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        )),
        _ => {}
    }
    if setup.transport == Transport::Tls {
        // As pgbouncer's server_tls_sslmode = disable (plain TCP runs leave
        // the default, so binaries from before TLS run the same file).
        rest.push_str("[server_tls]\nsslmode = \"disable\"\n");
    }
    rest.push_str(&nodes);
    (server, rest)
}

/// Where the poolers put their Unix sockets.
fn sockets_dir(setup: &Setup) -> PathBuf {
    setup.work.join("sockets")
}

/// pgbouncer's settings for the transport, and the host it reaches
/// PostgreSQL at.
fn pgbouncer_extra(setup: &Setup) -> (String, String) {
    match (setup.transport, &setup.tls_files) {
        (Transport::Unix, _) => (
            format!("unix_socket_dir = {}\n", sockets_dir(setup).display()),
            setup.pg_sockets.display().to_string(),
        ),
        (Transport::Tls, Some((cert, key))) => (
            format!(
                "client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\nserver_tls_sslmode = disable\n",
                cert.display(),
                key.display()
            ),
            "127.0.0.1".into(),
        ),
        _ => (String::new(), "127.0.0.1".into()),
    }
}

/// The certificate both poolers present under `--transport tls`, readable
/// by the OS user pgbouncer runs as.
fn tls_files(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?.self_signed(&key)?;
    let (c, k) = (dir.join("bench-cert.pem"), dir.join("bench-key.pem"));
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))?;
    if let Some((_, uid, gid)) = pooler_testkit::server_os_user() {
        for f in [dir, c.as_path(), k.as_path()] {
            std::os::unix::fs::chown(f, Some(uid), Some(gid))?;
        }
    }
    Ok((c, k))
}

fn start(setup: &Setup, target: Target, clients: usize) -> Result<Running, String> {
    let dir = setup.work.join(format!("{:?}-{clients}", target).to_lowercase());
    let e = |e: Box<dyn std::error::Error>| e.to_string();
    match target {
        Target::Direct => Ok(Running::Direct(setup.nodes[0])),
        Target::Pooler => {
            let (server, rest) = pooler_toml(setup, clients);
            PoolerProcess::start(&setup.pooler_bin, &dir, &server, &rest).map(Running::Process).map_err(e)
        }
        Target::PoolerLib if setup.transport != Transport::Tcp => {
            Err("not run: the in-process target is measured over plain TCP only".into())
        }
        Target::PoolerLib => {
            let nodes = setup.nodes.iter().map(|&p| pooler_core::config::NodeConfig::new("127.0.0.1", p)).collect();
            let mut c = pooler_core::Config::with_nodes(nodes);
            c.auth.method = pooler_core::config::AuthMethod::Trust;
            c.server.log_connections = false;
            c.server.max_client_connections = clients + 100;
            c.pool.mode = pooler_core::config::PoolMode::Transaction;
            c.pool.size = setup.pool;
            // The peak is this process's: start counting afresh.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            InProcess::start(c).map(Running::Lib).map_err(e)
        }
        Target::Pgbouncer => {
            let (extra, host) = pgbouncer_extra(setup);
            Pgbouncer::start_with(&dir, &host, setup.nodes[0], setup.pool, clients, "transaction", &extra)
                .map(Running::Bouncer)
                .map_err(e)
        }
        Target::Pgpool if setup.transport != Transport::Tcp => {
            Err("not run: pgpool is measured over plain TCP only".into())
        }
        Target::Pgpool => {
            if clients > 256 {
                return Err("not run: pgpool needs a process (and a server connection) per client".into());
            }
            Pgpool::start(&dir, &setup.nodes, clients).map(Running::Pool).map_err(e)
        }
    }
}

fn measure(setup: &Setup, w: &Workload, target: Target, clients: usize, seconds: u64) -> Row {
    let mut row = Row {
        target,
        clients,
        tps: 0.0,
        p50: 0,
        p99: 0,
        p999: 0,
        failed: 0,
        txns: 0,
        cpu_us: None,
        rss_kib: None,
        note: None,
    };
    let running = match start(setup, target, clients) {
        Ok(r) => r,
        Err(e) => {
            row.note = Some(e);
            return row;
        }
    };
    let logs = setup.work.join("logs");
    let _ = std::fs::create_dir_all(&logs);
    let cpu_before = running.cpu();
    let host = match (setup.transport, &running) {
        (Transport::Unix, Running::Direct(_)) => setup.pg_sockets.display().to_string(),
        (Transport::Unix, _) => sockets_dir(setup).display().to_string(),
        _ => "127.0.0.1".into(),
    };
    let sslmode = match (setup.transport, &running) {
        (Transport::Tls, Running::Direct(_)) => "disable",
        (Transport::Tls, _) => "require",
        _ => "disable",
    };
    let out = std::process::Command::new(setup.pg_bin.join("pgbench"))
        .env("PGSSLMODE", sslmode)
        .args(["-h", &host, "-p", &running.port().to_string(), "-U", "postgres", "-n"])
        .args(["-c", &clients.to_string(), "-j", &clients.clamp(1, 2).to_string(), "-T", &seconds.to_string()])
        .arg("-l")
        .arg(format!("--log-prefix={}/tx", logs.display()))
        .args(&w.args)
        .arg("postgres")
        .output();
    let cpu_after = running.cpu();
    row.rss_kib = running.peak_rss();
    drop(running);
    let mut lat = read_latencies(&logs, "tx").unwrap_or_default();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            row.note = Some(format!("pgbench did not run: {e}"));
            return row;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err.lines().find(|l| l.contains("error") || l.contains("FATAL")).unwrap_or("pgbench failed");
        row.note = Some(format!("aborted: {}", why.trim()));
        // What pgbench printed before it gave up is no throughput figure.
        let _ = std::fs::remove_dir_all(setup.work.join("logs"));
        row.tps = 0.0;
        return row;
    }
    let num = |prefix: &str| field(&text, prefix).and_then(|v| v.split_whitespace().next()).map(str::to_owned);
    row.tps = num("tps =").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    row.txns = num("number of transactions actually processed:").and_then(|v| v.parse().ok()).unwrap_or(0);
    row.failed = num("number of failed transactions:").and_then(|v| v.parse().ok()).unwrap_or(0);
    lat.sort_unstable();
    row.p50 = quantile(&lat, 0.5);
    row.p99 = quantile(&lat, 0.99);
    row.p999 = quantile(&lat, 0.999);
    if let (Some(a), Some(b)) = (cpu_after, cpu_before) {
        if row.txns > 0 {
            row.cpu_us = Some((a - b) / row.txns as f64 * 1e6);
        }
    }
    row
}

/// Idle clients: log in `n` clients and leave them silent; KiB of RSS per client.
fn idle_memory(setup: &Setup, target: Target, n: usize) -> Result<(u64, u64, f64), String> {
    let running = start(setup, target, n)?;
    let port = running.port();
    let pid = match &running {
        Running::Process(p) => p.pid(),
        Running::Bouncer(b) => b.pid(),
        _ => return Err("idle memory is measured for separate processes only".into()),
    };
    let login = |port: u16| -> std::io::Result<std::net::TcpStream> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut buf = bytes::BytesMut::new();
        pooler_core::internals::write::startup_message(&mut buf, 0, &[("user", "postgres"), ("database", "postgres")]);
        s.write_all(&buf)?;
        let mut got = Vec::new();
        let mut b = [0u8; 2048];
        while !got.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
            let k = s.read(&mut b)?;
            if k == 0 {
                return Err(std::io::Error::other("closed during login"));
            }
            got.extend_from_slice(&b[..k]);
        }
        Ok(s)
    };
    drop(login(port).map_err(|e| e.to_string())?);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid).map(|r| r.1).unwrap_or(0);
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(login(port).map_err(|e| format!("after {} clients: {e}", open.len()))?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let with = rss_kib(pid).map(|r| r.1).unwrap_or(0);
    drop(open);
    drop(running);
    Ok((before, with, with.saturating_sub(before) as f64 / n as f64))
}

fn machine(pg_bin: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("?");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let version = |cmd: &Path, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                // pgpool prints its version on standard error.
                let text = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "not installed".into())
    };
    format!(
        "{cores} cores ({model}), {mem} memory; {}; {}; {}; pgbench and every server on the same machine",
        version(&pg_bin.join("postgres"), "--version"),
        version(Path::new("/usr/sbin/pgbouncer"), "--version"),
        version(Path::new("/usr/sbin/pgpool"), "--version"),
    )
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| clients | target | tps | vs direct | p50 ms | p99 ms | p99.9 ms | failed | CPU µs/txn (ms per 1000) | peak RSS MiB | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let direct = rows.iter().find(|d| d.clients == r.clients && d.target == Target::Direct).map(|d| d.tps);
        let vs = match direct {
            Some(d) if d > 0.0 && r.tps > 0.0 => format!("{:.2}", r.tps / d),
            _ => "".into(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.clients,
            r.target.label(),
            r.tps,
            vs,
            ms(r.p50),
            ms(r.p99),
            ms(r.p999),
            r.failed,
            r.cpu_us.map(|c| format!("{c:.1}")).unwrap_or_default(),
            r.rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_default(),
            r.note.as_deref().unwrap_or("")
        );
    }
    t
}

fn charts(out: &Path, w: &Workload, rows: &[Row], targets: &[Target]) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let ok = |r: &&Row| r.note.is_none() && r.tps > 0.0;
    if w.clients.len() >= 3 {
        let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<Series> {
            targets
                .iter()
                .map(|&t| Series {
                    name: t.label().into(),
                    points: rows
                        .iter()
                        .filter(|r| r.target == t)
                        .filter(ok)
                        .filter_map(|r| Some((r.clients as f64, f(r)?)))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect()
        };
        let name = format!("{}-tps.svg", w.name);
        std::fs::write(
            out.join(&name),
            line_chart(&format!("{}: throughput", w.title), "clients", "transactions/s", &series(&|r| Some(r.tps))),
        )?;
        files.push(name);
        let name = format!("{}-p99.svg", w.name);
        std::fs::write(
            out.join(&name),
            line_chart(
                &format!("{}: p99 latency", w.title),
                "clients",
                "ms",
                &series(&|r| Some(r.p99 as f64 / 1000.0)),
            ),
        )?;
        files.push(name);
        let name = format!("{}-cpu.svg", w.name);
        std::fs::write(
            out.join(&name),
            line_chart(&format!("{}: pooler CPU per transaction", w.title), "clients", "µs", &series(&|r| r.cpu_us)),
        )?;
        files.push(name);
    } else {
        for &c in &w.clients {
            let bars: Vec<(String, f64)> = rows
                .iter()
                .filter(|r| r.clients == c)
                .filter(ok)
                .map(|r| (r.target.label().to_owned(), r.tps))
                .collect();
            let name = format!("{}-{c}.svg", w.name);
            std::fs::write(
                out.join(&name),
                bar_chart(&format!("{}, {c} clients: throughput", w.title), "transactions/s", &bars),
            )?;
            files.push(name);
        }
    }
    Ok(files)
}

/// Which of the targets hold, from the sweep and the idle run.
/// Idle-memory result per target: RSS before, with the clients (KiB), and KiB per client.
type IdleResult = (Target, Result<(u64, u64, f64), String>);

fn verdicts(sweep: &[Row], idle: &[IdleResult]) -> String {
    let mut v = String::new();
    let get = |t: Target, c: usize| sweep.iter().find(|r| r.target == t && r.clients == c && r.note.is_none());
    for c in [64, 256] {
        if let (Some(p), Some(b)) = (get(Target::Pooler, c), get(Target::Pgbouncer, c)) {
            if let (Some(pc), Some(bc)) = (p.cpu_us, b.cpu_us) {
                let _ = writeln!(
                    v,
                    "- CPU per transaction at {c} clients: pooler {pc:.1} µs, pgbouncer {bc:.1} µs, ratio {:.2} (target ≤ 0.50): {}",
                    pc / bc,
                    if pc <= bc / 2.0 { "holds" } else { "does not hold" }
                );
            }
        }
    }
    let mut all_ge = true;
    let mut counted = 0;
    for b in sweep.iter().filter(|r| r.target == Target::Pgbouncer && r.note.is_none()) {
        if let Some(p) = get(Target::Pooler, b.clients) {
            counted += 1;
            if p.tps < b.tps {
                all_ge = false;
                let _ =
                    writeln!(v, "  - at {} clients: pooler {:.0} tps < pgbouncer {:.0} tps", b.clients, p.tps, b.tps);
            }
        }
    }
    if counted > 0 {
        let _ = writeln!(
            v,
            "- Throughput at least pgbouncer's at every client count: {}",
            if all_ge { "holds" } else { "does not hold (above)" }
        );
    }
    if let (Some(p), Some(d)) = (get(Target::Pooler, 16), get(Target::Direct, 16)) {
        let _ = writeln!(
            v,
            "- Throughput at 16 clients vs direct: {:.2} (target ≥ 0.85; pgbouncer {}): {}",
            p.tps / d.tps,
            get(Target::Pgbouncer, 16).map(|b| format!("{:.2}", b.tps / d.tps)).unwrap_or_else(|| "n/a".into()),
            if p.tps >= 0.85 * d.tps { "holds" } else { "does not hold" }
        );
    }
    if let (Some(p), Some(d), Some(b)) = (get(Target::Pooler, 1), get(Target::Direct, 1), get(Target::Pgbouncer, 1)) {
        let (pa, ba) = (p.p50 as f64 - d.p50 as f64, b.p50 as f64 - d.p50 as f64);
        let _ = writeln!(
            v,
            "- Latency added at 1 client (p50 minus direct p50): pooler {:.0} µs, pgbouncer {:.0} µs (target ≤ half): {}",
            pa,
            ba,
            if pa <= ba / 2.0 { "holds" } else { "does not hold" }
        );
    }
    for (t, r) in idle {
        if let Ok((_, _, per)) = r {
            let _ = writeln!(
                v,
                "- Idle client memory, {}: {per:.1} KiB per client (target ≤ 8 KiB for the pooler){}",
                t.label(),
                if *t == Target::Pooler {
                    if *per <= 8.0 {
                        ": holds"
                    } else {
                        ": does not hold"
                    }
                } else {
                    ""
                }
            );
        }
    }
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 10u64;
    let mut sweep = vec![1usize, 16, 64, 256, 1000];
    let mut only: Option<Vec<String>> = None;
    let mut targets: Vec<Target> = ALL.to_vec();
    let mut pool = 20usize;
    let mut threads = 0usize;
    let mut idle = 10_000usize;
    let mut out: Option<PathBuf> = None;
    let mut pooler_bin = PathBuf::from("target/release/pooler");
    let mut transport = Transport::Tcp;
    let mut args = std::env::args().skip(1);
    let usage = "bench-matrix [--quick] [--seconds N] [--clients 1,16,64,256,1000] [--workloads a,b] \
                 [--targets direct,pooler,lib,pgbouncer,pgpool] [--pool-size N] [--pooler-threads N] [--idle N] [--out DIR] [--pooler PATH] \
                 [--transport tcp|tls|unix]";
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value\n{usage}"));
        match a.as_str() {
            "--quick" => {
                seconds = 3;
                sweep = vec![1, 16, 64];
                idle = 1000;
            }
            "--seconds" => seconds = value()?.parse()?,
            "--clients" => sweep = value()?.split(',').map(|c| c.trim().parse()).collect::<Result<_, _>>()?,
            "--workloads" => only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--targets" => {
                targets = value()?
                    .split(',')
                    .map(|t| Target::parse(t.trim()).ok_or_else(|| format!("unknown target {t}")))
                    .collect::<Result<_, _>>()?
            }
            "--pool-size" => pool = value()?.parse()?,
            "--pooler-threads" => threads = value()?.parse()?,
            "--idle" => idle = value()?.parse()?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--pooler" => pooler_bin = PathBuf::from(value()?),
            "--transport" => {
                transport = match value()?.as_str() {
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    "unix" => Transport::Unix,
                    other => return Err(format!("--transport: expected tcp, tls or unix, got {other}").into()),
                }
            }
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {a}\n{usage}").into()),
        }
    }
    if !pooler_bin.exists() {
        return Err(format!("{} not found: cargo build --release -p pooler-bin", pooler_bin.display()).into());
    }
    let two: Vec<usize> = {
        let mut v: Vec<usize> = sweep.iter().copied().filter(|&c| c == 16 || c == 256).collect();
        if v.is_empty() {
            v = sweep.iter().copied().filter(|&c| c > 1).take(2).collect();
        }
        v
    };
    let mid = if sweep.contains(&16) { 16 } else { *sweep.iter().max().unwrap_or(&16) };
    let large = std::env::temp_dir().join(format!("bench-matrix-large-{}.sql", std::process::id()));
    std::fs::write(&large, "SELECT * FROM pgbench_accounts WHERE aid <= 10000;\n")?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let workloads = vec![
        Workload {
            name: "select-extended",
            title: "select-only, extended protocol",
            args: s(&["-S", "-M", "extended"]),
            clients: sweep.clone(),
        },
        Workload {
            name: "select-simple",
            title: "select-only, simple protocol",
            args: s(&["-S", "-M", "simple"]),
            clients: two.clone(),
        },
        Workload {
            name: "select-prepared",
            title: "select-only, prepared statements",
            args: s(&["-S", "-M", "prepared"]),
            clients: two.clone(),
        },
        Workload {
            name: "tpcb",
            title: "TPC-B-like read/write, extended protocol",
            args: s(&["-M", "extended"]),
            clients: two.clone(),
        },
        Workload {
            name: "churn",
            title: "connection churn: connect, one select, disconnect",
            args: s(&["-S", "-C"]),
            clients: vec![mid],
        },
        Workload {
            name: "large-result",
            title: "large result: 10,000 rows (~1 MB) per transaction",
            args: vec!["-M".into(), "extended".into(), "-f".into(), large.display().to_string()],
            clients: vec![mid],
        },
    ];
    let workloads: Vec<Workload> =
        workloads.into_iter().filter(|w| only.as_ref().is_none_or(|o| o.iter().any(|n| n == w.name))).collect();
    let max_clients = workloads.iter().flat_map(|w| w.clients.iter().copied()).max().unwrap_or(16);
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d-%H%M")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("benches/results/{date}")));
    std::fs::create_dir_all(&out)?;

    eprintln!("starting PostgreSQL (primary + 1 standby)...");
    let cluster = pooler_testkit::Cluster::builder()
        .standbys(1)
        .setting("max_connections", &(max_clients + 60).to_string())
        .start()?;
    let pg_bin = cluster.bin_dir().to_path_buf();
    let primary = cluster.primary().port();
    pooler_benches::pgbench(&pg_bin, primary, &s(&["-i", "-q", "-s", "1"]))?;
    cluster.wait_for_replication(Duration::from_secs(60))?;
    let work = cluster.dir().join("bench-matrix");
    std::fs::create_dir_all(work.join("sockets"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.join("sockets"), std::fs::Permissions::from_mode(0o777))?;
    let tls = match transport {
        Transport::Tls => Some(tls_files(&work.join("tls"))?),
        _ => None,
    };
    if transport != Transport::Tcp && idle > 0 {
        eprintln!("idle clients are measured over plain TCP only: skipped");
        idle = 0;
    }
    let setup = Setup {
        transport,
        tls_files: tls,
        pg_sockets: cluster.socket_dir(),
        pooler_bin,
        pg_bin: pg_bin.clone(),
        work,
        nodes: cluster.nodes().map(|n| n.port()).collect(),
        pool,
        threads,
    };
    let command: Vec<String> = std::env::args().collect();
    let mut md = format!(
        "# bench-matrix results ({date})\n\n`{}`\n\nMachine: {}.\n\nEvery target in transaction pooling mode with a pool of {pool} server connections; the pooler binary with \
         `worker_threads = {threads}` (0: one per core) \
         (pgpool-II: a child per client with its connection cache, load balancing off); the poolers know the primary and \
         one standby and send everything to the primary. {seconds} s per run, `pgbench -j min(clients, 2)`, scale 1; \
         latency percentiles from pgbench's per-transaction log; CPU is the target process's own user + system time \
         (pgpool: its whole process tree) divided by the transactions of the run, so µs per transaction equals ms per \
         1,000 transactions. Clients reach the target over {}.\n\n",
        command.join(" "),
        machine(&pg_bin),
        match transport {
            Transport::Tcp => "plain TCP on loopback",
            Transport::Tls => "TLS on loopback (pgbench `sslmode=require`; the poolers to PostgreSQL in plain text; direct without TLS)",
            Transport::Unix => "Unix sockets (pgbench to the target, and the target to PostgreSQL)",
        }
    );
    let mut sweep_rows: Vec<Row> = Vec::new();
    for w in &workloads {
        let mut rows = Vec::new();
        for &c in &w.clients {
            for &t in &targets {
                eprintln!("{} with {c} clients: {}...", w.name, t.label());
                let r = measure(&setup, w, t, c, seconds);
                eprintln!(
                    "  {:.0} tps, p50 {} ms, p99 {} ms{}",
                    r.tps,
                    ms(r.p50),
                    ms(r.p99),
                    r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                );
                rows.push(r);
            }
        }
        let files = charts(&out, w, &rows, &targets)?;
        let _ = writeln!(md, "## {} (`{}`)\n\n`pgbench {}`\n\n{}", w.title, w.name, w.args.join(" "), table(&rows));
        for f in files {
            let _ = writeln!(md, "![{f}]({f})");
        }
        md.push('\n');
        if w.name == "select-extended" {
            sweep_rows = rows;
        }
    }
    let mut idle_rows = Vec::new();
    if idle > 0 {
        let _ = writeln!(md, "## Idle clients ({idle} logged in, silent)\n\n| target | RSS before | RSS with clients | per client |\n|---|---|---|---|");
        for t in [Target::Pooler, Target::Pgbouncer].into_iter().filter(|t| targets.contains(t)) {
            eprintln!("idle memory with {idle} clients: {}...", t.label());
            let r = idle_memory(&setup, t, idle);
            match &r {
                Ok((b, w, per)) => {
                    let _ = writeln!(md, "| {} | {b} KiB | {w} KiB | {per:.1} KiB |", t.label());
                }
                Err(e) => {
                    let _ = writeln!(md, "| {} | | | {e} |", t.label());
                }
            }
            idle_rows.push((t, r));
        }
        md.push_str("\npgpool-II is not measured here: it needs a process per client.\n\n");
    }
    let _ = writeln!(md, "## Targets\n\n{}", verdicts(&sweep_rows, &idle_rows));
    std::fs::write(out.join("results.md"), &md)?;
    let _ = std::fs::remove_file(&large);
    print!("{md}");
    eprintln!("written to {}", out.display());
    Ok(())
}
