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

/// The future a hook returns: true when it succeeded.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

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
/// failback. Each call is awaited before the controller goes on (as pgpool
/// serializes failover), so a hook should bound its own run time.
pub trait FailoverHook: Send + Sync + 'static {
    /// True when [`FailoverHook::failover`] can promote a node; without it the
    /// pooler only discovers a primary promoted by another tool.
    fn promotes(&self) -> bool;
    /// The primary `ctx.subject` failed (or an operator asked for a
    /// switchover): promote `ctx.new_main`. The pooler moves writes only once
    /// that node answers as a primary.
    fn failover<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a>;
    /// `ctx.new_main` is the new primary: make `ctx.subject` follow it.
    fn follow_primary<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        let _ = ctx;
        Box::pin(async { true })
    }
    /// `ctx.subject` is back in service.
    fn failback<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        let _ = ctx;
        Box::pin(async { true })
    }
}

/// The built-in hook: `failover.command`, `failover.follow_primary_command`
/// and `failover.failback_command`, each run with `sh -c` after placeholder
/// expansion, bounded by `failover.command_timeout`, output logged. An empty
/// command does nothing (and succeeds).
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
                return true;
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

/// Runs `command` with `sh -c`, up to `timeout`, logging its output. True
/// when it exited with status 0.
pub(crate) async fn run(what: &str, command: &str, timeout: Duration) -> bool {
    tracing::warn!(what, command, "running failover command");
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
            return false;
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
                    tracing::warn!(what, "failover command succeeded");
                    true
                }
                Ok(s) => {
                    tracing::error!(what, status = %s, "failover command failed");
                    false
                }
                Err(e) => {
                    tracing::error!(what, error = %e, "failover command failed");
                    false
                }
            }
        }
        Err(_) => {
            tracing::error!(what, ?timeout, "failover command timed out and was killed");
            false
        }
    }
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
        assert!(run("test", "echo promoted; true", Duration::from_secs(5)).await);
        assert!(!run("test", "echo nope >&2; exit 3", Duration::from_secs(5)).await);
        assert!(!run("test", "sleep 5", Duration::from_millis(100)).await);
    }
}
