//! Throwaway PostgreSQL clusters — a primary and N streaming standbys — in a
//! temp dir on free loopback ports, for end-to-end tests, benchmarks and the
//! `pooler demo` command.
//!
//! ```no_run
//! let cluster = pooler_testkit::Cluster::builder().standbys(2).start()?;
//! let port = cluster.primary().port();
//! assert_eq!(cluster.standbys()[0].query_one("SELECT pg_is_in_recovery()")?, "t");
//! # Ok::<(), pooler_testkit::Error>(())
//! ```
//!
//! When the process runs as root, every server command runs as a non-root OS
//! user (`POOLER_TEST_PG_USER`, default `postgres`), because PostgreSQL refuses
//! to run as root. The server binaries are found through `POOLER_PG_BIN`, else
//! the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
//! Everything is stopped and deleted when the [`Cluster`] is dropped. One
//! initdb'd template per OS user and PostgreSQL version is kept in the temp dir
//! (`pooler-testkit-template-<uid>-<hash>`) so later clusters skip initdb; it
//! is a cache and may be deleted at any time. Clusters left behind by a process
//! that died without dropping them (killed on a timeout) are stopped and
//! removed by the next process that starts a cluster.
//!
//! [`RepmgrCluster`] is the same made the repmgr way (repmgr must be
//! installed): `primary register`, `standby clone` and `standby register`,
//! repmgrd per node on demand.
//!
//! [`EtcdCluster`] is N etcd members forming one cluster on free loopback
//! ports (etcd must be installed), whose members a test can kill, restart,
//! SIGSTOP and SIGCONT.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod etcd;
pub use etcd::{etcd_binary, EtcdCluster, EtcdMember, EtcdTls};
mod repmgr;
pub use repmgr::{repmgr_bin_dir, RepmgrBuilder, RepmgrCluster, RepmgrFailover};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error("PostgreSQL server binaries not found (looked at $POOLER_PG_BIN, /usr/lib/postgresql/*/bin and pg_config --bindir); install them, e.g. apt-get install postgresql")]
    PgBinariesNotFound,
    /// Running as root and the non-root server user does not exist.
    #[error("running as root, but OS user {0:?} (to run PostgreSQL as) does not exist; create it or set POOLER_TEST_PG_USER")]
    NoServerUser(String),
    /// A command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error (and, for server starts, the end of the server log).
        stderr: String,
    },
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// repmgr is not installed for the PostgreSQL version in use.
    #[error("repmgr not found at {0} (install the repmgr package matching the PostgreSQL major version, e.g. apt-get install postgresql-15-repmgr; scripts/test.sh does)")]
    RepmgrNotFound(PathBuf),
    /// A condition was not reached in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The directory holding `initdb`, `pg_ctl`, `postgres`, `psql`, `pgbench`...
pub fn pg_bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("POOLER_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    Err(Error::PgBinariesNotFound)
}

/// Runs SQL with psql against whatever listens on `127.0.0.1:port` (a node,
/// or a pooler in front of one) as `user` on `db`, without a password; returns
/// the trimmed output (unaligned, tuples only). A failure carries psql's stderr.
pub fn psql_at(port: u16, user: &str, db: &str, sql: &str) -> Result<String, Error> {
    psql_with(&pg_bin_dir()?, port, user, db, sql)
}

