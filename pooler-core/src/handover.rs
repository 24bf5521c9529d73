//! Idle server connections handed to the successor at an upgrade
//! (`crate::upgrade` carries them), so that it does not start cold: the old process sends each idle, plain (not TLS)
//! connection of its pools with its backend key; the successor resets it
//! and lends it from the pool of the node with the same address.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{LoginInfo, ServerConn};
use crate::pool::PoolKey;
use crate::protocol::messages::BackendKeyData;
use crate::protocol::TransactionStatus;
use crate::runtime::Shared;
use crate::upgrade::{Record, ServerState};

/// Old side: sends every idle server connection that can travel to the
/// successor; how many went. The others go back to their pool.
pub(crate) async fn hand_over_idle(shared: &Shared) -> usize {
    let Some(sink) = shared.handover.load_full() else { return 0 };
    let mut sent = 0;
    for pool in shared.pools.all() {
        for conn in pool.take_idle() {
            let Some((fd, kind)) = conn.handover_socket() else {
                pool.adopt_idle(conn);
                continue;
            };
            let Ok(fd) = fd.try_clone_to_owned() else {
                pool.adopt_idle(conn);
                continue;
            };
            let addr = pool.addr();
            let key = conn.key();
            let record = Record::Server(ServerState {
                socket: kind.to_owned(),
                host: addr.host.clone(),
                port: addr.port,
                user: pool.key().user.clone(),
                database: pool.key().database.clone(),
                pid: key.pid,
                secret: key.secret,
                initial_params: conn.initial_params.clone(),
                age_ms: conn.created().elapsed().as_millis() as u64,
            });
            let sink = sink.clone();
            match tokio::task::spawn_blocking(move || sink.send(&record, &fd)).await {
                Ok(Ok(())) => {
                    // The successor has the socket: closing this copy does
                    // not end the connection, and no Terminate is sent.
                    drop(conn);
                    sent += 1;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upgrade: a server connection could not be handed over; it stays here");
                    pool.adopt_idle(conn);
                    // The stream to the successor failed: the rest would too.
                    return sent;
                }
                Err(_) => {
                    pool.adopt_idle(conn);
                    return sent;
                }
            }
        }
    }
    sent
}

/// New side: a server connection the predecessor handed over with its
/// socket `fd`. It is reset (`DISCARD ALL`: statements, settings,
/// temporary tables and listens of the old process's clients are gone)
/// and put in the pool of the node with the same address, if that pool has
/// room; otherwise, or if anything is wrong with it, it is closed. True when
/// the pool took it.
pub(crate) async fn adopt(shared: Arc<Shared>, state: ServerState, fd: OwnedFd) -> bool {
    let (stream, _) = match crate::upgrade::stream_from_fd(fd, &state.socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "upgrade: a handed-over server connection's socket is unusable");
            return false;
        }
    };
    let node = {
        let addrs = shared.node_addrs.load();
        let removed = shared.removed_nodes.lock().map(|r| r.clone()).unwrap_or_default();
        addrs.iter().enumerate().position(|(i, a)| {
            // A plain connection suits a node reached in plain text, or
            // one whose `sslmode = prefer` settled for it.
            let plain_allowed = a.tls.as_ref().is_none_or(|t| t.mode == crate::config::ServerTlsMode::Prefer);
            a.host == state.host && a.port == state.port && plain_allowed && !removed.get(i).copied().unwrap_or(false)
        })
    };
    let (max_message, timeout) = {
        let c = shared.config();
        (c.server.max_message_size, c.pool.connect_timeout)
    };
    let created = Instant::now().checked_sub(Duration::from_millis(state.age_ms)).unwrap_or_else(Instant::now);
    let key = BackendKeyData { pid: state.pid, secret: state.secret };
    let Some(node) = node else {
        tracing::info!(host = %state.host, port = state.port, "upgrade: a handed-over server connection is to no configured node; closed");
        let addr = crate::backend::ServerAddr::plain(state.host.clone(), state.port);
        ServerConn::adopted(stream, addr, key, state.initial_params, created, max_message).close().await;
        return false;
    };
    let Some(addr) = shared.node(node) else { return false };
    let mut conn = ServerConn::adopted(stream, addr.clone(), key, state.initial_params, created, max_message);
    // One round trip proves the connection answers, idle, and clears
    // whatever the old process's clients left on it.
    match tokio::time::timeout(timeout, conn.simple_query("DISCARD ALL")).await {
        Ok(Ok(TransactionStatus::Idle)) => {}
        _ => {
            tracing::info!(node, "upgrade: a handed-over server connection did not reset; closed");
            return false;
        }
    }
    let secret = match Box::pin(crate::access::user_secret(&shared, &state.user, &state.database)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(user = %state.user, error = %e, "upgrade: a handed-over server connection's user is unknown here; closed");
            conn.close().await;
            return false;
        }
    };
    let login = LoginInfo { secret, user: state.user.clone(), database: state.database.clone(), client_key: None };
    let pool =
        shared.pools.get(PoolKey { node, user: state.user.clone(), database: state.database.clone() }, &addr, || login);
    pool.adopt_idle(conn)
}
