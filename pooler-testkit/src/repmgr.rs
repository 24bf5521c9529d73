//! repmgr-managed clusters — a primary and N standbys cloned and registered
//! with real repmgr, repmgrd per node on demand — in a temp dir on free
//! loopback ports, for end-to-end tests of repmgr failover setups.
//!
//! ```no_run
//! use pooler_testkit::{RepmgrCluster, RepmgrFailover};
//! let mut cluster = RepmgrCluster::builder().standbys(2).failover(RepmgrFailover::Automatic).start()?;
//! cluster.start_repmgrd(1)?;
//! cluster.start_repmgrd(2)?;
//! cluster.kill_node(0)?; // repmgrd promotes node 1 or 2
//! println!("{}", cluster.cluster_show());
//! # Ok::<(), pooler_testkit::Error>(())
//! ```
//!
//! Node `i` (0-based, the pooler's `[[nodes]]` index when the nodes are
//! configured in order) is repmgr node `i + 1`, named `node<i+1>`, with its
//! configuration in `<dir>/node<i+1>.conf`: the layout the example scripts
//! read with `REPMGR_CONF_DIR=<dir>` and the default
//! `REPMGR_NODE_ID_OFFSET=1`. It is set up the way repmgr's quickstart does
//! it: the primary is initdb'd (the testkit's template) with
//! `shared_preload_libraries = 'repmgr'` and `wal_log_hints = on`, gets a
//! `repmgr` superuser and database and is registered with `repmgr primary
//! register`; each standby is made with `repmgr standby clone` from it,
//! started, and `repmgr standby register`ed. Servers, repmgr and repmgrd run
//! as the server OS user when this process is root. Dropping the cluster
//! kills its repmgrd processes, stops its servers and deletes its dir; a
//! cluster left behind by a killed process is reaped (repmgrd included) like
//! the plain [`crate::Cluster`]'s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    append, copy_as, io, make_cluster_dir, pg_bin_dir, reap_orphans, run, server_command, server_user_checked,
    template_data_dir, Error, Node, StopMode,
};

/// The PostgreSQL bin dir when repmgr and repmgrd are installed there (as
/// Debian's `postgresql-<major>-repmgr` and a source build do), else
/// [`Error::RepmgrNotFound`].
pub fn repmgr_bin_dir() -> Result<PathBuf, Error> {
    let bin = pg_bin_dir()?;
    for program in ["repmgr", "repmgrd"] {
        if !bin.join(program).exists() {
            return Err(Error::RepmgrNotFound(bin.join(program)));
        }
    }
    Ok(bin)
}

/// repmgr.conf's `failover`: whether repmgrd promotes a standby by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepmgrFailover {
    /// repmgrd runs `promote_command` on the elected standby and
    /// `follow_command` on the others when the primary is gone.
    Automatic,
    /// repmgrd only monitors; something else (the pooler's failover command)
    /// promotes.
    Manual,
}

/// Builds a [`RepmgrCluster`].
#[derive(Clone, Debug)]
pub struct RepmgrBuilder {
    standbys: usize,
    failover: RepmgrFailover,
    init_sql: Vec<String>,
    promote_command: Option<String>,
    follow_command: Option<String>,
    monitor_interval_secs: u32,
    reconnect_attempts: u32,
    reconnect_interval: u32,
    conf: Vec<(String, String)>,
}

impl Default for RepmgrBuilder {
    fn default() -> Self {
        RepmgrBuilder {
            standbys: 0,
            failover: RepmgrFailover::Manual,
            init_sql: Vec::new(),
            promote_command: None,
            follow_command: None,
            monitor_interval_secs: 1,
            reconnect_attempts: 2,
            reconnect_interval: 1,
            conf: Vec::new(),
        }
    }
}

impl RepmgrBuilder {
    /// Number of standbys (default 0).
    pub fn standbys(mut self, n: usize) -> Self {
        self.standbys = n;
        self
    }

    /// `failover` in every node's repmgr.conf (default
    /// [`RepmgrFailover::Manual`]).
    pub fn failover(mut self, f: RepmgrFailover) -> Self {
        self.failover = f;
        self
    }

    /// SQL run on the primary (database `postgres`, as superuser) before the
    /// standbys are cloned, so they have it too.
    pub fn init_sql(mut self, sql: &str) -> Self {
        self.init_sql.push(sql.to_owned());
        self
    }

