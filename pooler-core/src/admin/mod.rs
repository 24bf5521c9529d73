//! The admin console: a virtual database named `pooler` (also answering to
//! `pgbouncer`, so existing scripts and tools connect unchanged) on every
//! listener. `admin.admin_users` may run every command, `admin.stats_users`
//! only `SHOW`; anyone else is refused at login.
//!
//! `command` parses the language, `protocol` speaks the wire protocol
//! without I/O, `views` builds what `SHOW` shows, `actions` does what the
//! other commands do; this file holds the login decision and the session's
//! I/O loop.

mod actions;
mod command;
mod gauges;
mod group;
mod protocol;
mod table;
mod views;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::watch;

use crate::clients::{ClientState, Registration};
use crate::config::ConsoleRole;
use crate::control::ShutdownMode;
use crate::error::Error;
use crate::protocol::write::{self as w, Severity};
use crate::protocol::{split_frame, TransactionStatus};
use crate::runtime::{Phase, Shared};
use crate::transport::Stream;

/// The console's database names.
const NAMES: [&str; 2] = ["pooler", "pgbouncer"];

/// Largest message the console reads.
const MAX_MESSAGE: usize = 1 << 20;

/// True when `database` names the admin console.
pub(crate) fn is_console(database: &str) -> bool {
    NAMES.contains(&database)
}

/// What happens to an authenticated client, by the database it asked for.
pub(crate) enum Login {
    /// The admin console, with this role.
    Console(ConsoleRole),
    /// Refused (FATAL): not a console user, or a database an operator disabled.
    Refuse(Error),
    /// A pooled database: the session goes on.
    Pool,
}

pub(crate) use gauges::record as record_gauges;

/// Decides what an authenticated `user` asking for `database` gets.
pub(crate) fn on_login(shared: &Shared, user: &str, database: &str) -> Login {
    if is_console(database) {
        return match shared.config().admin.role_of(user) {
            Some(role) => Login::Console(role),
            None => {
                metrics::counter!(crate::metrics::LOGINS_REFUSED, "reason" => "console").increment(1);
                tracing::warn!(%user, database, "admin console login refused: user is in neither admin.admin_users nor admin.stats_users");
                Login::Refuse(Error::Refused {
                    code: "28000",
                    message: format!("role \"{user}\" is not permitted to log in to the admin console"),
                })
            }
        };
    }
    if shared.control.is_disabled(database) {
        metrics::counter!(crate::metrics::LOGINS_REFUSED, "reason" => "disabled").increment(1);
        return Login::Refuse(Error::Refused {
            code: "55000",
            message: format!(
                "database \"{database}\" is not currently accepting connections (disabled by an operator)"
            ),
        });
    }
    Login::Pool
}

/// Serves an authenticated console user until they leave (AuthenticationOk
/// is already queued in `out`).
pub(crate) async fn serve(
    (stream, buf, out): (&mut Stream, &mut BytesMut, &mut BytesMut),
    peer: crate::transport::Peer,
    shared: &Arc<Shared>,
    (user, database, role): (&str, &str, ConsoleRole),
) {
    for (k, v) in [
        ("server_version", concat!("16.0 (pooler ", env!("CARGO_PKG_VERSION"), ")")),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", ""),
    ] {
        w::parameter_status(out, k, v);
    }
    // A key of the pooler's that names no server: a cancel does nothing.
    let cancel = shared.cancels.register();
    w::backend_key_data(out, cancel.key().pid, cancel.key().secret);
    w::ready_for_query(out, TransactionStatus::Idle);
    let who = Registration {
        user,
        database,
        application_name: "",
        peer: peer.tcp_addr(),
        tls: stream.tls_info().map(|t| t.summary()),
        state: ClientState::Console,
    };
    let registered = shared.clients.register(who, &*stream);
    tracing::info!(actor = %user, client = %peer, ?role, "admin console session started");
    let mut console = protocol::Console::new(user, role);
    let exec = actions::Pooler { shared, actor: user, peer: peer.to_string() };
    let mut phase = shared.phase.clone();
    let end = loop {
        if let Err(e) = stream.flush_all(out).await {
            break Some(Error::ClientIo(e));
        }
        if let Some(mode) = console.shutdown.take() {
            shared.control.request_shutdown(mode);
        }
        let frame = match split_frame(buf, MAX_MESSAGE) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let read = tokio::select! {
                    r = stream.read_some(buf) => r,
                    // A kill ends the console; a phase change is the arm below's.
                    _ = registered.attention() => {
                        if registered.killed() {
                            break None;
                        }
                        continue;
                    }
                    _ = async { drop(phase.wait_for(|p| *p != Phase::Running).await) } => {
                        w::error_response(out, Severity::Fatal, "57P01", "terminating connection due to administrator command");
                        let _ = stream.flush_all(out).await;
                        break None;
                    }
                };
                match read {
                    Ok(0) => break None,
                    Ok(_) => continue,
                    Err(e) => break Some(Error::ClientIo(e)),
                }
            }
            Err(e) => {
                w::error_response(out, Severity::Fatal, e.sqlstate(), &e.to_string());
                let _ = stream.flush_all(out).await;
                break Some(Error::ClientProtocol(e));
            }
        };
        match console.frame(&frame, out, &exec).await {
            Ok(protocol::Flow::Terminate) => break None,
            Ok(_) => {}
            Err(fatal) => {
                w::error_response(out, Severity::Fatal, fatal.code, &fatal.message);
                let _ = stream.flush_all(out).await;
                break None;
            }
        }
    };
    if let Some(e) = end.filter(|e| !matches!(e, Error::ClientIo(_))) {
        tracing::info!(actor = %user, client = %peer, error = %e, "admin console session failed");
    }
    tracing::info!(actor = %user, client = %peer, "admin console session ended");
}

/// The accept loop stopped because an operator ran `SHUTDOWN` (`mode`):
/// moves the pooler's phase as the mode says. The caller then waits for
/// the remaining clients as after a signal (`server.shutdown_timeout`, then
/// force). `WAIT_FOR_CLIENTS` first waits, without a timeout, until every
/// client has left, unless the embedder's own `shutdown` future resolves
/// (a SIGTERM then drains as usual).
pub(crate) async fn shut_down(
    (phase, clients): (&watch::Sender<Phase>, &crate::clients::Clients),
    slots: &crate::clients::ClientSlots,
    mode: Option<ShutdownMode>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    match mode {
        Some(ShutdownMode::Immediate) => {
            tracing::warn!("shutting down now (admin SHUTDOWN): closing every client");
            clients.announce(phase, Phase::Force);
        }
        Some(ShutdownMode::WaitForClients) => {
            tracing::warn!(
                "shutting down (admin SHUTDOWN WAIT_FOR_CLIENTS): no new clients; waiting for every client to leave"
            );
            tokio::select! {
                _ = slots.all_gone() => {}
                _ = shutdown => tracing::info!("shutdown signal during SHUTDOWN WAIT_FOR_CLIENTS: draining now"),
            }
            clients.announce(phase, Phase::Draining);
        }
        Some(ShutdownMode::WaitForServers) | None => {
            tracing::warn!(
                "shutting down (admin SHUTDOWN WAIT_FOR_SERVERS): no new clients; waiting for transactions to finish"
            );
            clients.announce(phase, Phase::Draining);
        }
    }
}
