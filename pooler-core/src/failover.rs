//! Failover commands with pgpool's placeholders, run by the health task when
//! the primary is found down (`failover.command`) and for each remaining
//! standby once a new primary is known (`failover.follow_primary_command`).
//!
//! Placeholders: `%d` node id, `%h` host, `%p` port, `%D` data directory of
//! the failed node (for the follow command: of the standby to re-point); `%m`,
//! `%H`, `%r`, `%R` the same of the new main node; `%M` old main node id; `%P`,
//! `%N`, `%S` old primary's id, host and port; `%%` a percent sign. An unknown
//! `%x` is kept as it is.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::NodeConfig;

/// The nodes a command is about.
pub(crate) struct Roles<'a> {
    /// The failed node, or the standby to re-point.
    pub(crate) subject: (usize, &'a NodeConfig),
    /// The new main (primary) node.
    pub(crate) new_main: (usize, &'a NodeConfig),
    /// The old primary.
    pub(crate) old_primary: (usize, &'a NodeConfig),
}

/// Fills in the placeholders of `template`.
pub(crate) fn expand(template: &str, r: &Roles<'_>) -> String {
    let dir = |n: &NodeConfig| n.data_dir.clone().unwrap_or_default();
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&r.subject.0.to_string()),
            Some('h') => out.push_str(&r.subject.1.host),
            Some('p') => out.push_str(&r.subject.1.port.to_string()),
            Some('D') => out.push_str(&dir(r.subject.1)),
            Some('m') => out.push_str(&r.new_main.0.to_string()),
            Some('H') => out.push_str(&r.new_main.1.host),
            Some('r') => out.push_str(&r.new_main.1.port.to_string()),
            Some('R') => out.push_str(&dir(r.new_main.1)),
            Some('M') | Some('P') => out.push_str(&r.old_primary.0.to_string()),
            Some('N') => out.push_str(&r.old_primary.1.host),
            Some('S') => out.push_str(&r.old_primary.1.port.to_string()),
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

    fn node(host: &str, port: u16, dir: &str) -> NodeConfig {
        NodeConfig { host: host.into(), port, weight: 1.0, data_dir: Some(dir.into()) }
    }

    #[test]
    fn placeholders_are_pgpools() {
        let (a, b, c) = (node("db0", 5432, "/d0"), node("db1", 5433, "/d1"), node("db2", 5434, "/d2"));
        let r = Roles { subject: (2, &c), new_main: (1, &b), old_primary: (0, &a) };
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
