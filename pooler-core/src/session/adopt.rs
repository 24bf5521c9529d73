//! Clients handed between processes at an upgrade (crate::upgrade): the
//! old process sends an idle client's socket and session state to its
//! successor; the successor serves the client from that state, without a
//! login, as if nothing had happened. A client the successor cannot take is
//! served on by the old process, from the same state.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::BytesMut;

use super::{relay_opened, Client, End, Opened};
use crate::backend::LoginInfo;
use crate::error::Error;
use crate::pool::PoolKey;
use crate::protocol::CancelKey;
use crate::runtime::Shared;
use crate::transport::Peer;
use crate::upgrade::{Record, SessionState};

/// Old side: sends the idle client and `state` to the successor. True when
/// the successor has it: nothing more may be written to the socket here.
pub(super) async fn hand_over(
    shared: &Shared,
    client: &Client,
    state: &mut SessionState,
    application_name: &str,
) -> bool {
    let Some(sink) = shared.handover.load_full() else { return false };
    let Some((fd, kind)) = client.stream.plain_socket() else { return false };
    let Ok(fd) = fd.try_clone_to_owned() else { return false };
    state.socket = kind.to_owned();
    state.application_name = application_name.to_owned();
    state.peer = match client.peer {
        Peer::Tcp(addr) => addr.to_string(),
        Peer::Unix { uid } => uid.map(|u| u.to_string()).unwrap_or_default(),
    };
    let record = Record::Client(state.clone());
    match tokio::task::spawn_blocking(move || sink.send(&record, &fd)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(client = %client.peer, error = %e, "upgrade: the client could not be handed over; it stays here");
            false
        }
        Err(_) => false,
    }
}

/// New side: a client handed over with its socket `fd`; served in a task of
/// its own until it leaves.
pub(crate) fn adopt(shared: Arc<Shared>, state: SessionState, fd: OwnedFd) -> std::io::Result<()> {
    let (stream, peer) = crate::upgrade::stream_from_fd(fd, &state.socket)?;
    // Counted against `max_client_connections` like any client, but never
    // refused for it: it was connected before the upgrade.
    let slot = shared.client_slots.take_adopted();
    tokio::spawn(async move {
        let _slot = slot;
        let mut client = Client { stream, buf: BytesMut::new(), out: BytesMut::new(), peer, channel_binding: None };
        let end = serve(&mut client, &shared, &state).await;
        if shared.config().server.log_connections {
            tracing::info!(client = %peer, user = %state.user, database = %state.database, reason = %end, "client disconnected");
        }
    });
    Ok(())
}

/// Serves a client from its handed-over `state`: the same pool as a login
/// would use, its cancel key taken over, its statements and settings
/// restored.
pub(super) async fn serve(client: &mut Client, shared: &Arc<Shared>, state: &SessionState) -> End {
    use base64::Engine as _;
    let (user, database) = (state.user.clone(), state.database.clone());
    let node = shared.router.primary();
    let Some(addr) = shared.node(node) else {
        return End::Failed(Error::Refused { code: "08001", message: "no backend node is configured".into() });
    };
    let secret = match Box::pin(crate::access::user_secret(shared, &user, &database)).await {
        Ok(s) => s,
        Err(e) => return End::Failed(e),
    };
    let client_key = base64::engine::general_purpose::STANDARD
        .decode(&state.client_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
    let login = LoginInfo { secret, user: user.clone(), database: database.clone(), client_key };
    let pool = shared.pools.get(PoolKey { node, user, database }, &addr, || login.clone());
    if let Some(key) = client_key {
        pool.learn_client_key(key);
    }
    let key = CancelKey { pid: state.cancel_pid, secret: state.cancel_secret };
    let cancel = shared.cancels.adopt(key).unwrap_or_else(|| {
        tracing::warn!(pid = key.pid, "a handed-over client's cancel key is taken here: its cancels will not work");
        shared.cancels.register()
    });
    let mode = pool.settings().mode;
    let opened = Box::new(Opened {
        pool,
        lease: None,
        node,
        login,
        mode,
        login_state: (state.params.clone(), state.extra.clone()),
        cancel,
    });
    relay_opened(client, shared, opened, &state.application_name, Some(state)).await
}
