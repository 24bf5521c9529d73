//! `pooler`: the standalone binary. Parses the command line, sets up logging
//! and signals, and hands a listener to `pooler_core::Pooler`.

mod ctl;
mod endpoint;
mod upgrade;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pooler_core::config::{AuthMethod, NodeConfig, PoolMode};
use pooler_core::convert::Source;
use pooler_core::{Config, Listeners, Pooler};

const USAGE: &str = "\
pooler: PostgreSQL connection pooler and query router

USAGE:
    pooler --config FILE        run with this configuration file
    pooler check --config FILE  validate a configuration file and exit
    pooler demo [--port PORT] [--mode session|transaction|statement] [--load-balance]
                                start a throwaway PostgreSQL primary + standby
                                and a pooler in front of them (Ctrl-C cleans up);
                                --load-balance sends reads to both nodes
    pooler ctl [--host H] [--port P] [--user U] [--json] COMMAND
                                run an admin console command (pooler ctl --help)
    pooler convert FILE [--from pgbouncer|pgpool]
                                print the equivalent of a pgbouncer.ini or a
                                pgpool.conf as our TOML (docs/MIGRATION.md)
    pooler --version

Signals: SIGTERM/SIGINT shut down gracefully; SIGHUP reloads the configuration
file; SIGUSR2 starts the binary again and hands it the listening sockets
(docs/ADMIN.md, upgrading without a gap).

Options: --log-format text|json (default text; no colours unless on a terminal).
Logging follows RUST_LOG (default: info), e.g. RUST_LOG=pooler_core=debug.
";

enum Command {
    Ctl(ctl::Ctl),
    Convert { file: PathBuf, from: Option<Source> },
    Run(PathBuf),
    Check(PathBuf),
    Demo { port: u16, mode: PoolMode, load_balance: bool },
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn parse_ctl(mut args: impl Iterator<Item = String>) -> Result<Command> {
    let mut c = ctl::Ctl {
        host: "127.0.0.1".into(),
        port: 6432,
        user: std::env::var("PGUSER").unwrap_or_else(|_| "pooler".into()),
        json: false,
        command: String::new(),
    };
    let mut words = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" if words.is_empty() => {
                print!("{}", ctl::USAGE);
                std::process::exit(0);
            }
            "--host" => c.host = args.next().context("--host needs a host")?,
            "--port" | "-p" => {
                let p = args.next().context("--port needs a number")?;
                c.port = p.parse().with_context(|| format!("--port: {p:?} is not a port number"))?;
            }
            "--user" | "-U" => c.user = args.next().context("--user needs a name")?,
            "--json" => c.json = true,
            _ => words.push(a),
        }
    }
    c.command = ctl::console_command(&words)?;
    Ok(Command::Ctl(c))
}

fn parse_convert(mut args: impl Iterator<Item = String>) -> Result<Command> {
    let mut file = None;
    let mut from = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--from" => {
                from = Some(match args.next().as_deref() {
                    Some("pgbouncer") => Source::Pgbouncer,
                    Some("pgpool") | Some("pgpool-II") => Source::Pgpool,
                    other => bail!("--from: expected pgbouncer or pgpool, got {other:?}"),
                })
            }
            _ if file.is_none() && !a.starts_with('-') => file = Some(PathBuf::from(a)),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let file = file.context("pooler convert needs a file: pooler convert pgbouncer.ini")?;
    Ok(Command::Convert { file, from })
}

