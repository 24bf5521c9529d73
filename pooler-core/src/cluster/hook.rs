//! Failover hooks: what runs when the primary fails (promote a standby),
//! once a new primary is known (re-point each other standby), and when a node
//! comes back into service (failback). [`FailoverHook`] is the trait an
//! embedding service implements to drive its own tooling; [`CommandHook`] is
//! the built-in one, running pgpool-style shell commands.
//!
//! Placeholders of the commands: `%d` node id, `%h` host, `%p` port, `%D` data
//! directory of the failed node (for the follow command: of the standby to
//! re-point; for failback: of the node coming back); `%m`, `%H`, `%r`, `%R`
//! the same of the new main node; `%M` old main node id; `%P`, `%N`, `%S` old
//! primary's id, host and port; `%%` a percent sign. An unknown `%x` is kept
//! as it is.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::{FailoverConfig, NodeConfig};

/// What one hook call came to. The hook reports; the controller decides
/// what follows (see each [`FailoverHook`] method).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// The hook did what it was asked.
    Done,
    /// There was nothing to do (no command configured, or a default
    /// method): the controller goes on as after [`HookOutcome::Done`].
    Skipped,
    /// The hook failed; `reason` says how.
    Failed {
        /// How it failed.
        reason: HookFailure,
    },
}

impl HookOutcome {
    /// [`HookOutcome::Failed`] with an embedding service's own `message`
    /// ([`HookFailure::Other`]).
    pub fn failed(message: impl Into<String>) -> HookOutcome {
        HookOutcome::Failed { reason: HookFailure::Other { message: message.into() } }
    }

    /// Done or skipped: anything but a failure.
    pub fn succeeded(&self) -> bool {
        !matches!(self, HookOutcome::Failed { .. })
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> Option<&HookFailure> {
        match self {
            HookOutcome::Failed { reason } => Some(reason),
            HookOutcome::Done | HookOutcome::Skipped => None,
        }
    }
}

/// How a hook failed: for [`CommandHook`], how its command ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookFailure {
    /// The command exited with a status other than 0.
    #[error("the command exited with status {code}")]
    Exited {
        /// Its exit status.
        code: i32,
    },
    /// The command was killed by a signal (not by the pooler).
    #[error("the command was killed by signal {signal}")]
    Killed {
        /// The signal's number.
        signal: i32,
    },
    /// The command ran past `failover.command_timeout` and was killed.
    #[error("the command timed out after {after:?} and was killed")]
    TimedOut {
        /// The timeout in force.
        after: Duration,
    },
    /// The command could not be started (`sh` missing, no process left).
    #[error("the command could not be started: {reason}")]
    NotStarted {
        /// The operating system's error.
        reason: String,
    },
    /// Any other failure, in the hook's own words (for hooks written by an
    /// embedding service).
    #[error("{message}")]
    Other {
        /// The hook's message.
        message: String,
    },
}

/// The future a hook returns: what the call came to.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = HookOutcome> + Send + 'a>>;

/// A node as hooks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Index in `[[nodes]]`.
    pub id: usize,
    /// Configured host.
    pub host: String,
    /// Configured port.
    pub port: u16,
    /// Configured data directory, if any.
    pub data_dir: Option<String>,
}

impl NodeInfo {
    pub(crate) fn of(id: usize, n: &NodeConfig) -> NodeInfo {
        NodeInfo { id, host: n.host.clone(), port: n.port, data_dir: n.data_dir.clone() }
    }
}

/// The nodes a hook call is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverContext {
    /// Failover: the failed primary. Follow-primary: the standby to re-point.
    /// Failback: the node coming back.
    pub subject: NodeInfo,
    /// The new main (primary) node; for failback, the current primary.
    pub new_main: NodeInfo,
    /// The primary before the change; for failback, the current primary.
    pub old_primary: NodeInfo,
}

