//! The virtual IP commands (`coordination.if_up_command`, `arping_command`,
//! `if_down_command`), run when this pooler gains or loses the leadership of
//! its group, as pgpool's watchdog does with its delegate IP.

use tokio::sync::watch;

use super::hook::{self, HookOutcome};
use crate::config::CoordinationConfig;

/// Follows this pooler's leadership until `leading` closes.
pub(super) async fn run(mut leading: watch::Receiver<bool>, config: CoordinationConfig) {
    let mut up = false;
    loop {
        let now = *leading.borrow_and_update();
        if now != up {
            up = now;
            if up {
                bring_up(&config).await;
            } else {
                bring_down(&config).await;
            }
        }
        if leading.changed().await.is_err() {
            if up {
                bring_down(&config).await;
            }
            return;
        }
    }
}

async fn bring_up(config: &CoordinationConfig) {
    if config.if_up_command.is_empty() {
        return;
    }
    if let HookOutcome::Failed { reason } =
        hook::run("if_up_command", &config.if_up_command, config.command_timeout).await
    {
        tracing::error!(%reason, "if_up_command failed: clients of the virtual address may not reach this leader");
        return;
    }
    if !config.arping_command.is_empty() {
        let _ = hook::run("arping_command", &config.arping_command, config.command_timeout).await;
    }
}

/// Run when the leadership is lost, and at shutdown.
pub(crate) async fn bring_down(config: &CoordinationConfig) {
    if !config.if_down_command.is_empty() {
        let _ = hook::run("if_down_command", &config.if_down_command, config.command_timeout).await;
    }
}