fn parse_args() -> Result<(Command, LogFormat)> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("ctl") {
        args.next();
        return Ok((parse_ctl(args)?, LogFormat::Text));
    }
    if args.peek().map(String::as_str) == Some("convert") {
        args.next();
        return Ok((parse_convert(args)?, LogFormat::Text));
    }
    let mut log_format = LogFormat::Text;
    let mut config = None;
    let mut sub = None;
    let mut port = 6432u16;
    let mut mode = PoolMode::Session;
    let mut load_balance = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("pooler {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-c" | "--config" => config = Some(PathBuf::from(args.next().context("--config needs a file")?)),
            "--port" => {
                let p = args.next().context("--port needs a number")?;
                port = p.parse().with_context(|| format!("--port: {p:?} is not a port number"))?;
            }
            "--mode" => {
                mode = match args.next().as_deref() {
                    Some("session") => PoolMode::Session,
                    Some("transaction") => PoolMode::Transaction,
                    Some("statement") => PoolMode::Statement,
                    other => bail!("--mode: expected session, transaction or statement, got {other:?}"),
                }
            }
            "--load-balance" => load_balance = true,
            "--log-format" => {
                log_format = match args.next().as_deref() {
                    Some("text") => LogFormat::Text,
                    Some("json") => LogFormat::Json,
                    other => bail!("--log-format: expected text or json, got {other:?}"),
                }
            }
            "check" | "demo" if sub.is_none() => sub = Some(a),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let cmd = match (sub.as_deref(), config) {
        (Some("demo"), _) => Command::Demo { port, mode, load_balance },
        (Some("check"), Some(c)) => Command::Check(c),
        (None, Some(c)) => Command::Run(c),
        _ => bail!("missing --config FILE\n\n{USAGE}"),
    };
    Ok((cmd, log_format))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to standard error; standard output is for what `demo` prints.
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    match format {
        // One JSON object per line: the fields (actor, node, client...) as keys.
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
        LogFormat::Text => builder.with_ansi(ansi).init(),
    }
}

/// The signals the binary handles, registered before the listener is bound:
/// a SIGTERM or SIGINT sent as soon as the port accepts connections must stop
/// the pooler gracefully, not find the default action (or, when started in
/// the background by a shell, an ignored SIGINT).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
            usr2: signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?,
        })
    }

    /// Resolves on SIGTERM or SIGINT. SIGHUP (which would otherwise kill the
    /// process, and which pgbouncer users send to reload) reloads the
    /// configuration file, as the console's RELOAD does: connected clients
    /// keep their sessions; an invalid file changes nothing. SIGUSR2 (with a
    /// `handover`) starts the binary again and hands it the listening
    /// sockets; once it is ready this resolves, and this process drains.
    async fn shutdown(mut self, pooler: &Pooler, handover: Option<&upgrade::Handover>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return tracing::info!("SIGTERM received"),
                _ = self.int.recv() => return tracing::info!("SIGINT received"),
                _ = self.hup.recv() => reload_files(pooler),
                _ = self.usr2.recv() => {
                    let Some(h) = handover else {
                        tracing::warn!("SIGUSR2: nothing to hand over here (the demo); ignored");
                        continue;
                    };
                    match upgrade::hand_over(h).await {
                        Ok((pid, control)) => {
                            pooler.retire().await;
                            pooler.hand_over_clients(control);
                            return tracing::warn!(pid, "upgrade: the new process serves; this one stops accepting and drains");
                        }
                        Err(e) => tracing::error!(error = format!("{e:#}"), "upgrade failed: this process goes on serving"),
                    }
                }
            }
        }
    }
}

/// SIGHUP: the configuration file read again and applied (with the files
/// it names); an error keeps what was in force. Without a file (the demo),
/// the TLS and hba files are read again.
fn reload_files(pooler: &Pooler) {
    match pooler.reload_file() {
        Ok(report) => return tracing::info!(%report, "SIGHUP: configuration reloaded"),
        Err(pooler_core::ReloadError::NoFile) => {}
        Err(e) => {
            return tracing::error!(error = %e, "SIGHUP: configuration not reloaded; the one in force stays");
        }
    }
    match pooler.reload_tls() {
        Ok(()) => {}
        Err(e) => tracing::error!(error = %e, "SIGHUP: TLS files not reloaded; the ones in force stay"),
    }
    match pooler.reload_access() {
        Ok(true) => tracing::info!("SIGHUP: hba file reloaded"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "SIGHUP: hba file not reloaded; the rules in force stay"),
    }
}

