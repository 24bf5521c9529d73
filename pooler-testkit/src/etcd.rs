//! Throwaway etcd clusters — N members on free loopback ports, data in a temp
//! dir — for tests of anything that talks to etcd, and of how it copes when
//! members die, hang or lose quorum.
//!
//! ```no_run
//! let cluster = pooler_testkit::EtcdCluster::start(3)?;
//! let endpoints = cluster.endpoints(); // ["http://127.0.0.1:PORT", ...]
//! cluster.member(0).kill(); // the other two keep quorum
//! assert!(cluster.health_of(1));
//! cluster.member(0).start()?;
//! cluster.wait_healthy(std::time::Duration::from_secs(15))?;
//! # Ok::<(), pooler_testkit::Error>(())
//! ```
//!
//! The binary is `/usr/bin/etcd`, else `etcd` on `PATH` (Debian:
//! `apt-get install etcd-server`). Member `i` is named `etcd<i>`, keeps its
//! data in `<dir>/etcd<i>.data` and writes its stdout and stderr (etcd's log,
//! zap JSON lines but for a few) to `<dir>/etcd<i>.log`, where `<dir>` is
//! `pooler-testkit-etcd-<pid>-<n>` in the temp dir. Members run as the current
//! user (etcd, unlike PostgreSQL, runs fine as root), with short Raft timers
//! (`--heartbeat-interval 100 --election-timeout 500`) so that elections and
//! lost quorum show within a second or two, and an `--initial-cluster-token`
//! of their own so clusters started in parallel never join each other. Every
//! member is killed and the dir deleted when the [`EtcdCluster`] is dropped;
//! the pids of the members ever started are recorded in `<dir>/pids`, and the
//! first cluster a process starts kills the members of, and deletes, every
//! such dir whose owning process is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{describe, free_port, io, Error};

/// How long [`EtcdCluster::start`] waits for every member to be healthy.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect, write and read timeout of one `/health` probe. etcd answers
/// within about a second even without quorum (its own check gives up after
/// one), so only a hung (SIGSTOPped) member takes this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Name prefix of the cluster dirs in the temp dir.
const DIR_PREFIX: &str = "pooler-testkit-etcd-";
/// Whole-cluster starts tried when a member loses its port to a parallel test.
const START_ATTEMPTS: usize = 5;

/// The etcd server binary: `/usr/bin/etcd`, else the first executable `etcd`
/// on `PATH`; `None` when there is neither.
pub fn etcd_binary() -> Option<PathBuf> {
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let usr = Path::new("/usr/bin/etcd");
    if executable(usr) {
        return Some(usr.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("etcd")).find(|p| executable(p))
}

/// TLS for an etcd cluster's client URLs ([`EtcdCluster::start_tls`]): the
/// server certificate and key every member presents (it must name
/// 127.0.0.1), and the CA whose client certificates members require.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// Server certificate (PEM).
    pub cert_file: PathBuf,
    /// Its key (PEM).
    pub key_file: PathBuf,
    /// CA (PEM) that client certificates must be signed by.
    pub client_ca_file: PathBuf,
}

