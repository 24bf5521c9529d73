//! Benchmark harness support. The micro-benchmarks live in `benches/`; the
//! measuring tools in `src/bin/`.
#![forbid(unsafe_code)]

/// Peak (VmHWM) and current (VmRSS) resident set size of a process, in KiB,
/// read from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The value after `prefix` on the first line of pgbench output that has it.
pub fn field<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.trim().strip_prefix(prefix)).map(str::trim)
}

/// Runs pgbench from `bin` against 127.0.0.1:`port` as postgres on database
/// postgres; its standard output, or an error with everything it printed.
pub fn pgbench(bin: &std::path::Path, port: u16, args: &[String]) -> Result<String, String> {
    let out = std::process::Command::new(bin.join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(text)
}

/// utime + stime of a process, in seconds, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The `pooler` binary running as a child process; stopped (SIGTERM) on drop.
pub struct PoolerProcess {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl PoolerProcess {
    /// Writes `config_body` (TOML, whose `[server]` table this function
    /// prepends with `listen`) to `dir/pooler.toml`, starts `binary` on a free
    /// port and waits until it accepts connections.
    pub fn start(
        binary: &std::path::Path,
        dir: &std::path::Path,
        server_extra: &str,
        rest: &str,
    ) -> Result<PoolerProcess, Box<dyn std::error::Error>> {
        PoolerProcess::start_logged(binary, dir, server_extra, rest, "warn", None)
    }

    /// Like [`PoolerProcess::start`], logging at `level` (RUST_LOG) to
    /// `log_file` (standard error when `None`).
    pub fn start_logged(
        binary: &std::path::Path,
        dir: &std::path::Path,
        server_extra: &str,
        rest: &str,
        level: &str,
        log_file: Option<&std::path::Path>,
    ) -> Result<PoolerProcess, Box<dyn std::error::Error>> {
        if !binary.exists() {
            return Err(
                format!("{} not found: build it with cargo build --release -p pooler-bin", binary.display()).into()
            );
        }
        let port = pooler_testkit::free_port()?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("pooler.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\nlog_connections = false\n{server_extra}\n{rest}"),
        )?;
        let stderr = match log_file {
            Some(f) => std::process::Stdio::from(std::fs::File::create(f)?),
            None => std::process::Stdio::inherit(),
        };
        let child = std::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()?;
        let mut p = PoolerProcess { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("pooler did not start listening within 10 s".into());
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("pooler exited at start: {status}").into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(p)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PoolerProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// pgbouncer from the system packages, in the same pool mode, as the server user.
pub struct Pgbouncer {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl Pgbouncer {
    /// Starts pgbouncer in front of 127.0.0.1:`backend` with trust auth,
    /// `pool_mode = mode` and `default_pool_size = pool`, accepting `clients`
    /// (plus a margin), its files under `dir/pgbouncer`.
    pub fn start(
        dir: &std::path::Path,
        backend: u16,
        pool: usize,
        clients: usize,
        mode: &str,
    ) -> Result<Pgbouncer, Box<dyn std::error::Error>> {
        Pgbouncer::start_with(dir, "127.0.0.1", backend, pool, clients, mode, "")
    }

    /// [`Pgbouncer::start`] with the server at `backend_host` (an address or
    /// a Unix socket directory) and `extra` lines for its `[pgbouncer]`
    /// section (TLS settings, `unix_socket_dir`).
    pub fn start_with(
        dir: &std::path::Path,
        backend_host: &str,
        backend: u16,
        pool: usize,
        clients: usize,
        mode: &str,
        extra: &str,
    ) -> Result<Pgbouncer, Box<dyn std::error::Error>> {
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or("pgbouncer not installed")?;
        let port = pooler_testkit::free_port()?;
        let work = dir.join("pgbouncer");
        std::fs::create_dir_all(&work)?;
        let ini = work.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={backend_host} port={backend}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 {}auth_type = trust\nauth_file = {}\npool_mode = {mode}\ndefault_pool_size = {pool}\n\
                 max_client_conn = {}\nlogfile = {}\nlog_connections = 0\nlog_disconnections = 0\n",
                if extra.contains("unix_socket_dir") { extra.to_owned() } else { format!("unix_socket_dir =\n{extra}") },
                work.join("userlist.txt").display(),
                clients + 10,
                work.join("pgbouncer.log").display()
            ),
        )?;
        std::fs::write(work.join("userlist.txt"), "\"postgres\" \"\"\n")?;
        if let Some((_, uid, gid)) = pooler_testkit::server_os_user() {
            for f in [&work, &ini, &work.join("userlist.txt")] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid))?;
            }
        }
        let mut cmd = std::process::Command::new(bin);
        cmd.arg(&ini).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        pooler_testkit::run_as_server_user(&mut cmd);
        let mut child = cmd.spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                return Err("pgbouncer did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Pgbouncer { child, port })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pgpool-II from the system packages (Debian: apt-get install pgpool2),
/// streaming-replication mode over the given nodes, connection cache on, load
/// balancing off (so it compares with a pooler sending everything to the
/// primary), health and replication checks off, as the server user. pgpool
/// runs a process per client: `children` is how many clients it can serve at
/// once (`num_init_children`).
pub struct Pgpool {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl Pgpool {
    /// Starts pgpool in front of `nodes` (127.0.0.1 ports, the primary
    /// first), its files under `dir/pgpool`.
    pub fn start(dir: &std::path::Path, nodes: &[u16], children: usize) -> Result<Pgpool, Box<dyn std::error::Error>> {
        let bin = std::path::PathBuf::from("/usr/sbin/pgpool");
        if !bin.exists() {
            return Err("pgpool not installed".into());
        }
        let port = pooler_testkit::free_port()?;
        let pcp = pooler_testkit::free_port()?;
        let work = dir.join("pgpool");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let w = work.display();
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\npcp_listen_addresses = ''\npcp_port = {pcp}\n\
             unix_socket_directories = '{w}'\npcp_socket_dir = '{w}'\npid_file_name = '{w}/pgpool.pid'\n\
             logdir = '{w}'\nbackend_clustering_mode = 'streaming_replication'\n\
             num_init_children = {children}\nmax_pool = 1\nconnection_cache = on\nload_balance_mode = off\n\
             sr_check_period = 0\nsr_check_user = 'postgres'\nhealth_check_period = 0\nhealth_check_user = 'postgres'\n\
             enable_pool_hba = off\npool_passwd = ''\nlog_destination = 'stderr'\nlogging_collector = off\n\
             failover_on_backend_error = off\nreserved_connections = 0\nlisten_backlog_multiplier = 4\n\
             child_life_time = 0\nchild_max_connections = 0\nconnection_life_time = 0\n"
        );
        for (i, p) in nodes.iter().enumerate() {
            conf.push_str(&format!(
                "backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {p}\nbackend_weight{i} = 1\n\
                 backend_flag{i} = 'ALLOW_TO_FAILOVER'\n"
            ));
        }
        let ini = work.join("pgpool.conf");
        std::fs::write(&ini, conf)?;
        std::fs::write(work.join("pcp.conf"), "")?;
        if let Some((_, uid, gid)) = pooler_testkit::server_os_user() {
            for f in [work.clone(), ini.clone(), work.join("pcp.conf")] {
                std::os::unix::fs::chown(&f, Some(uid), Some(gid))?;
            }
        }
        let log = std::fs::File::create(work.join("pgpool.log"))?;
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["-n", "-D", "-f"])
            .arg(&ini)
            .arg("-F")
            .arg(work.join("pcp.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(log);
        pooler_testkit::run_as_server_user(&mut cmd);
        let mut child = cmd.spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Listening is not enough: wait until a query goes through.
        while pooler_testkit::psql_at(port, "postgres", "postgres", "SELECT 1").is_err() {
            if std::time::Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                let log = std::fs::read_to_string(work.join("pgpool.log")).unwrap_or_default();
                return Err(format!(
                    "pgpool did not start: {}",
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                )
                .into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(Pgpool { child, port })
    }

    /// Process id of the main process (the children are its descendants).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Pgpool {
    fn drop(&mut self) {
        // SIGINT: fast shutdown of the whole process tree.
        let _ = std::process::Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pid` and all its descendants, from /proc.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// CPU seconds (user + system) of `pid` and its descendants.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    process_tree(pid).into_iter().filter_map(cpu_seconds).sum()
}

/// Sum of the peak resident sizes (VmHWM, KiB) of `pid` and its descendants
/// (shared pages counted once per process: an upper bound for a forking server).
pub fn tree_peak_rss_kib(pid: u32) -> u64 {
    process_tree(pid).into_iter().filter_map(rss_kib).map(|(peak, _)| peak).sum()
}

pub mod failover;
pub mod report;
