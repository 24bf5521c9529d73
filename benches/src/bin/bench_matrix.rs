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
//! `--rounds N` measures every cell (workload × client count) N times, the
//! targets alternating within the cell (round 1: every target in turn, then
//! round 2, ...) so machine noise hits them alike; the tables show the median
//! round by tps, the median of the rounds' CPU figures and every round's tps,
//! and the charts and verdicts use the median rounds. After each workload's
//! table, the pooler over pgbouncer and over each extra target: tps and CPU
//! per transaction, of the medians and round by round.
//!
//! `--extra NAME:PORT:CONFIG:COMMAND` (repeatable) adds any pooler somebody
//! built as one more target, measured in the same sitting over plain TCP:
//! every `--extra` target is always measured, appended after the `--targets`
//! list. Its configuration is CONFIG with placeholders filled in per run, and
//! COMMAND runs as the invoking user (see [`ExtraTarget`] and `--help`).
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
    /// A pooler given with `--extra` (parsed once, it lives for the run).
    Extra(&'static ExtraTarget),
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
            Target::Extra(x) => x.name.as_str(),
        }
    }

    /// The directory of its files for a run with `clients` clients, under
    /// the work directory.
    fn dir_name(self, clients: usize) -> String {
        match self {
            Target::Extra(x) => format!("extra-{}-{clients}", x.name),
            t => format!("{t:?}-{clients}").to_lowercase(),
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

/// A pooler somebody built, measured next to the others: `--extra
/// NAME:PORT:CONFIG:COMMAND`. Every `--extra` target is always measured,
/// appended after the `--targets` list, over plain TCP only (`--transport
/// tls|unix` gives it a "not run" note).
///
/// NAME labels it in the tables and charts. PORT is where it listens for
/// clients on 127.0.0.1. CONFIG is a template file (its path without colons):
/// each run replaces `{pg_host}` (127.0.0.1), `{pg_port}` (the primary's
/// port), `{port}` (PORT), `{pool_size}` (`--pool-size`), `{max_clients}`
/// (the run's clients + 100) and `{work_dir}` (a fresh directory for the
/// run's files) and writes the result, under the template's file name, into
/// that directory. COMMAND is the rest of the argument (colons allowed), split
/// on whitespace, no quoting; `{config}` in a word becomes the written file's
/// path, and when no word has it the path is appended as the last argument.
/// It runs as the invoking user, from the current directory, standard output
/// and error to a log in the run's directory; CPU and peak RSS are its pid's,
/// so a wrapper script should `exec` the pooler. Stopped with SIGTERM, and
/// killed if still alive after 3 s.
#[derive(Debug, PartialEq, Eq)]
struct ExtraTarget {
    /// Its label, unique among the targets.
    name: String,
    /// The port it listens on for clients, on 127.0.0.1.
    port: u16,
    /// The template's file name, which the written configuration keeps.
    config_name: String,
    /// The template's text, placeholders unreplaced.
    template: String,
    /// The command, a word per element, `{config}` unreplaced.
    command: Vec<String>,
}

impl ExtraTarget {
    /// Parses `NAME:PORT:CONFIG:COMMAND` and reads the template.
    fn parse(spec: &str) -> Result<ExtraTarget, String> {
        let form = "expected NAME:PORT:CONFIG:COMMAND";
        let mut parts = spec.splitn(4, ':');
        let (Some(name), Some(port), Some(config), Some(command)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("--extra {spec}: {form}"));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(format!("--extra {spec}: NAME must be letters, digits, '-', '_' or '.'"));
        }
        if Target::parse(name).is_some() || ALL.iter().any(|t| t.label() == name) {
            return Err(format!("--extra {spec}: {name} is the name of a built-in target"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("--extra {spec}: PORT must be a port number, got {port:?}")),
        };
        let path = Path::new(config);
        let template =
            std::fs::read_to_string(path).map_err(|e| format!("--extra {spec}: cannot read CONFIG {config}: {e}"))?;
        let config_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("--extra {spec}: CONFIG {config} is no file name"))?;
        let command: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if command.is_empty() {
            return Err(format!("--extra {spec}: COMMAND is empty ({form})"));
        }
        Ok(ExtraTarget { name: name.to_owned(), port, config_name, template, command })
    }
}

/// An `--extra` target running for one measurement; stopped on drop.
struct ExtraProcess {
    child: std::process::Child,
    /// The port it listens on.
    port: u16,
}

impl ExtraProcess {
    /// Writes the configuration for `clients` clients into `dir` (emptied
    /// first), starts the command and waits up to 20 s until it accepts
    /// connections; errors are the row's note, with the end of its log.
    fn start(setup: &Setup, x: &ExtraTarget, dir: &Path, clients: usize) -> Result<ExtraProcess, String> {
        if setup.transport != Transport::Tcp {
            return Err("not run: extra targets are measured over plain TCP only".into());
        }
        if std::net::TcpStream::connect(("127.0.0.1", x.port)).is_ok() {
            return Err(format!("not run: something already listens on 127.0.0.1:{} before {} starts", x.port, x.name));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("not run: cannot create {}: {e}", dir.display()))?;
        let config = dir.join(&x.config_name);
        let text = x
            .template
            .replace("{pg_host}", "127.0.0.1")
            .replace("{pg_port}", &setup.nodes[0].to_string())
            .replace("{port}", &x.port.to_string())
            .replace("{pool_size}", &setup.pool.to_string())
            .replace("{max_clients}", &(clients + 100).to_string())
            .replace("{work_dir}", &dir.display().to_string());
        std::fs::write(&config, text).map_err(|e| format!("not run: cannot write {}: {e}", config.display()))?;
        let path = config.display().to_string();
        let mut words: Vec<String> = x.command.iter().map(|w| w.replace("{config}", &path)).collect();
        if !x.command.iter().any(|w| w.contains("{config}")) {
            words.push(path);
        }
        let log_path = dir.join("output.log");
        let log = std::fs::File::create(&log_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| format!("not run: cannot create {}: {e}", log_path.display()))?;
        let Some((program, args)) = words.split_first() else {
            return Err(format!("not run: {} has no command", x.name));
        };
        let child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            .spawn()
            .map_err(|e| format!("not run: {} did not start ({program}): {e}", x.name))?;
        let mut p = ExtraProcess { child, port: x.port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", x.port)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("not run: {} exited at start ({status}): {}", x.name, log_tail(&log_path)));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "not run: {} did not listen on 127.0.0.1:{} within 20 s: {}",
                    x.name,
                    x.port,
                    log_tail(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    /// Process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ExtraProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log, on one line (for a note).
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "its log is empty".into();
    }
    lines[lines.len().saturating_sub(5)..].join(" · ")
}

struct Workload {
    name: &'static str,
    title: &'static str,
    args: Vec<String>,
    clients: Vec<usize>,
}

#[derive(Clone)]
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

/// One target at one client count over every round.
struct Cell {
    /// The median round by tps among those that ran (the lower one of an
    /// even count), with the median of the rounds' CPU figures; a round that
    /// did not run, with its note, when none did. What the table, charts and
    /// verdicts show.
    median: Row,
    /// Every round in the order measured: round k of each target ran next
    /// to round k of the others.
    rounds: Vec<Row>,
}

impl Cell {
    /// The cell of a target's rounds (`None` without any).
    fn of(rounds: Vec<Row>) -> Option<Cell> {
        let mut ran: Vec<&Row> = rounds.iter().filter(|r| r.note.is_none()).collect();
        ran.sort_by(|a, b| a.tps.total_cmp(&b.tps));
        let mut median = match ran.get(ran.len().saturating_sub(1) / 2) {
            Some(r) => (*r).clone(),
            None => rounds.first()?.clone(),
        };
        if !ran.is_empty() {
            let mut cpu: Vec<f64> = ran.iter().filter_map(|r| r.cpu_us).collect();
            cpu.sort_by(f64::total_cmp);
            let n = cpu.len();
            median.cpu_us = match n {
                0 => None,
                _ if n % 2 == 1 => Some(cpu[n / 2]),
                _ => Some((cpu[n / 2 - 1] + cpu[n / 2]) / 2.0),
            };
        }
        Some(Cell { median, rounds })
    }
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
    Extra(ExtraProcess),
}

impl Running {
    fn port(&self) -> u16 {
        match self {
            Running::Direct(p) => *p,
            Running::Process(p) => p.port,
            Running::Lib(p) => p.port,
            Running::Bouncer(b) => b.port,
            Running::Pool(p) => p.port,
            Running::Extra(x) => x.port,
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
            Running::Extra(x) => cpu_seconds(x.pid()),
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
            Running::Extra(x) => rss_kib(x.pid()).map(|r| r.0),
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
    let dir = setup.work.join(target.dir_name(clients));
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
        Target::Extra(x) => ExtraProcess::start(setup, x, &dir, clients).map(Running::Extra),
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
        Running::Extra(x) => x.pid(),
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

/// A workload's table: per client count and target, the median round, and
/// every round's tps.
fn table(cells: &[Cell]) -> String {
    let mut t = String::from(
        "| clients | target | tps | tps of each round | vs direct | p50 ms | p99 ms | p99.9 ms | failed | CPU µs/txn (ms per 1000) | peak RSS MiB | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for cell in cells {
        let r = &cell.median;
        let direct = cells
            .iter()
            .map(|c| &c.median)
            .find(|d| d.clients == r.clients && d.target == Target::Direct)
            .map(|d| d.tps);
        let vs = match direct {
            Some(d) if d > 0.0 && r.tps > 0.0 => format!("{:.2}", r.tps / d),
            _ => "".into(),
        };
        let each: Vec<String> =
            cell.rounds.iter().map(|x| if x.note.is_none() { format!("{:.0}", x.tps) } else { "–".into() }).collect();
        // The median ran: say why the other rounds did not.
        let note = match &r.note {
            Some(n) => n.clone(),
            None => cell
                .rounds
                .iter()
                .enumerate()
                .filter_map(|(i, x)| Some(format!("round {}: {}", i + 1, x.note.as_deref()?)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.clients,
            r.target.label(),
            r.tps,
            each.join(" / "),
            vs,
            ms(r.p50),
            ms(r.p99),
            ms(r.p999),
            r.failed,
            r.cpu_us.map(|c| format!("{c:.1}")).unwrap_or_default(),
            r.rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_default(),
            note.replace('|', "\\|")
        );
    }
    t
}

/// After a workload's table: the pooler over each peer (pgbouncer, the
/// `--extra` targets) per client count, tps and CPU per transaction, of the
/// median rounds and, with more than one round, round by round (round k of
/// both, measured next to each other). `None` without the pooler or a peer.
fn ratios(cells: &[Cell], targets: &[Target], clients: &[usize]) -> Option<String> {
    if !targets.contains(&Target::Pooler) {
        return None;
    }
    let peers: Vec<Target> =
        targets.iter().copied().filter(|t| matches!(t, Target::Pgbouncer | Target::Extra(_))).collect();
    if peers.is_empty() {
        return None;
    }
    let get = |t: Target, c: usize| cells.iter().find(|x| x.median.target == t && x.median.clients == c);
    let mut s = format!(
        "### {}\n\ntps above 1: the pooler is faster; CPU per transaction below 1: the pooler is cheaper. \
         The median rounds' ratio{}.\n\n| clients |",
        peers.iter().map(|p| format!("pooler / {}", p.label())).collect::<Vec<_>>().join(", "),
        if cells.iter().any(|c| c.rounds.len() > 1) {
            ", then each round's in parentheses (round k of both ran next to each other)"
        } else {
            ""
        }
    );
    for p in &peers {
        let _ = write!(s, " tps pooler / {0} | CPU/txn pooler / {0} |", p.label());
    }
    s.push_str("\n|---|");
    for _ in &peers {
        s.push_str("---|---|");
    }
    s.push('\n');
    for &c in clients {
        let Some(mine) = get(Target::Pooler, c) else { continue };
        let _ = write!(s, "| {c} |");
        for &p in &peers {
            match get(p, c) {
                Some(theirs) => {
                    let _ = write!(
                        s,
                        " {} | {} |",
                        ratio(mine, theirs, |r| Some(r.tps).filter(|&t| t > 0.0)),
                        ratio(mine, theirs, |r| r.cpu_us)
                    );
                }
                None => s.push_str(" | |"),
            }
        }
        s.push('\n');
    }
    Some(s)
}

/// `f` of `a` over `f` of `b`: the median rounds', then, with more than one
/// round, each round's in parentheses; `–` where either side has no figure
/// (and alone when no round has one).
fn ratio(a: &Cell, b: &Cell, f: impl Fn(&Row) -> Option<f64>) -> String {
    let one =
        |x: &Row, y: &Row| match (x.note.is_none().then(|| f(x)).flatten(), y.note.is_none().then(|| f(y)).flatten()) {
            (Some(p), Some(q)) if q > 0.0 => format!("{:.2}", p / q),
            _ => "–".into(),
        };
    let mut s = one(&a.median, &b.median);
    if a.rounds.len() > 1 {
        let each: Vec<String> = a.rounds.iter().zip(&b.rounds).map(|(x, y)| one(x, y)).collect();
        if s == "–" && each.iter().all(|e| e == "–") {
            return s;
        }
        let _ = write!(s, " ({})", each.join(" / "));
    }
    s
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
    // The targets of the "cheaper than pgbouncer" work: at every client
    // count, CPU per transaction at most 0.9 of pgbouncer's and throughput at
    // least 1.05 of its (medians, when run in rounds).
    let mut cpu_all = true;
    let mut tps_all = true;
    let mut counted = 0;
    for b in sweep.iter().filter(|r| r.target == Target::Pgbouncer && r.note.is_none()) {
        let Some(p) = get(Target::Pooler, b.clients) else { continue };
        counted += 1;
        if let (Some(pc), Some(bc)) = (p.cpu_us, b.cpu_us) {
            let holds = pc <= 0.9 * bc;
            cpu_all &= holds;
            let _ = writeln!(
                v,
                "  - at {} clients: CPU per transaction pooler {pc:.1} µs, pgbouncer {bc:.1} µs ({:.2}); throughput {:.0} vs {:.0} tps ({:.2})",
                b.clients,
                pc / bc,
                p.tps,
                b.tps,
                p.tps / b.tps
            );
        }
        tps_all &= p.tps >= 1.05 * b.tps;
    }
    if counted > 0 {
        let _ = writeln!(
            v,
            "- CPU per transaction ≤ 0.9 of pgbouncer's at every client count: {}",
            if cpu_all { "holds" } else { "does not hold" }
        );
        let _ = writeln!(
            v,
            "- Throughput ≥ 1.05 of pgbouncer's at every client count: {}",
            if tps_all { "holds" } else { "does not hold" }
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
                "- Idle client memory, {}: {per:.1} KiB per client (target ≤ 2 KiB for the pooler){}",
                t.label(),
                if *t == Target::Pooler {
                    if *per <= 2.0 {
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
    let mut rounds = 1usize;
    let mut extras: Vec<ExtraTarget> = Vec::new();
    let mut args = std::env::args().skip(1);
    let usage = "bench-matrix [--quick] [--seconds N] [--rounds N] [--clients 1,16,64,256,1000] [--workloads a,b] \
                 [--targets direct,pooler,lib,pgbouncer,pgpool] [--extra NAME:PORT:CONFIG:COMMAND]... [--pool-size N] \
                 [--pooler-threads N] [--idle N] [--out DIR] [--pooler PATH] [--transport tcp|tls|unix]";
    let help = "
  --rounds N     measure each cell (workload x client count) N times, every target once per
                 round in turn; the tables show the median round by tps, the median of the
                 rounds' CPU figures and every round's tps (default 1)
  --extra NAME:PORT:CONFIG:COMMAND
                 one more target (repeatable), e.g. a pooler somebody built: always measured,
                 appended after the --targets list, over plain TCP only (tls/unix: not run).
                 NAME labels it; PORT is where it listens on 127.0.0.1; CONFIG is a template
                 file (no colons in its path) in which {pg_host} (127.0.0.1), {pg_port} (the
                 primary's port), {port} (PORT), {pool_size} (--pool-size), {max_clients} (the
                 run's clients + 100) and {work_dir} (a fresh directory per run) are replaced;
                 the result goes into {work_dir} under the template's file name. COMMAND is the
                 rest (colons allowed), split on whitespace, no quoting; {config} in a word
                 becomes the written file's path, else the path is appended. It runs as the
                 invoking user from the current directory, output to {work_dir}/output.log;
                 CPU and RSS are its pid's (a wrapper script should exec the pooler); SIGTERM
                 when the run ends, killed after 3 s. Example:
                 --extra 'other:6499:benches/configs/pooler-extra.toml:target/release/pooler --config {config}'";
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value\n{usage}"));
        match a.as_str() {
            "--quick" => {
                seconds = 3;
                sweep = vec![1, 16, 64];
                idle = 1000;
            }
            "--seconds" => seconds = value()?.parse()?,
            "--rounds" => rounds = value()?.parse()?,
            "--extra" => extras.push(ExtraTarget::parse(&value()?)?),
            "--clients" => sweep = value()?.split(',').map(|c| c.trim().parse()).collect::<Result<_, _>>()?,
            "--workloads" => only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--targets" => {
                targets = value()?
                    .split(',')
                    .map(|t| {
                        Target::parse(t.trim()).ok_or_else(|| {
                            format!(
                                "unknown target {t} (--extra targets are always measured, after the --targets list)"
                            )
                        })
                    })
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
                println!("{usage}\n{help}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {a}\n{usage}").into()),
        }
    }
    if rounds == 0 {
        return Err(format!("--rounds must be at least 1\n{usage}").into());
    }
    for (i, x) in extras.iter().enumerate() {
        if extras[..i].iter().any(|y| y.name == x.name) {
            return Err(format!("--extra: the name {} is given twice", x.name).into());
        }
    }
    // Every extra target is measured, after the --targets list; leaked once,
    // they live for the whole run.
    let extras: Vec<&'static ExtraTarget> = extras.into_iter().map(|x| &*Box::leak(Box::new(x))).collect();
    targets.extend(extras.iter().map(|&x| Target::Extra(x)));
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
    let _ = writeln!(
        md,
        "Each cell (workload × clients) is measured {rounds} time{}, every target once per round in turn, so noise \
         hits them alike; the tables show the median round by tps (of an even count, the lower of the two middle \
         ones) with the median of the rounds' CPU figures, and every round's tps; the charts and verdicts use the \
         median rounds.\n",
        if rounds == 1 { "" } else { "s" }
    );
    if !extras.is_empty() {
        md.push_str("Extra targets (`--extra`, over plain TCP, each run started afresh like the others):\n\n");
        for x in &extras {
            let _ = writeln!(
                md,
                "- {}: `{}` on port {}, configuration from the template `{}`",
                x.name,
                x.command.join(" "),
                x.port,
                x.config_name
            );
        }
        md.push('\n');
    }
    let mut sweep_rows: Vec<Row> = Vec::new();
    for w in &workloads {
        let mut cells = Vec::new();
        for &c in &w.clients {
            // Round k of every target, then round k + 1: side by side.
            let mut runs: Vec<Vec<Row>> = targets.iter().map(|_| Vec::with_capacity(rounds)).collect();
            for k in 1..=rounds {
                for (&t, runs) in targets.iter().zip(&mut runs) {
                    let round = if rounds > 1 { format!(", round {k}/{rounds}") } else { String::new() };
                    eprintln!("{} with {c} clients{round}: {}...", w.name, t.label());
                    let r = measure(&setup, w, t, c, seconds);
                    eprintln!(
                        "  {:.0} tps, p50 {} ms, p99 {} ms{}",
                        r.tps,
                        ms(r.p50),
                        ms(r.p99),
                        r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                    );
                    runs.push(r);
                }
            }
            cells.extend(runs.into_iter().filter_map(Cell::of));
        }
        let rows: Vec<Row> = cells.iter().map(|c| c.median.clone()).collect();
        let files = charts(&out, w, &rows, &targets)?;
        let _ = writeln!(md, "## {} (`{}`)\n\n`pgbench {}`\n\n{}", w.title, w.name, w.args.join(" "), table(&cells));
        if let Some(r) = ratios(&cells, &targets, &w.clients) {
            let _ = writeln!(md, "{r}");
        }
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
        // Separate processes only: the pooler, pgbouncer and the extra targets.
        let separate = [Target::Pooler, Target::Pgbouncer]
            .into_iter()
            .filter(|t| targets.contains(t))
            .chain(targets.iter().copied().filter(|t| matches!(t, Target::Extra(_))));
        for t in separate {
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