pub(crate) fn psql_with(bin: &Path, port: u16, user: &str, db: &str, sql: &str) -> Result<String, Error> {
    let mut cmd = Command::new(bin.join("psql"));
    let port = port.to_string();
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-h", "127.0.0.1", "-p", &port])
        .args(["-U", user, "-d", db, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10");
    for v in ["PGPASSWORD", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS"] {
        cmd.env_remove(v);
    }
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a free port"))?;
    Ok(l.local_addr().map_err(io("read the free port"))?.port())
}

pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The OS user (name, uid, gid) that servers run as, when this process is
/// root; `None` when not root (servers then run as the current user).
pub fn server_os_user() -> Option<(String, u32, u32)> {
    if !running_as_root() {
        return None;
    }
    let name = std::env::var("POOLER_TEST_PG_USER").unwrap_or_else(|_| "postgres".into());
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((name.clone(), f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

pub(crate) fn server_user_checked() -> Result<Option<(String, u32, u32)>, Error> {
    match server_os_user() {
        Some(u) => Ok(Some(u)),
        None if running_as_root() => {
            Err(Error::NoServerUser(std::env::var("POOLER_TEST_PG_USER").unwrap_or_else(|_| "postgres".into())))
        }
        None => Ok(None),
    }
}

/// Makes `cmd` run as the server OS user when this process is root (for
/// daemons that refuse root, such as PostgreSQL, pgbouncer and pgpool).
pub fn run_as_server_user(cmd: &mut Command) {
    if let Some((_, uid, gid)) = server_os_user() {
        cmd.uid(uid).gid(gid);
    }
}

/// How to stop a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, shut down cleanly.
    Fast,
    /// Kill at once (crash; recovery on next start).
    Immediate,
}

/// Builds a [`Cluster`].
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    standbys: usize,
    settings: Vec<(String, String)>,
    hba: Vec<String>,
    init_sql: Vec<String>,
}

impl ClusterBuilder {
    /// Number of streaming standbys (default 0).
    pub fn standbys(mut self, n: usize) -> Self {
        self.standbys = n;
        self
    }

    /// An extra `postgresql.conf` setting on every node.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// An extra `pg_hba.conf` line, placed before the default trust lines.
    pub fn hba_line(mut self, line: &str) -> Self {
        self.hba.push(line.to_owned());
        self
    }

    /// SQL run on the primary (database `postgres`, as superuser) after it
    /// starts and before the standbys are cloned, so they have it too.
    pub fn init_sql(mut self, sql: &str) -> Self {
        self.init_sql.push(sql.to_owned());
        self
    }

    /// Creates and starts the cluster.
    pub fn start(self) -> Result<Cluster, Error> {
        let bin = pg_bin_dir()?;
        let user = server_user_checked()?;
        reap_orphans(&bin, &user);
        let dir = make_cluster_dir(&user)?;
        let mut cluster = Cluster { dir, bin, user, nodes: Vec::new(), keep: false };
        // From here on, Drop cleans up whatever was started.
        let primary = cluster.create_primary(&self)?;
        cluster.nodes.push(primary);
        for sql in &self.init_sql {
            cluster.nodes[0].psql("postgres", sql)?;
        }
        for i in 1..=self.standbys {
            let standby = cluster.create_standby(i)?;
            cluster.nodes.push(standby);
        }
        if self.standbys > 0 {
            cluster.wait_for_replication(Duration::from_secs(60))?;
        }
        Ok(cluster)
    }
}

/// A running primary with its standbys. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<(String, u32, u32)>,
    nodes: Vec<Node>,
    keep: bool,
}

impl Cluster {
    /// A builder with no standbys and default settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The primary.
    pub fn primary(&self) -> &Node {
        &self.nodes[0]
    }

    /// The standbys, in creation order.
    pub fn standbys(&self) -> &[Node] {
        &self.nodes[1..]
    }

    /// Every node, primary first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// The cluster's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the nodes' Unix sockets (`.s.PGSQL.<port>`), as
    /// libpq's `host` takes it.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sockets")
    }

    /// The PostgreSQL bin dir in use (psql and pgbench are there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Keeps the files after drop (servers are still stopped), for debugging.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Waits until every standby streams from the primary and has replayed
    /// everything the primary had written when this was called.
    pub fn wait_for_replication(&self, timeout: Duration) -> Result<(), Error> {
        let lsn = self.primary().query_one("SELECT pg_current_wal_lsn()")?;
        let deadline = Instant::now() + timeout;
        for s in self.standbys() {
            loop {
                let done = s
                    .query_one(&format!(
                        "SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                    ))
                    .map(|v| v == "t")
                    .unwrap_or(false);
                if done {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Timeout(format!("{} to replay up to {lsn}", s.name())));
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        Ok(())
    }

    fn node(&self, name: &str, port: u16) -> Node {
        Node {
            name: name.to_owned(),
            port,
            data_dir: self.dir.join(name),
            log_file: self.dir.join(format!("{name}.log")),
            bin: self.bin.clone(),
            user: self.user.clone(),
        }
    }

    /// A command for a server binary, run as the server user.
    fn server_cmd(&self, program: &str) -> Command {
        server_command(&self.bin, program, &self.user, &self.dir)
    }

    fn create_primary(&self, b: &ClusterBuilder) -> Result<Node, Error> {
        let sockets = self.dir.join("sockets");
        std::fs::create_dir_all(&sockets).map_err(io("create socket dir"))?;
        if let Some((_, uid, gid)) = &self.user {
            std::os::unix::fs::chown(&sockets, Some(*uid), Some(*gid)).map_err(io("chown socket dir"))?;
        }
        let mut node = self.node("primary", 0);
        let template = template_data_dir(&self.bin, &self.user, &self.dir)?;
        copy_as(&template, &node.data_dir, &self.user)?;
        let mut conf = String::from("\n# pooler-testkit\n");
        for (k, v) in [
            ("listen_addresses", "'127.0.0.1'"),
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("hot_standby", "on"),
            ("wal_keep_size", "'256MB'"),
            ("shared_buffers", "'32MB'"),
            ("max_connections", "100"),
            ("log_min_messages", "warning"),
            ("logging_collector", "off"),
        ] {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        conf.push_str(&format!("unix_socket_directories = '{}'\n", sockets.display()));
        for (k, v) in &b.settings {
            conf.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        append(&node.data_dir.join("postgresql.conf"), &conf)?;
        let mut hba = String::new();
        for l in &b.hba {
            hba.push_str(l);
            hba.push('\n');
        }
        hba.push_str("local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n");
        std::fs::write(node.data_dir.join("pg_hba.conf"), hba).map_err(io("write pg_hba.conf"))?;
        start_on_free_port(&mut node)?;
        Ok(node)
    }

    fn create_standby(&self, i: usize) -> Result<Node, Error> {
        let name = format!("standby{i}");
        let mut node = self.node(&name, 0);
        let primary = self.primary();
        let mut cmd = self.server_cmd("pg_basebackup");
        cmd.args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-D"])
            .arg(&node.data_dir)
            .args(["--no-sync", "-c", "fast", "-R", "-X", "stream"]);
        run(cmd)?;
        std::fs::set_permissions(&node.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod standby"))?;
        start_on_free_port(&mut node)?;
        Ok(node)
    }
}

/// An initdb'd data directory shared by every cluster of this user and
/// PostgreSQL version, made once (initdb is the slow part of a start);
/// `scratch` is the calling cluster's own dir, where it is built.
pub(crate) fn template_data_dir(
    bin: &Path,
    user: &Option<(String, u32, u32)>,
    scratch: &Path,
) -> Result<PathBuf, Error> {
    let uid =
        user.as_ref().map(|u| u.1).unwrap_or_else(|| std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0));
    let tag: u64 =
        bin.to_string_lossy().bytes().fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
    let root = std::env::temp_dir().join(format!("pooler-testkit-template-{uid}-{tag:x}"));
    let data = root.join("data");
    if data.join("PG_VERSION").exists() && root.join("complete").exists() {
        return Ok(data);
    }
    // Build it under a unique name, then rename into place; the loser of a
    // race uses the winner's.
    let staging = scratch.join("template-staging");
    std::fs::create_dir_all(&staging).map_err(io("create template staging dir"))?;
    if let Some((_, uid, gid)) = user {
        std::os::unix::fs::chown(&staging, Some(*uid), Some(*gid)).map_err(io("chown staging"))?;
    }
    let mut cmd = server_command(bin, "initdb", user, scratch);
    cmd.arg("-D").arg(staging.join("data")).args([
        "--no-sync",
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    run(cmd)?;
    std::fs::write(staging.join("complete"), b"").map_err(io("mark template complete"))?;
    match std::fs::rename(&staging, &root) {
        Ok(()) => {}
        Err(_) if root.join("complete").exists() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => {
            // A half-made leftover from a killed run: replace it.
            let _ = std::fs::remove_dir_all(&root);
            std::fs::rename(&staging, &root).map_err(|_| Error::Io { what: "install template".into(), source: e })?;
        }
    }
    let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755));
    Ok(data)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter().rev() {
            let _ = n.stop(StopMode::Immediate);
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One PostgreSQL server of a [`Cluster`].
#[derive(Clone, Debug)]
pub struct Node {
    name: String,
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    bin: PathBuf,
    user: Option<(String, u32, u32)>,
}

impl Node {
    /// `primary`, `standby1`, `standby2`...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Server log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The superuser role name (`postgres`).
    pub fn superuser(&self) -> &str {
        "postgres"
    }

    /// `host=127.0.0.1 port=N user=U dbname=D`.
    pub fn conn_string(&self, user: &str, db: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port)
    }

    /// Runs SQL with psql as the superuser on `db`; returns trimmed output
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        psql_with(&self.bin, self.port, "postgres", db, sql)
    }

    /// [`Node::psql`] on database `postgres`.
    pub fn query_one(&self, sql: &str) -> Result<String, Error> {
        self.psql("postgres", sql)
    }

    fn pg_ctl(&self) -> Command {
        let parent = self.data_dir.parent().unwrap_or(Path::new("/tmp"));
        let mut c = server_command(&self.bin, "pg_ctl", &self.user, parent);
        c.arg("-D").arg(&self.data_dir);
        c
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), Error> {
        let mut c = self.pg_ctl();
        c.arg("-l").arg(&self.log_file).args(["-w", "-t", "60", "-o"]).arg(format!("-p {}", self.port)).arg("start");
        run(c).map(|_| ()).map_err(|e| self.with_log(e))
    }

    /// Stops the server (no error if it is not running).
    pub fn stop(&self, mode: StopMode) -> Result<(), Error> {
        if !self.is_running() {
            return Ok(());
        }
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let mut c = self.pg_ctl();
        c.args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(c).map(|_| ())
    }

    /// Stops (fast) and starts again.
    pub fn restart(&self) -> Result<(), Error> {
        self.stop(StopMode::Fast)?;
        self.start()
    }

    /// Promotes a standby and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), Error> {
        let mut c = self.pg_ctl();
        c.args(["-w", "-t", "60", "promote"]);
        run(c).map(|_| ())
    }

    /// True when the postmaster is up (pid file present and process alive).
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, ...) to the postmaster and every
    /// process it started (backends, WAL sender and receiver, checkpointer...):
    /// `STOP` freezes the whole server as a hung host would, `CONT` thaws it.
    pub fn signal_all(&self, signal: &str) -> Result<(), Error> {
        let pid = self.postmaster_pid().ok_or_else(|| Error::Timeout(format!("{} is not running", self.name)))?;
        let mut pids = vec![pid];
        for e in std::fs::read_dir("/proc").map_err(io("read /proc"))?.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // pid (comm) state ppid ...: the comm may hold spaces, so read after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
        // Children first when stopping, so none acts on a stopped parent's
        // behalf; the postmaster first when continuing.
        if signal == "STOP" {
            pids.reverse();
        }
        let mut cmd = Command::new("kill");
        cmd.arg(format!("-{signal}")).args(pids.iter().map(|p| p.to_string()));
        run(cmd).map(|_| ())
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn with_log(&self, e: Error) -> Error {
        match e {
            Error::Command { command, status, stderr } => {
                let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Error::Command { command, status, stderr: format!("{stderr}\n--- server log ---\n{}", tail.join("\n")) }
            }
            other => other,
        }
    }
}

/// A new, empty cluster dir in the temp dir, owned by the server user; its
/// name carries this process's pid so [`reap_orphans`] can tell an orphan.
pub(crate) fn make_cluster_dir(user: &Option<(String, u32, u32)>) -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "pooler-testkit-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    ));
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod cluster dir"))?;
    if let Some((_, uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).map_err(io("chown cluster dir"))?;
    }
    Ok(dir)
}

/// Stops and deletes clusters left behind by test processes that died without
/// dropping them (killed on a timeout, say): their directory names carry the
/// owner's pid, so a cluster whose owner is gone is an orphan.
pub(crate) fn reap_orphans(bin: &Path, user: &Option<(String, u32, u32)>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("pooler-testkit-")) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let dir = e.path();
            // A repmgr cluster's daemons first (their pid files are in the
            // cluster dir), so none restarts or promotes a node meanwhile.
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if f.file_name().to_str().is_some_and(|n| n.ends_with(".repmgrd.pid")) {
                    repmgr::kill_repmgrd_from_pid_file(&f.path());
                }
            }
            for sub in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if sub.path().join("postmaster.pid").exists() {
                    let mut c = server_command(bin, "pg_ctl", user, &dir);
                    c.arg("-D").arg(sub.path()).args(["-m", "immediate", "-w", "-t", "30", "stop"]);
                    let _ = run(c);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// Starts `node` on a free port, retrying with another if a parallel test
/// took the port first.
fn start_on_free_port(node: &mut Node) -> Result<(), Error> {
    let mut last = None;
    for _ in 0..5 {
        node.port = free_port()?;
        let _ = std::fs::remove_file(&node.log_file);
        match node.start() {
            Ok(()) => return Ok(()),
            Err(e) => {
                let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
                if !(log.contains("could not bind")
                    || log.contains("Address already in use")
                    || log.contains("could not create any TCP/IP sockets"))
                {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(Error::Timeout("a free port".into())))
}

pub(crate) fn server_command(bin: &Path, program: &str, user: &Option<(String, u32, u32)>, home: &Path) -> Command {
    let mut c = Command::new(bin.join(program));
    for v in ["PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGOPTIONS", "PGSERVICE"] {
        c.env_remove(v);
    }
    c.env("HOME", home).current_dir(home);
    if let Some((_, uid, gid)) = user {
        c.uid(*uid).gid(*gid);
    }
    c
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; a non-zero exit is an error with stderr.
pub(crate) fn run(mut cmd: Command) -> Result<Output, Error> {
    let command = describe(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

pub(crate) fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).map_err(io(format!("open {}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(io(format!("write {}", path.display())))
}

/// Copies a data directory (as the server user, keeping modes) to `to`.
pub(crate) fn copy_as(from: &Path, to: &Path, user: &Option<(String, u32, u32)>) -> Result<(), Error> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    if let Some((_, uid, gid)) = user {
        cmd.uid(*uid).gid(*gid);
    }
    run(cmd)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).map_err(io("chmod data dir"))
}