/// What the controller runs at failover, after a primary change and at
/// failback: the built-in [`CommandHook`], or an embedding service's own
/// (`Pooler::with_failover_hook`). Each call is awaited before the
/// controller goes on (as pgpool serializes failover), so a hook should
/// bound its own run time. A hook acts on the servers and reports; the
/// controller changes the pooler's state.
pub trait FailoverHook: Send + Sync + 'static {
    /// Asked once when the controller starts: true when
    /// [`FailoverHook::failover`] can promote a node. False: the primary
    /// failing only marks it down, and the pooler waits to discover a
    /// primary promoted by another tool; `Pooler::promote_node` is refused.
    /// There is no default.
    fn promotes(&self) -> bool;
    /// Called when the primary `ctx.subject` failed (every standby in
    /// service was asked what it received, and `ctx.new_main` received the
    /// most), or an operator asked for a switchover to `ctx.new_main`
    /// (`Pooler::promote_node`): promote `ctx.new_main`. Never called when
    /// [`FailoverHook::promotes`] is false. There is no default.
    ///
    /// [`HookOutcome::Done`] or [`HookOutcome::Skipped`]: the pooler moves
    /// writes only once `ctx.new_main` answers a check as a primary.
    /// [`HookOutcome::Failed`]: after a failure, the old primary is marked
    /// down instead of quarantined (nothing was promoted, so it may take
    /// writes again if it comes back as the primary); after a switchover,
    /// `promote_node` returns `NodeCommandError::HookFailed` with the reason
    /// and nothing changes.
    fn failover<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a>;
    /// Called for every other node once `ctx.new_main` became the primary
    /// (after a failover, a switchover or a promotion found by a check):
    /// make `ctx.subject` follow it. The outcome is logged (a failure as a
    /// warning) and changes nothing: the node's checks say whether it
    /// follows. The default does nothing and returns
    /// [`HookOutcome::Skipped`].
    fn follow_primary<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        let _ = ctx;
        Box::pin(async { HookOutcome::Skipped })
    }
    /// Called when `ctx.subject` is back in service: a check passed again
    /// with `failover.auto_failback` on, or an operator attached it. The
    /// outcome is logged (a failure as a warning) and changes nothing. The
    /// default does nothing and returns [`HookOutcome::Skipped`].
    fn failback<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        let _ = ctx;
        Box::pin(async { HookOutcome::Skipped })
    }
}

/// The built-in hook: `failover.command`, `failover.follow_primary_command`
/// and `failover.failback_command`, each run with `sh -c` after placeholder
/// expansion, bounded by `failover.command_timeout`, output logged. Exit
/// status 0 is [`HookOutcome::Done`]; anything else is
/// [`HookOutcome::Failed`] with how the command ended. An empty command does
/// nothing ([`HookOutcome::Skipped`]).
#[derive(Clone, Debug)]
pub struct CommandHook {
    config: FailoverConfig,
}

impl CommandHook {
    /// The hook for these settings.
    pub fn new(config: &FailoverConfig) -> CommandHook {
        CommandHook { config: config.clone() }
    }

    fn run_template<'a>(&'a self, what: &'static str, template: &'a str, ctx: &'a FailoverContext) -> HookFuture<'a> {
        Box::pin(async move {
            if template.is_empty() {
                return HookOutcome::Skipped;
            }
            run(what, &expand(template, ctx), self.config.command_timeout).await
        })
    }
}

impl FailoverHook for CommandHook {
    fn promotes(&self) -> bool {
        !self.config.command.is_empty()
    }

    fn failover<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        self.run_template("failover_command", &self.config.command, ctx)
    }

    fn follow_primary<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        self.run_template("follow_primary_command", &self.config.follow_primary_command, ctx)
    }

    fn failback<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        self.run_template("failback_command", &self.config.failback_command, ctx)
    }
}