    /// repmgrd's `promote_command`; `{conf}` becomes the node's repmgr.conf.
    /// Default: `repmgr standby promote -f {conf} --log-to-file`.
    pub fn promote_command(mut self, command: &str) -> Self {
        self.promote_command = Some(command.to_owned());
        self
    }

    /// repmgrd's `follow_command`; `{conf}` becomes the node's repmgr.conf
    /// (repmgrd itself replaces `%n` with the new upstream's node id).
    /// Default: `repmgr standby follow -f {conf} --log-to-file --upstream-node-id=%n`.
    pub fn follow_command(mut self, command: &str) -> Self {
        self.follow_command = Some(command.to_owned());
        self
    }

    /// repmgrd's `monitor_interval_secs` (default 1), `reconnect_attempts`
    /// (default 2) and `reconnect_interval` (default 1): how soon repmgrd
    /// gives up on a primary (about `attempts × interval` seconds after a
    /// failed look).
    pub fn monitoring(mut self, monitor_interval_secs: u32, reconnect_attempts: u32, reconnect_interval: u32) -> Self {
        self.monitor_interval_secs = monitor_interval_secs;
        self.reconnect_attempts = reconnect_attempts;
        self.reconnect_interval = reconnect_interval;
        self
    }

    /// Any other repmgr.conf setting, on every node (`value` is written
    /// quoted).
    pub fn conf(mut self, key: &str, value: &str) -> Self {
        self.conf.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Creates the primary, clones and registers the standbys, and waits
    /// until they stream.
    pub fn start(self) -> Result<RepmgrCluster, Error> {
        let bin = repmgr_bin_dir()?;
        let user = server_user_checked()?;
        reap_orphans(&bin, &user);
        let dir = make_cluster_dir(&user)?;
        let mut cluster =
            RepmgrCluster { dir, bin, user, nodes: Vec::new(), daemons: Vec::new(), builder: self, keep: false };
        // From here on, Drop cleans up whatever was started.
        cluster.create_primary()?;
        for i in 1..=cluster.builder.standbys {
            cluster.create_standby(i)?;
        }
        cluster.wait_for_replication(Duration::from_secs(60))?;
        Ok(cluster)
    }
}

/// A repmgr-managed primary with its standbys; node `i` is repmgr node
/// `i + 1`. Stopped and deleted on drop.
#[derive(Debug)]
pub struct RepmgrCluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<(String, u32, u32)>,
    nodes: Vec<Node>,
    daemons: Vec<Option<Child>>,
    builder: RepmgrBuilder,
    keep: bool,
}

impl RepmgrCluster {
    /// A builder: no standbys, `failover=manual`, 1 s monitoring.
    pub fn builder() -> RepmgrBuilder {
        RepmgrBuilder::default()
    }

    /// Every node; index 0 was the first primary.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// repmgr's node id of node `i`: `i + 1`.
    pub fn repmgr_node_id(&self, i: usize) -> usize {
        i + 1
    }