/// A running etcd cluster. Its members are killed and its dir deleted on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Starts `members` etcd processes forming one new cluster and waits (up
    /// to 15 s) until every one answers `GET /health` with
    /// `"health":"true"`; on timeout the error carries the end of each
    /// member's log. Ports are taken with [`free_port`]; when a parallel test
    /// takes one first, the whole cluster is started again on other ports.
    ///
    /// # Panics
    ///
    /// If `members` is 0.
    pub fn start(members: usize) -> Result<EtcdCluster, Error> {
        EtcdCluster::start_with(members, None)
    }

    /// Like [`EtcdCluster::start`], with the client URLs on `https://`
    /// requiring a client certificate (`--client-cert-auth`); `/health` is
    /// then probed on a plain-HTTP metrics URL of each member.
    pub fn start_tls(members: usize, tls: &EtcdTls) -> Result<EtcdCluster, Error> {
        EtcdCluster::start_with(members, Some(tls))
    }

    fn start_with(members: usize, tls: Option<&EtcdTls>) -> Result<EtcdCluster, Error> {
        assert!(members > 0, "an etcd cluster needs at least one member");
        let bin = etcd_binary().ok_or_else(|| Error::Spawn {
            command: "etcd".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither /usr/bin/etcd nor etcd on PATH; install it, e.g. apt-get install etcd-server",
            ),
        })?;
        reap_orphans();
        let dir = make_dir()?;
        let mut cluster = EtcdCluster { dir, token: String::new(), members: Vec::new() };
        // From here on, Drop cleans up whatever was started.
        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.remove_members();
            cluster.token = format!("{}-{attempt}", cluster.dir.file_name().unwrap_or_default().to_string_lossy());
            cluster.members = cluster.new_members(&bin, members, tls)?;
            for m in &cluster.members {
                m.spawn("new")?;
            }
            match cluster.wait_started(START_TIMEOUT) {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < START_ATTEMPTS && cluster.lost_a_port() => drop(e),
                Err(e) => return Err(e),
            }
        }
    }

    /// The client URLs, `http://127.0.0.1:PORT` (`https://` with TLS), one
    /// per member in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// Member `i` (0-based, the order of [`EtcdCluster::endpoints`]).
    ///
    /// # Panics
    ///
    /// If there is no member `i`.
    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }

    /// Every member, in order.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// The cluster's temp dir (data dirs, logs, `pids`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `--initial-cluster-token` the cluster was made with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// One `/health` probe of member `i`: [`EtcdMember::healthy`].
    ///
    /// # Panics
    ///
    /// If there is no member `i`.
    pub fn health_of(&self, i: usize) -> bool {
        self.members[i].healthy()
    }

    /// Waits until every running member (SIGSTOPped ones included; killed
    /// ones not) answers `/health` with `"health":"true"`; on timeout the
    /// error names the others and carries the end of every member's log.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let unhealthy: Vec<&str> =
                self.members.iter().filter(|m| m.is_running() && !m.healthy()).map(EtcdMember::name).collect();
            if unhealthy.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.timeout(&unhealthy));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`EtcdCluster::wait_healthy`] for a start: every member must run, and
    /// one that exits ends the wait at once (with its exit status and log).
    fn wait_started(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut healthy = vec![false; self.members.len()];
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if let Some(status) = m.exit_status() {
                    return Err(Error::Command {
                        command: m.command(),
                        status: status.to_string(),
                        stderr: format!("exited while the cluster started\n{}", m.log_tail(20)),
                    });
                }
                healthy[i] = healthy[i] || m.healthy();
            }
            if healthy.iter().all(|h| *h) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let unhealthy: Vec<&str> =
                    self.members.iter().zip(&healthy).filter(|(_, h)| !**h).map(|(m, _)| m.name()).collect();
                return Err(self.timeout(&unhealthy));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn timeout(&self, unhealthy: &[&str]) -> Error {
        let mut what = format!(
            "etcd members {} of {} to answer /health with \"health\":\"true\"",
            unhealthy.join(", "),
            self.dir.display()
        );
        for m in &self.members {
            what.push('\n');
            what.push_str(&m.log_tail(10));
        }
        Error::Timeout(what)
    }

    /// True when a member's log says a port it was given was taken.
    fn lost_a_port(&self) -> bool {
        self.members
            .iter()
            .any(|m| std::fs::read_to_string(&m.log_file).is_ok_and(|log| log.contains("address already in use")))
    }

    /// Kills the members of a failed start attempt and deletes their files.
    fn remove_members(&mut self) {
        for m in self.members.drain(..) {
            m.kill();
            let _ = std::fs::remove_dir_all(&m.data_dir);
            let _ = std::fs::remove_file(&m.log_file);
        }
    }

    /// Members on fresh, distinct ports, not started yet.
    fn new_members(&self, bin: &Path, n: usize, tls: Option<&EtcdTls>) -> Result<Vec<EtcdMember>, Error> {
        let mut ports: Vec<u16> = Vec::with_capacity(3 * n);
        while ports.len() < 3 * n {
            let p = free_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = |port: u16| format!("{scheme}://127.0.0.1:{port}");
        let initial_cluster: Vec<String> = (0..n).map(|i| format!("etcd{i}={}", url(ports[2 * i + 1]))).collect();
        let initial_cluster = initial_cluster.join(",");
        Ok((0..n)
            .map(|i| {
                let (name, client_port, peer_port) = (format!("etcd{i}"), ports[2 * i], ports[2 * i + 1]);
                let data_dir = self.dir.join(format!("{name}.data"));
                let health_port = if tls.is_some() { ports[2 * n + i] } else { client_port };
                let mut flags: Vec<(&str, String)> = Vec::new();
                if let Some(t) = tls {
                    flags.extend([
                        ("--cert-file", t.cert_file.to_string_lossy().into_owned()),
                        ("--key-file", t.key_file.to_string_lossy().into_owned()),
                        ("--trusted-ca-file", t.client_ca_file.to_string_lossy().into_owned()),
                        // A boolean flag: no separate value.
                        ("--client-cert-auth", String::new()),
                        ("--listen-metrics-urls", url(health_port)),
                    ]);
                }
                let args: Vec<String> = [
                    ("--name", name.clone()),
                    ("--data-dir", data_dir.to_string_lossy().into_owned()),
                    ("--listen-client-urls", client_url(client_port)),
                    ("--advertise-client-urls", client_url(client_port)),
                    ("--listen-peer-urls", url(peer_port)),
                    ("--initial-advertise-peer-urls", url(peer_port)),
                    ("--initial-cluster", initial_cluster.clone()),
                    ("--initial-cluster-token", self.token.clone()),
                    ("--heartbeat-interval", "100".into()),
                    ("--election-timeout", "500".into()),
                    ("--logger", "zap".into()),
                    ("--log-outputs", "stderr".into()),
                ]
                .into_iter()
                .chain(flags)
                .flat_map(|(k, v)| if v.is_empty() { vec![k.to_owned()] } else { vec![k.to_owned(), v] })
                .collect();
                EtcdMember {
                    log_file: self.dir.join(format!("{name}.log")),
                    name,
                    client_port,
                    health_port,
                    scheme,
                    peer_port,
                    data_dir,
                    bin: bin.to_path_buf(),
                    args,
                    cluster_dir: self.dir.clone(),
                    child: Mutex::new(None),
                }
            })
            .collect())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &self.members {
            m.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One etcd process of an [`EtcdCluster`]: its own client and peer port on
/// 127.0.0.1, data dir and log file. The methods take `&self`, so a test can
/// kill, hang and restart members through [`EtcdCluster::member`].
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    /// Where `/health` is asked: the client port, or with TLS a metrics port.
    health_port: u16,
    /// `http` or `https` (the client URLs).
    scheme: &'static str,
    peer_port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    bin: PathBuf,
    /// Every flag but `--initial-cluster-state`.
    args: Vec<String>,
    cluster_dir: PathBuf,
    /// The process, while it was started and not yet seen to exit.
    child: Mutex<Option<Child>>,
}

impl EtcdMember {
    /// `etcd0`, `etcd1`... (its `--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT`, where clients connect.
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// `http://127.0.0.1:PORT`, where the other members connect.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file the process's stdout and stderr go to (appended to on
    /// restarts).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The process id while the process runs (SIGSTOPped counts as running).
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child();
        running(&mut child).then(|| child.as_ref().map(Child::id)).flatten()
    }

    /// True while the process runs (SIGSTOPped included); false once it was
    /// killed or exited.
    pub fn is_running(&self) -> bool {
        running(&mut self.child())
    }

    /// Kills the process with SIGKILL (a crash, as far as the other members
    /// can tell; a SIGSTOPped one dies too) and waits for it. Does nothing
    /// when it does not run.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again after [`EtcdMember::kill`] (or an exit),
    /// with the same data dir, ports and flags, and `--initial-cluster-state
    /// existing` (which, like the other `--initial-*` flags, etcd ignores
    /// when the data dir is there). Should a parallel test have taken one of
    /// the ports meanwhile, the process exits (`address already in use` in
    /// its log) and [`EtcdMember::is_running`] turns false. Returns once it
    /// is spawned, without
    /// waiting: a member only turns healthy when a quorum is up, so wait with
    /// [`EtcdCluster::wait_healthy`] or poll [`EtcdMember::healthy`]. Does
    /// nothing when the process runs, SIGSTOPped or not (see
    /// [`EtcdMember::cont_process`]).
    pub fn start(&self) -> Result<(), Error> {
        self.spawn("existing")
    }

    /// Sends SIGSTOP: the process freezes, as on a hung host. Its ports stay
    /// open, so connections are accepted and never answered.
    pub fn stop_process(&self) -> Result<(), Error> {
        self.signal("STOP")
    }

    /// Sends SIGCONT, thawing a [`EtcdMember::stop_process`]ed member.
    pub fn cont_process(&self) -> Result<(), Error> {
        self.signal("CONT")
    }

    /// One `GET /health` on the client URL: true when the answer has
    /// `"health":"true"`. etcd 3.4 says false when the member knows no
    /// leader or cannot get a quorum read through within a second, so this
    /// takes up to about a second then; a SIGSTOPped member never answers,
    /// and this gives up (false) after 3 s.
    pub fn healthy(&self) -> bool {
        http_get(self.health_port, "/health")
            .is_ok_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#))
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The exit status, once, when the process is found to have exited.
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        let status = child.as_mut()?.try_wait().ok()??;
        *child = None;
        Some(status)
    }

    fn command(&self) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        describe(&cmd)
    }

    /// Spawns the process (if it does not run) and records its pid in the
    /// cluster's `pids` file, for the orphan reaper.
    fn spawn(&self, initial_cluster_state: &str) -> Result<(), Error> {
        let mut child = self.child();
        if running(&mut child) {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(io(format!("open {}", self.log_file.display())))?;
        let err = log.try_clone().map_err(io("dup the etcd log file"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).args(["--initial-cluster-state", initial_cluster_state]);
        // etcd reads ETCD_<FLAG> variables too, and refuses to start when one
        // shadows a flag.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("ETCD_")) {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(&self.cluster_dir).stdin(Stdio::null()).stdout(log).stderr(err);
        let command = describe(&cmd);
        let spawned = cmd.spawn().map_err(|source| Error::Spawn { command, source })?;
        let pid = spawned.id();
        *child = Some(spawned);
        drop(child);
        let pids = self.cluster_dir.join("pids");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids)
            .map_err(io(format!("open {}", pids.display())))?;
        writeln!(f, "{pid}").map_err(io(format!("write {}", pids.display())))
    }

    fn signal(&self, signal: &str) -> Result<(), Error> {
        let pid = self.pid().ok_or_else(|| Error::Io {
            what: format!("send SIG{signal} to etcd member {}", self.name),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the member is not running"),
        })?;
        let mut cmd = Command::new("kill");
        cmd.arg(format!("-{signal}")).arg(pid.to_string());
        crate::run(cmd).map(|_| ())
    }

    /// The last `lines` lines of the log, headed by the member's name.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {} ({}) ---\n{}", self.name, self.log_file.display(), tail.join("\n"))
    }
}

