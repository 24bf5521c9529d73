//! Online recovery (`RECOVER NODE n`, pgpool's `pcp_recovery_node`): the
//! node is taken out of service, `[recovery] command` rebuilds it as a
//! standby of the current primary, and once it answers as a standby whose
//! WAL receiver streams it is attached again (it serves reads after its
//! next passing check, and the failback hook runs as for any attach).

use std::time::{Duration, Instant};

use super::{check, hook, Cluster, FailoverContext, Hooks, NodeCommandError, NodeInfo};
use crate::config::RecoveryConfig;
use crate::topology::Status;

/// Rebuilds `node` as [`recover`](self) says. On a failure the node stays
/// detached and the error says which step failed.
pub(crate) async fn recover(
    cluster: &Cluster,
    hooks: &Hooks,
    node: usize,
    recovery: &RecoveryConfig,
) -> Result<(), NodeCommandError> {
    let snapshot = cluster.topology.current();
    let primary = snapshot.primary;
    if snapshot.nodes.get(node).is_none_or(|n| n.status == Status::Removed) {
        return Err(NodeCommandError::UnknownNode(node));
    }
    if node == primary {
        return Err(NodeCommandError::IsPrimary(node));
    }
    if recovery.command.is_empty() {
        return Err(NodeCommandError::NoRecoveryCommand);
    }
    if !snapshot.primary_available() {
        return Err(NodeCommandError::NoPrimary);
    }
    cluster.fence("recovery_command").await?;
    let Some(_busy) = Busy::take(cluster, node) else {
        return Err(NodeCommandError::Busy(node));
    };
    let config = cluster.config.load_full();
    let info = |i: usize| NodeInfo::of(i, &config.nodes[i]);
    // Nothing is read from it while it is rebuilt.
    match cluster.command(super::detach_event(node)).await {
        Ok(()) | Err(NodeCommandError::IsPrimary(_)) => {}
        Err(e) => return Err(e),
    }
    let ctx = FailoverContext { subject: info(node), new_main: info(primary), old_primary: info(primary) };
    let started = Instant::now();
    tracing::warn!(node, primary, "online recovery: running the recovery command");
    let command = hook::expand(&recovery.command, &ctx);
    if let hook::HookOutcome::Failed { reason } =
        hook::run("recovery_command", &command, recovery.command_timeout).await
    {
        tracing::error!(node, %reason, "online recovery failed: the node stays detached");
        return Err(NodeCommandError::HookFailed(reason));
    }
    // Checked, not assumed: it must answer as a standby that streams.
    let deadline = Instant::now() + recovery.stream_timeout;
    loop {
        let seen = check::bounded(hooks.check.as_ref(), node, config.health.timeout).await;
        if matches!(&seen, Ok(o) if o.in_recovery && o.wal_receiver.as_deref() == Some("streaming")) {
            break;
        }
        if Instant::now() >= deadline {
            tracing::error!(node, waited = ?recovery.stream_timeout, last = ?seen, "online recovery: the node never streamed; it stays detached");
            return Err(NodeCommandError::NeverStreamed(node));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.command(super::attach_event(node)).await?;
    tracing::warn!(node, took = ?started.elapsed(), "online recovery done: the node streams and is attached again");
    Ok(())
}

/// A recovery of one node in progress (a second one is refused).
struct Busy<'a> {
    cluster: &'a Cluster,
    node: usize,
}

impl<'a> Busy<'a> {
    fn take(cluster: &'a Cluster, node: usize) -> Option<Busy<'a>> {
        let mut set = cluster.recovering.lock().ok()?;
        set.insert(node).then_some(Busy { cluster, node })
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.cluster.recovering.lock() {
            set.remove(&self.node);
        }
    }
}