/// `pooler check`: validates what starting validates, short of binding the
/// port (a pooler using it may well be running): the configuration, its listen
/// address, and every file start reads (the password file), built by the same
/// [`Pooler::new`] that `pooler --config` runs.
fn check(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    config.listen_addr()?;
    drop(with_coordination(Pooler::builder(config.clone()), &config)?.build()?);
    println!("{}: OK", path.display());
    Ok(())
}

/// `pooler convert`: the TOML on standard output, a one-line summary (and
/// whether the result loads as it is) on standard error.
fn convert(file: &Path, from: Option<Source>) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let source = match from {
        Some(s) => s,
        None => Source::detect(&text, file).with_context(|| {
            format!(
                "cannot tell whether {} is a pgbouncer.ini or a pgpool.conf: add --from pgbouncer or --from pgpool",
                file.display()
            )
        })?,
    };
    // Relative file names in it are relative to its directory: made absolute,
    // they stay right wherever the TOML is written.
    let path = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let c = pooler_core::convert::convert(source, &text, &path)
        .with_context(|| format!("cannot convert {} as a {source} file", file.display()))?;
    print!("{}", c.toml);
    eprintln!(
        "{}: {} settings have no equivalent, {} map only partly (see the comments in the output)",
        file.display(),
        c.unmapped(),
        c.partial()
    );
    if let Err(e) = Config::from_toml(&c.toml) {
        eprintln!("the output does not load as it is, edit it first: {e}");
    }
    Ok(())
}

/// Gives the builder the store `[coordination]` names (etcd, when the
/// binary is built with its `etcd` feature; without it, building fails with
/// an error that says so).
fn with_coordination(builder: pooler_core::PoolerBuilder, config: &Config) -> Result<pooler_core::PoolerBuilder> {
    #[cfg(feature = "etcd")]
    if config.coordination.backend == pooler_core::config::CoordinationBackend::Etcd {
        let store = pooler_etcd::EtcdStore::new(&config.coordination)?;
        return Ok(builder.coordination_store(std::sync::Arc::new(store)));
    }
    let _ = config;
    Ok(builder)
}

/// Builds the pooler and binds its listeners (TCP and, with
/// `server.unix_socket_dir`, the Unix socket): everything that can fail at
/// start.
async fn prepare(config: Config, file: Option<&Path>, inherited: Option<Listeners>) -> Result<(Pooler, Listeners)> {
    let mut builder = with_coordination(Pooler::builder(config.clone()), &config)?;
    if let Some(path) = file {
        builder = builder.config_file(path);
    }
    let pooler = builder.build().context("cannot start")?;
    let listeners = match inherited {
        Some(l) => l,
        None => Listeners::bind(&config).await.context("cannot listen")?,
    };
    if let Some(addr) = listeners.tcp_addr() {
        tracing::info!(%addr, "listening");
    }
    if let Some(path) = listeners.unix_path() {
        tracing::info!(socket = %path.display(), "listening");
    }
    Ok((pooler, listeners))
}