    /// Node `i`'s repmgr.conf: `<dir>/node<i+1>.conf`.
    pub fn conf(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}.conf", i + 1))
    }

    /// Node `i`'s repmgr log (repmgrd's, and repmgr's with `--log-to-file`).
    pub fn repmgr_log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}.repmgr.log", i + 1))
    }

    /// The directory of the repmgr.conf files (`REPMGR_CONF_DIR` for the
    /// example scripts) and of everything else: the cluster's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL bin dir, holding repmgr and repmgrd too.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The directory of the nodes' Unix sockets.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sockets")
    }

    /// Keeps the files after drop (servers and repmgrd are still stopped).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The node that answers as a primary now; if several do (a failed
    /// primary restarted after a promotion), the one on the latest timeline.
    pub fn current_primary(&self) -> Option<usize> {
        let sql = "SELECT timeline_id FROM pg_control_checkpoint() WHERE NOT pg_is_in_recovery()";
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .filter_map(|i| Some((self.nodes[i].query_one(sql).ok()?.parse::<u32>().ok()?, i)))
            .max()
            .map(|(_, i)| i)
    }

    /// Runs `repmgr -f <node i's conf> args...` as the server user; its
    /// standard output. A failure carries its standard error.
    pub fn repmgr(&self, i: usize, args: &[&str]) -> Result<String, Error> {
        let mut cmd = self.server_cmd("repmgr");
        cmd.arg("-f").arg(self.conf(i)).args(args);
        let out = run(cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `repmgr cluster show` with its warnings, for debugging output, asked
    /// through the node answering as a primary (its metadata is the current
    /// one), else the first that runs. It exits non-zero when something is
    /// amiss, which is when it is worth reading: the output is kept whatever
    /// the exit status.
    pub fn cluster_show(&self) -> String {
        let Some(i) = self.current_primary().or_else(|| self.nodes.iter().position(Node::is_running)) else {
            return "repmgr cluster show: no node runs".into();
        };
        let mut cmd = self.server_cmd("repmgr");
        cmd.arg("-f").arg(self.conf(i)).args(["cluster", "show"]).stdin(Stdio::null());
        match cmd.output() {
            Ok(out) => format!(
                "repmgr cluster show (asked through node{}, {}):\n{}{}",
                i + 1,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("repmgr cluster show: cannot run repmgr: {e}"),
        }
    }

    /// Starts repmgrd for node `i` (`repmgrd -f conf --daemonize=false`, a
    /// child process, killed by [`RepmgrCluster::stop_repmgrd`] or on drop)
    /// and waits until it monitors.
    pub fn start_repmgrd(&mut self, i: usize) -> Result<(), Error> {
        self.stop_repmgrd(i);
        let out_path = self.dir.join(format!("node{}.repmgrd.out", i + 1));
        let out = std::fs::File::create(&out_path).map_err(io("create the repmgrd output file"))?;
        let err = out.try_clone().map_err(io("dup the repmgrd output file"))?;
        let log = self.repmgr_log(i);
        let before = std::fs::read_to_string(&log).map(|t| t.len()).unwrap_or(0);
        let mut cmd = self.server_cmd("repmgrd");
        cmd.arg("-f").arg(self.conf(i)).arg("--daemonize=false").stdin(Stdio::null()).stdout(out).stderr(err);
        let command = crate::describe(&cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn { command: command.clone(), source })?;
        if self.daemons.len() <= i {
            self.daemons.resize_with(i + 1, || None);
        }
        self.daemons[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.get(before..).is_some_and(|t| t.contains("monitoring")) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.daemons[i].as_mut().map(|c| c.try_wait()) {
                self.daemons[i] = None;
                let output = std::fs::read_to_string(&out_path).unwrap_or_default();
                return Err(Error::Command {
                    command,
                    status: status.to_string(),
                    stderr: format!("{output}\n--- repmgr log ---\n{}", text.get(before..).unwrap_or_default()),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("repmgrd of node{} to start monitoring", i + 1)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills node `i`'s repmgrd, if it runs.
    pub fn stop_repmgrd(&mut self, i: usize) {
        if let Some(Some(mut child)) = self.daemons.get_mut(i).map(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.pid_file(i));
    }

    /// Kills node `i`'s PostgreSQL at once (`pg_ctl stop -m immediate`: a
    /// crash, as far as the others can tell).
    pub fn kill_node(&self, i: usize) -> Result<(), Error> {
        self.nodes[i].stop(StopMode::Immediate)
    }

    /// Waits until every running standby streams from the current primary
    /// and has replayed what it had written when this was called.
    pub fn wait_for_replication(&self, timeout: Duration) -> Result<(), Error> {
        let p = self.current_primary().ok_or_else(|| Error::Timeout("a primary to answer".into()))?;
        let lsn = self.nodes[p].query_one("SELECT pg_current_wal_lsn()")?;
        let deadline = Instant::now() + timeout;
        for (i, s) in self.nodes.iter().enumerate() {
            if i == p || !s.is_running() {
                continue;
            }
            let sql = format!(
                "SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn AND EXISTS \
                 (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_port = {})",
                self.nodes[p].port()
            );
            while !s.query_one(&sql).is_ok_and(|v| v == "t") {
                if Instant::now() > deadline {
                    return Err(Error::Timeout(format!("{} to replay up to {lsn} from node{}", s.name(), p + 1)));
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        Ok(())
    }

    /// Rebuilds node `i` from scratch as a standby of node `upstream`, as an
    /// operator recovers a lost node: stops it if it runs, deletes its data
    /// directory, `repmgr standby clone --force` from `upstream`, starts it,
    /// `repmgr standby register --force`; waits until it streams.
    pub fn reclone_standby(&mut self, i: usize, upstream: usize) -> Result<(), Error> {
        self.stop_repmgrd(i);
        self.nodes[i].stop(StopMode::Immediate)?;
        wipe_dir(&self.nodes[i].data_dir)?;
        self.clone_from(i, upstream, true)?;
        self.start_node(i)?;
        self.repmgr(i, &["standby", "register", "--force"])?;
        self.wait_for_replication(Duration::from_secs(60))
    }

    fn server_cmd(&self, program: &str) -> Command {
        server_command(&self.bin, program, &self.user, &self.dir)
    }

    fn pid_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}.repmgrd.pid", i + 1))
    }

    fn new_node(&self, i: usize) -> Result<Node, Error> {
        let name = format!("node{}", i + 1);
        Ok(Node {
            port: crate::free_port()?,
            data_dir: self.dir.join(&name),
            log_file: self.dir.join(format!("{name}.log")),
            name,
            bin: self.bin.clone(),
            user: self.user.clone(),
        })
    }

    /// Writes node `i`'s repmgr.conf for its current port.
    fn write_conf(&self, i: usize) -> Result<(), Error> {
        let n = &self.nodes[i];
        let b = &self.builder;
        let conf = self.conf(i);
        let (bin, data, log, port) = (self.bin.display(), n.data_dir.display(), n.log_file.display(), n.port);
        let c = conf.display();
        let subst = |s: &str| s.replace("{conf}", &c.to_string());
        let promote = b
            .promote_command
            .as_deref()
            .map(subst)
            .unwrap_or_else(|| format!("{bin}/repmgr standby promote -f {c} --log-to-file"));
        let follow = b
            .follow_command
            .as_deref()
            .map(subst)
            .unwrap_or_else(|| format!("{bin}/repmgr standby follow -f {c} --log-to-file --upstream-node-id=%n"));
        let failover = match b.failover {
            RepmgrFailover::Automatic => "automatic",
            RepmgrFailover::Manual => "manual",
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("node_name", n.name.clone()),
            ("conninfo", format!("host=127.0.0.1 port={} user=repmgr dbname=repmgr connect_timeout=2", n.port)),
            ("data_directory", data.to_string()),
            ("pg_bindir", bin.to_string()),
            ("replication_user", "repmgr".into()),
            ("use_replication_slots", "yes".into()),
            ("pg_basebackup_options", "--no-sync".into()),
            ("log_file", self.repmgr_log(i).display().to_string()),
            ("log_level", "INFO".into()),
            ("repmgrd_pid_file", self.pid_file(i).display().to_string()),
            ("failover", failover.into()),
            ("promote_command", promote),
            ("follow_command", follow),
            ("monitor_interval_secs", b.monitor_interval_secs.to_string()),
            ("reconnect_attempts", b.reconnect_attempts.to_string()),
            ("reconnect_interval", b.reconnect_interval.to_string()),
            ("primary_notification_timeout", "20".into()),
            ("standby_follow_timeout", "20".into()),
            // The port is given on the command line, as Node::start does:
            // postgresql.conf is in the data directory, which standby clone
            // copies from the upstream.
            ("service_start_command", format!("{bin}/pg_ctl -D {data} -l {log} -o \"-p {port}\" -w -t 60 start")),
            ("service_stop_command", format!("{bin}/pg_ctl -D {data} -m fast -w -t 60 stop")),
            (
                "service_restart_command",
                format!("{bin}/pg_ctl -D {data} -l {log} -o \"-p {port}\" -m fast -w -t 60 restart"),
            ),
            ("service_promote_command", format!("{bin}/pg_ctl -D {data} -w -t 60 promote")),
        ];
        for (k, v) in &b.conf {
            settings.retain(|(key, _)| key != k);
            settings.push((k, v.clone()));
        }
        let mut text = format!("# pooler-testkit: repmgr node {} (testkit node {i})\nnode_id={}\n", i + 1, i + 1);
        for (k, v) in settings {
            text.push_str(&format!("{k}='{}'\n", v.replace('\'', "\\'")));
        }
        std::fs::write(&conf, text).map_err(io(format!("write {}", conf.display())))
    }

    /// Starts node `i` on its port, with another free one (conf rewritten)
    /// when a parallel test took it first.
    fn start_node(&mut self, i: usize) -> Result<(), Error> {
        let mut attempt = 0;
        loop {
            self.write_conf(i)?;
            let _ = std::fs::remove_file(&self.nodes[i].log_file);
            match self.nodes[i].start() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let log = std::fs::read_to_string(&self.nodes[i].log_file).unwrap_or_default();
                    let taken = log.contains("could not bind")
                        || log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets");
                    attempt += 1;
                    if !taken || attempt == 5 {
                        return Err(e);
                    }
                    self.nodes[i].port = crate::free_port()?;
                }
            }
        }
    }

    fn create_primary(&mut self) -> Result<(), Error> {
        let sockets = self.socket_dir();
        std::fs::create_dir_all(&sockets).map_err(io("create socket dir"))?;
        if let Some((_, uid, gid)) = &self.user {
            std::os::unix::fs::chown(&sockets, Some(*uid), Some(*gid)).map_err(io("chown socket dir"))?;
        }
        let node = self.new_node(0)?;
        let template = template_data_dir(&self.bin, &self.user, &self.dir)?;
        copy_as(&template, &node.data_dir, &self.user)?;
        let mut conf = String::from("\n# pooler-testkit (repmgr)\n");
        for (k, v) in [
            ("listen_addresses", "'127.0.0.1'"),
            ("fsync", "off"),
            ("full_page_writes", "on"),
            ("wal_log_hints", "on"),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("hot_standby", "on"),
            ("wal_keep_size", "'256MB'"),
            ("shared_buffers", "'32MB'"),
            ("max_connections", "100"),
            ("shared_preload_libraries", "'repmgr'"),
            ("log_min_messages", "warning"),
            ("logging_collector", "off"),
        ] {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        conf.push_str(&format!("unix_socket_directories = '{}'\n", sockets.display()));
        append(&node.data_dir.join("postgresql.conf"), &conf)?;
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n";
        std::fs::write(node.data_dir.join("pg_hba.conf"), hba).map_err(io("write pg_hba.conf"))?;
        self.nodes.push(node);
        self.start_node(0)?;
        let primary = &self.nodes[0];
        primary.query_one("CREATE USER repmgr SUPERUSER REPLICATION")?;
        primary.query_one("CREATE DATABASE repmgr OWNER repmgr")?;
        primary.query_one("ALTER USER repmgr SET search_path TO repmgr, \"$user\", public")?;
        for sql in &self.builder.init_sql {
            primary.psql("postgres", sql)?;
        }
        self.repmgr(0, &["primary", "register"])?;
        Ok(())
    }

    fn create_standby(&mut self, i: usize) -> Result<(), Error> {
        let node = self.new_node(i)?;
        self.nodes.push(node);
        self.write_conf(i)?;
        self.clone_from(i, 0, false)?;
        self.start_node(i)?;
        self.repmgr(i, &["standby", "register"])?;
        Ok(())
    }

    /// `repmgr standby clone` of node `i` from node `upstream`.
    fn clone_from(&self, i: usize, upstream: usize, force: bool) -> Result<(), Error> {
        let port = self.nodes[upstream].port.to_string();
        let mut cmd = self.server_cmd("repmgr");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", "repmgr", "-d", "repmgr", "-f"]).arg(self.conf(i)).args([
            "standby",
            "clone",
            "--fast-checkpoint",
        ]);
        if force {
            cmd.arg("--force");
        }
        run(cmd)?;
        Ok(())
    }
}

impl Drop for RepmgrCluster {
    fn drop(&mut self) {
        for i in 0..self.daemons.len() {
            self.stop_repmgrd(i);
        }
        for n in self.nodes.iter().rev() {
            let _ = n.stop(StopMode::Immediate);
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deletes everything in `dir` but `dir` itself (what an operator's lost
/// disk leaves; `standby clone --force` fills it again).
fn wipe_dir(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).map_err(io(format!("read {}", dir.display())))?.flatten() {
        let p = e.path();
        let r = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        r.map_err(io(format!("delete {}", p.display())))?;
    }
    Ok(())
}

/// Kills the repmgrd whose pid `path` holds, if that process is a repmgrd
/// (for clusters whose owner died without dropping them).
pub(crate) fn kill_repmgrd_from_pid_file(path: &Path) {
    let Some(pid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<u32>().ok()) else { return };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "repmgrd" {
        let mut cmd = Command::new("kill");
        cmd.args(["-KILL", &pid.to_string()]);
        let _ = run(cmd);
    }
}