/// True when `child` holds a process that has not exited; forgets (and so
/// reaps) one that has.
fn running(child: &mut Option<Child>) -> bool {
    match child.as_mut().map(Child::try_wait) {
        Some(Ok(None)) => true,
        Some(_) => {
            *child = None;
            false
        }
        None => false,
    }
}

/// A minimal HTTP/1.0 GET of `path` on `127.0.0.1:port`: the status code and
/// the body. Every step times out after [`PROBE_TIMEOUT`]. The body ends at
/// its `Content-Length` when there is one: etcd's peer port does not always
/// close the connection after answering an HTTP/1.0 request.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n").as_bytes())?;
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad HTTP response: {why}"));
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    // Where the body starts and how long it is, once the head is in.
    let mut framing: Option<(usize, Option<usize>)> = None;
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if framing.is_none() {
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                let length = head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok());
                framing = Some((end + 4, length));
            }
        }
        if let Some((body, Some(length))) = framing {
            if response.len() >= body + length {
                response.truncate(body + length);
                break;
            }
        }
        if response.len() > 1 << 20 {
            return Err(bad("longer than 1 MiB"));
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP response too slow"));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    Ok((status, body.to_owned()))
}

/// A new, empty cluster dir in the temp dir; its name carries this process's
/// pid so [`reap_orphans`] can tell an orphan.
fn make_dir() -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        // Left by an earlier process that had this pid (a reboot ago, or
        // the pids wrapped): nothing of this process is there.
        reap_dir(&dir);
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// Kills the members of, and deletes, the cluster dirs left behind by
/// processes that died without dropping their clusters (killed on a timeout,
/// say). Once per process.
fn reap_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else { continue };
            let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            if owner == std::process::id() || alive(owner) {
                continue;
            }
            reap_dir(&e.path());
        }
    });
}

