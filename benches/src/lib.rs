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