async fn serve(config: Config, file: Option<&Path>) -> Result<()> {
    let signals = Signals::install()?;
    // Started by a predecessor's SIGUSR2: its sockets, not new ones.
    let (inherited, metrics, control) = match upgrade::inherit()? {
        Some((mut set, control)) => {
            let listeners = Listeners::from_socket_set(&mut set).context("cannot use the inherited sockets")?;
            (Some(listeners), set.take_tcp("metrics")?, Some(control))
        }
        None => (None, None, None),
    };
    let (pooler, listener) = prepare(config, file, inherited).await?;
    let pooler = std::sync::Arc::new(pooler);
    let (mut sockets, handed_over) = listener.socket_set().context("cannot copy the listening sockets")?;
    let endpoint = endpoint::start(&pooler, metrics, &mut sockets).await?;
    let handover = upgrade::Handover { sockets, handed_over };
    let adopting = match control {
        Some(control) => {
            upgrade::ready(&control).context("cannot tell the previous process")?;
            // Its idle clients follow, one by one.
            let pooler = pooler.clone();
            Some(tokio::spawn(async move {
                match pooler.adopt_clients(control).await {
                    Ok(n) => tracing::warn!(
                        clients = n.clients,
                        servers = n.servers,
                        "upgrade: the previous process handed over its clients and idle server connections"
                    ),
                    Err(e) => tracing::error!(error = %e, "upgrade: taking over clients stopped"),
                }
            }))
        }
        None => None,
    };
    pooler.run(listener, signals.shutdown(&pooler, Some(&handover))).await;
    if let Some(a) = adopting {
        a.abort();
    }
    if let Some(e) = endpoint {
        e.abort();
    }
    Ok(())
}

async fn demo(port: u16, mode: PoolMode, load_balance: bool) -> Result<()> {
    let signals = Signals::install()?;
    println!("starting a throwaway PostgreSQL primary and one streaming standby...");
    let cluster = tokio::task::spawn_blocking(|| pooler_testkit::Cluster::builder().standbys(1).start())
        .await
        .context("cluster start task failed")?
        .context("cannot start the demo PostgreSQL cluster")?;
    let nodes: Vec<NodeConfig> = cluster
        .nodes()
        .map(|n| NodeConfig {
            data_dir: Some(n.data_dir().display().to_string()),
            ..NodeConfig::new(n.host(), n.port())
        })
        .collect();
    let mut config = Config::with_nodes(nodes);
    config.auth.method = AuthMethod::Trust;
    config.server.listen = format!("127.0.0.1:{port}");
    config.pool.mode = mode;
    config.routing.load_balance = load_balance;
    config.validate()?;
    // Bind before telling anyone to connect; on failure the cluster is still
    // dropped (stopped and removed) on the way out.
    let (pooler, listener) = prepare(config, None, None).await?;
    println!("primary  on 127.0.0.1:{}", cluster.primary().port());
    for s in cluster.standbys() {
        println!("standby  on 127.0.0.1:{} (streaming from the primary)", s.port());
    }
    println!("data in  {}", cluster.dir().display());
    println!();
    let balance = if load_balance { ", reads balanced over both nodes" } else { "" };
    println!("pooler listening on 127.0.0.1:{port} ({mode} pooling{balance}, auth: trust). Connect with:");
    println!();
    println!("    psql -h 127.0.0.1 -p {port} -U postgres postgres");
    println!();
    println!("Press Ctrl-C to stop; the cluster and its files are removed.");
    pooler.run(listener, signals.shutdown(&pooler, None)).await;
    tokio::task::spawn_blocking(move || drop(cluster)).await.ok();
    println!("demo cluster stopped and removed");
    Ok(())
}

fn main() -> Result<()> {
    let (cmd, log_format) = parse_args()?;
    if let Command::Check(path) = &cmd {
        return check(path);
    }
    if let Command::Convert { file, from } = &cmd {
        return convert(file, *from);
    }
    if let Command::Ctl(c) = &cmd {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return rt.block_on(ctl::run(c));
    }
    init_logging(log_format);
    // The configuration is read before the runtime exists: it sizes it.
    let config = match &cmd {
        Command::Run(path) => Some(Config::load(path)?),
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.as_ref().map(|c| c.server.worker_threads).filter(|&n| n > 0) {
        builder.worker_threads(n);
    }
    let rt = builder.enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async {
        match cmd {
            Command::Run(path) => match config {
                Some(c) => serve(c, Some(&path)).await,
                None => Ok(()),
            },
            Command::Demo { port, mode, load_balance } => demo(port, mode, load_balance).await,
            Command::Check(_) | Command::Ctl(_) | Command::Convert { .. } => Ok(()),
        }
    })
}