/// True when process `pid` exists and is not a zombie (an owner killed a
/// moment ago may not be reaped yet).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // pid (comm) state ...: the comm may hold spaces, so read after the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// SIGKILLs each process listed in `<dir>/pids` that is still an etcd of
/// this dir (its command line names etcd and a path inside `dir`; a pid
/// reused by anything else is left alone), waits briefly for them to die,
/// and deletes `dir`.
fn reap_dir(dir: &Path) {
    let inside = format!("{}/", dir.display());
    let is_member = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains("etcd") && c.contains(&inside)
        })
    };
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    let killed: Vec<u32> = pids
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| is_member(*pid))
        .filter(|pid| Command::new("kill").args(["-KILL", &pid.to_string()]).output().is_ok())
        .collect();
    // A killed process's command line reads empty once it is a zombie.
    let deadline = Instant::now() + Duration::from_secs(2);
    while killed.iter().any(|pid| is_member(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// False (with a message) when etcd is not installed.
    fn have_etcd() -> bool {
        if etcd_binary().is_none() {
            eprintln!("skipping: etcd not installed (no /usr/bin/etcd, no etcd on PATH; apt-get install etcd-server)");
            return false;
        }
        true
    }

    /// Polls `f` every 50 ms until it holds or `timeout` passes; returns how
    /// long it took, or `None`.
    fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if f() {
                return Some(start.elapsed());
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn three_member_cluster_becomes_healthy_on_loopback_ports() {
        if !have_etcd() {
            return;
        }
        let cluster = EtcdCluster::start(3).unwrap();
        assert_eq!(cluster.members().len(), 3);
        for i in 0..3 {
            assert!(cluster.health_of(i), "{} unhealthy", cluster.member(i).name());
            assert!(cluster.member(i).is_running());
            assert!(cluster.member(i).pid().is_some());
        }
        let endpoints = cluster.endpoints();
        assert_eq!(endpoints.len(), 3);
        assert_eq!(endpoints.iter().collect::<HashSet<_>>().len(), 3, "{endpoints:?}");
        for (e, m) in endpoints.iter().zip(cluster.members()) {
            assert_eq!(e, &format!("http://127.0.0.1:{}", m.client_port()));
            assert_eq!(e, &m.client_url());
        }
        let ports: HashSet<u16> = cluster.members().iter().flat_map(|m| [m.client_port(), m.peer_port()]).collect();
        assert_eq!(ports.len(), 6);
        // One cluster of three, not three of one: each member's peer
        // endpoint lists every member.
        for m in cluster.members() {
            let (status, members) = http_get(m.peer_port(), "/members").unwrap();
            assert_eq!(status, 200, "{members}");
            for other in cluster.members() {
                assert!(members.contains(&format!("\"{}\"", other.name())), "{}: {members}", m.name());
            }
        }
        let dir = cluster.dir().to_path_buf();
        let pids: Vec<u32> = cluster.members().iter().filter_map(EtcdMember::pid).collect();
        drop(cluster);
        assert!(!dir.exists());
        for pid in pids {
            assert!(!Path::new(&format!("/proc/{pid}")).exists(), "etcd {pid} outlived its cluster");
        }
    }

    #[test]
    fn cluster_survives_one_member_killed_and_recovers_when_restarted() {
        if !have_etcd() {
            return;
        }
        let cluster = EtcdCluster::start(3).unwrap();
        let m0 = cluster.member(0);
        m0.kill();
        assert!(!m0.is_running());
        assert_eq!(m0.pid(), None);
        assert!(!m0.healthy());
        // Two of three keep quorum (after an election, if etcd0 led).
        let took = within(Duration::from_secs(10), || cluster.health_of(1) && cluster.health_of(2))
            .expect("members 1 and 2 healthy without member 0");
        eprintln!("members 1 and 2 healthy {took:?} after member 0 was killed");
        m0.start().unwrap();
        assert!(m0.is_running());
        cluster.wait_healthy(Duration::from_secs(15)).unwrap();
        assert!(m0.healthy());
        assert!(cluster.health_of(1) && cluster.health_of(2));
        // It came back as the same member of the same cluster.
        let (_, members) = http_get(m0.peer_port(), "/members").unwrap();
        for m in cluster.members() {
            assert!(members.contains(&format!("\"{}\"", m.name())), "{members}");
        }
    }

    #[test]
    fn two_of_three_members_stopped_lose_quorum_and_cont_restores_it() {
        if !have_etcd() {
            return;
        }
        let cluster = EtcdCluster::start(3).unwrap();
        cluster.member(1).stop_process().unwrap();
        cluster.member(2).stop_process().unwrap();
        assert!(cluster.member(1).is_running() && cluster.member(2).is_running());
        let took = within(Duration::from_secs(10), || !cluster.health_of(0));
        // Thaw them before asserting, so a failure leaves no frozen process
        // behind (Drop kills them either way).
        cluster.member(1).cont_process().unwrap();
        cluster.member(2).cont_process().unwrap();
        let took = took.expect("member 0 healthy for 10 s with two of three members stopped");
        eprintln!("member 0 reported health false {took:?} after two members were stopped");
        cluster.wait_healthy(Duration::from_secs(15)).unwrap();
        for i in 0..3 {
            assert!(cluster.health_of(i), "{} unhealthy after SIGCONT", cluster.member(i).name());
        }
    }
}