/// Fills in the placeholders of `template`.
pub(crate) fn expand(template: &str, r: &FailoverContext) -> String {
    let dir = |n: &NodeInfo| n.data_dir.clone().unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&r.subject.id.to_string()),
            Some('h') => out.push_str(&r.subject.host),
            Some('p') => out.push_str(&r.subject.port.to_string()),
            Some('D') => out.push_str(&dir(&r.subject)),
            Some('m') => out.push_str(&r.new_main.id.to_string()),
            Some('H') => out.push_str(&r.new_main.host),
            Some('r') => out.push_str(&r.new_main.port.to_string()),
            Some('R') => out.push_str(&dir(&r.new_main)),
            Some('M') | Some('P') => out.push_str(&r.old_primary.id.to_string()),
            Some('N') => out.push_str(&r.old_primary.host),
            Some('S') => out.push_str(&r.old_primary.port.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Runs `command` with `sh -c`, up to `timeout`, logging its output. Done
/// when it exited with status 0.
pub(crate) async fn run(what: &str, command: &str, timeout: Duration) -> HookOutcome {
    tracing::warn!(what, command, "running a command");
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(what, error = %e, "cannot start the command");
            return HookOutcome::Failed { reason: HookFailure::NotStarted { reason: e.to_string() } };
        }
    };
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let work = async {
        let mut o = String::new();
        let mut e = String::new();
        if let Some(s) = out.as_mut() {
            let _ = s.read_to_string(&mut o).await;
        }
        if let Some(s) = err.as_mut() {
            let _ = s.read_to_string(&mut e).await;
        }
        (child.wait().await, o, e)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((status, o, e)) => {
            for line in o.lines() {
                tracing::info!(what, "{line}");
            }
            for line in e.lines() {
                tracing::warn!(what, "{line}");
            }
            match status {
                Ok(s) if s.success() => {
                    tracing::warn!(what, "the command succeeded");
                    HookOutcome::Done
                }
                Ok(s) => {
                    tracing::error!(what, status = %s, "failover command failed");
                    HookOutcome::Failed { reason: exit_failure(s) }
                }
                Err(e) => {
                    tracing::error!(what, error = %e, "failover command failed");
                    HookOutcome::failed(format!("waiting for the command failed: {e}"))
                }
            }
        }
        Err(_) => {
            tracing::error!(what, ?timeout, "failover command timed out and was killed");
            HookOutcome::Failed { reason: HookFailure::TimedOut { after: timeout } }
        }
    }
}

/// How a command that did not exit with 0 ended.
fn exit_failure(status: std::process::ExitStatus) -> HookFailure {
    if let Some(code) = status.code() {
        return HookFailure::Exited { code };
    }
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return HookFailure::Killed { signal };
    }
    HookFailure::Other { message: status.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: usize, host: &str, port: u16, dir: &str) -> NodeInfo {
        NodeInfo { id, host: host.into(), port, data_dir: Some(dir.into()) }
    }

    #[test]
    fn placeholders_are_pgpools() {
        let (a, b, c) = (node(0, "db0", 5432, "/d0"), node(1, "db1", 5433, "/d1"), node(2, "db2", 5434, "/d2"));
        let r = FailoverContext { subject: c, new_main: b, old_primary: a };
        assert_eq!(
            expand("f %d %h %p %D new %m %H %r %R old %M %P %N %S 100%% %x %", &r),
            "f 2 db2 5434 /d2 new 1 db1 5433 /d1 old 0 0 db0 5432 100% %x %"
        );
    }

    #[tokio::test]
    async fn commands_report_success_failure_and_timeouts() {
        let failed = |reason| HookOutcome::Failed { reason };
        assert_eq!(run("test", "echo promoted; true", Duration::from_secs(5)).await, HookOutcome::Done);
        assert_eq!(
            run("test", "echo nope >&2; exit 3", Duration::from_secs(5)).await,
            failed(HookFailure::Exited { code: 3 })
        );
        assert_eq!(
            run("test", "sleep 5", Duration::from_millis(100)).await,
            failed(HookFailure::TimedOut { after: Duration::from_millis(100) })
        );
        assert_eq!(run("test", "kill -9 $$", Duration::from_secs(5)).await, failed(HookFailure::Killed { signal: 9 }));
    }

    #[tokio::test]
    async fn an_empty_command_is_skipped_and_default_methods_skip() {
        struct OnlyPromotes;
        impl FailoverHook for OnlyPromotes {
            fn promotes(&self) -> bool {
                true
            }
            fn failover<'a>(&'a self, _ctx: &'a FailoverContext) -> HookFuture<'a> {
                Box::pin(async { HookOutcome::failed("no tool here") })
            }
        }
        let n = node(0, "db0", 5432, "/d0");
        let ctx = FailoverContext { subject: n.clone(), new_main: n.clone(), old_primary: n };
        let hook = CommandHook::new(&FailoverConfig::default());
        assert!(!hook.promotes());
        assert_eq!(hook.follow_primary(&ctx).await, HookOutcome::Skipped);
        assert_eq!(OnlyPromotes.failback(&ctx).await, HookOutcome::Skipped);
        let out = OnlyPromotes.failover(&ctx).await;
        assert!(!out.succeeded());
        assert_eq!(out.failure().map(|r| r.to_string()).as_deref(), Some("no tool here"));
    }
}
