//! What console commands do to the pooler: the [`Executor`] over the
//! shared runtime. Every command that changes state is logged with who ran
//! it (the role check is the console protocol's, before this is reached).

use super::command::Command;
use super::protocol::{Answer, CommandError, Executor};
use crate::cluster::NodeCommandError;
use crate::runtime::Shared;

/// Runs commands for one console user.
pub(crate) struct Pooler<'a> {
    pub(crate) shared: &'a Shared,
    /// Who runs them (the console user), for the log.
    pub(crate) actor: &'a str,
    /// From where.
    pub(crate) peer: String,
}

/// Issue 11 (configuration reload, pause and resume) gives these their
/// semantics; until then they refuse rather than pretend.
fn not_yet(what: &str) -> CommandError {
    CommandError::new(
        "0A000",
        format!("{what} is not available yet in this version of the pooler; nothing was changed"),
    )
}

fn node_error(e: NodeCommandError) -> CommandError {
    let code = match e {
        NodeCommandError::UnknownNode(_) => "22023",
        NodeCommandError::IsPrimary(_) | NodeCommandError::AlreadyPrimary(_) => "55000",
        NodeCommandError::NotRunning => "57P03",
        NodeCommandError::NoHook | NodeCommandError::NoRecoveryCommand => "55000",
        NodeCommandError::NoPrimary => "57P03",
        NodeCommandError::Busy(_) => "55006",
        // Not this pooler's to do: another one leads (object not in the
        // prerequisite state).
        NodeCommandError::NotLeader(_) => "55000",
        _ => "XX000",
    };
    CommandError::new(code, e.to_string())
}

impl Executor for Pooler<'_> {
    async fn run(&self, command: &Command) -> Result<Answer, CommandError> {
        let (shared, actor, peer) = (self.shared, self.actor, self.peer.as_str());
        match command {
            Command::Show(what) => Ok(Answer::Rows(super::views::show(shared, *what))),
            Command::Pause(db) => Box::pin(pause(shared, db.as_deref(), actor, peer)).await,
            Command::Resume(db) => {
                if let Some(d) = db {
                    refuse_console(d)?;
                }
                shared.control.pause.resume(db.as_deref()).map_err(|e| CommandError::new("55000", e.to_string()))?;
                tracing::warn!(actor, client = %peer, database = ?db, "admin: RESUME");
                Ok(Answer::Done)
            }
            Command::Suspend => Err(not_yet("SUSPEND")),
            Command::WaitClose(_) => Err(not_yet("WAIT_CLOSE")),
            Command::Reload => {
                let Some(path) = shared.config_file.as_deref() else {
                    return Err(CommandError::new("55000", crate::reload::ReloadError::NoFile.to_string()));
                };
                match crate::reload::from_file(shared, path) {
                    Ok(report) => {
                        tracing::warn!(actor, client = %peer, file = %path.display(), %report, "admin: RELOAD");
                        Ok(Answer::Notice(report.to_string()))
                    }
                    Err(e) => {
                        tracing::error!(actor, client = %peer, file = %path.display(), error = %e, "admin: RELOAD failed; the configuration in force stays");
                        Err(CommandError::new("F0000", format!("{e}; the configuration in force stays")))
                    }
                }
            }
            Command::RecoverNode(n) => {
                let hooks = shared.control.hooks().ok_or_else(|| node_error(NodeCommandError::NotRunning))?;
                tracing::warn!(actor, client = %peer, node = n, "admin: RECOVER NODE");
                let recovery = shared.config().recovery.clone();
                crate::cluster::recover(&shared.cluster, &hooks, *n, &recovery).await.map_err(node_error)?;
                Ok(Answer::Done)
            }
            Command::Set { key, .. } => Err(CommandError::new(
                "55P02",
                format!("parameter \"{key}\" cannot be changed while the pooler runs (no setting can yet)"),
            )),
            Command::KillClient(id) => {
                if shared.clients.kill(*id) {
                    tracing::warn!(actor, client = %peer, id, "admin: KILL_CLIENT");
                    Ok(Answer::Done)
                } else {
                    Err(CommandError::new("42704", format!("client {id} does not exist (SHOW CLIENTS lists them)")))
                }
            }
            Command::Kill(db) => {
                refuse_console(db)?;
                let clients = shared.clients.kill_database(db);
                let servers: usize =
                    shared.pools.all().iter().filter(|p| p.key().database == *db).map(|p| p.reconnect()).sum();
                tracing::warn!(actor, client = %peer, database = %db, clients, servers, "admin: KILL");
                Ok(Answer::Done)
            }
            Command::Reconnect(db) => {
                let pools = shared.pools.all();
                let mut closed = 0;
                for p in pools.iter().filter(|p| db.as_ref().is_none_or(|d| p.key().database == *d)) {
                    closed += p.reconnect();
                }
                tracing::info!(actor, client = %peer, database = ?db, idle_closed = closed, "admin: RECONNECT");
                Ok(Answer::Done)
            }
            Command::Disable(db) => {
                refuse_console(db)?;
                let changed = shared.control.set_disabled(db, true);
                tracing::warn!(actor, client = %peer, database = %db, changed, "admin: DISABLE (new clients refused)");
                Ok(Answer::Done)
            }
            Command::Enable(db) => {
                let changed = shared.control.set_disabled(db, false);
                tracing::warn!(actor, client = %peer, database = %db, changed, "admin: ENABLE");
                Ok(Answer::Done)
            }
            Command::Shutdown(mode) => {
                // The console protocol requests it once the answer is out.
                tracing::warn!(actor, client = %peer, ?mode, "admin: SHUTDOWN");
                Ok(Answer::Done)
            }
            Command::AttachNode(n) => {
                tracing::warn!(actor, client = %peer, node = n, "admin: ATTACH NODE");
                shared.cluster.command(crate::cluster::attach_event(*n)).await.map_err(node_error)?;
                Ok(Answer::Done)
            }
            Command::DetachNode(n) => {
                tracing::warn!(actor, client = %peer, node = n, "admin: DETACH NODE");
                shared.cluster.command(crate::cluster::detach_event(*n)).await.map_err(node_error)?;
                Ok(Answer::Done)
            }
            Command::PromoteNode { node, switchover } => {
                let hooks = shared.control.hooks().ok_or_else(|| node_error(NodeCommandError::NotRunning))?;
                tracing::warn!(actor, client = %peer, node, switchover, "admin: PROMOTE NODE");
                crate::cluster::promote(&shared.cluster, &hooks, *node).await.map_err(node_error)?;
                Ok(Answer::Done)
            }
        }
    }
}

/// `PAUSE [db]`: no server connection is lent for `db` (every database)
/// from now on; returns once every connection lent out has come back (the
/// transactions running finish; in session mode, the sessions), after
/// closing the idle ones, so that whatever runs after `RESUME` opens fresh
/// connections, to the nodes configured then. A `RESUME` while it waits
/// ends the wait with an error.
async fn pause(shared: &Shared, db: Option<&str>, actor: &str, peer: &str) -> Result<Answer, CommandError> {
    if let Some(d) = db {
        refuse_console(d)?;
    }
    let gate = &shared.control.pause;
    let mut changes = gate.subscribe();
    changes.borrow_and_update();
    gate.pause(db);
    let started = std::time::Instant::now();
    tracing::warn!(actor, client = %peer, database = ?db, "admin: PAUSE; waiting for lent server connections to come back");
    let mut report = std::time::Duration::from_secs(5);
    loop {
        let lent = shared.pools.lent_for(db);
        if lent == 0 {
            break;
        }
        let still = db.map_or_else(|| gate.all_paused(), |d| gate.holds(d));
        if !still {
            return Err(CommandError::new("57014", "PAUSE canceled: RESUME was run while it waited"));
        }
        if started.elapsed() >= report {
            tracing::warn!(database = ?db, lent, waited = ?started.elapsed(), "PAUSE still waiting for server connections in use");
            report += std::time::Duration::from_secs(5);
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), changes.changed()).await;
    }
    let mut closed = 0;
    for p in shared.pools.all().iter().filter(|p| db.is_none_or(|d| p.key().database == d)) {
        closed += p.idle_count();
        p.close_idle();
    }
    tracing::warn!(actor, database = ?db, waited_ms = started.elapsed().as_millis() as u64, idle_closed = closed, "admin: PAUSE done; paused");
    Ok(Answer::Done)
}

/// The console itself cannot be killed or disabled from itself.
fn refuse_console(db: &str) -> Result<(), CommandError> {
    if super::is_console(db) {
        return Err(CommandError::new("42809", format!("\"{db}\" is the admin console, not a pooled database")));
    }
    Ok(())
}
