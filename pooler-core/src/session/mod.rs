//! One task per client: startup, authentication, backend assignment, and the
//! relay loop that moves bytes both ways until the client leaves.

use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::{LoginInfo, ServerConn};
use crate::cancel::CancelTarget;
use crate::config::PoolMode;
use crate::error::{Error, Failure, Stage};
use crate::metrics as m;
use crate::params::{param_statements, startup_settings};
use crate::pool::{Lease, PoolKey};
use crate::protocol::write::{self as w, Severity};
use crate::protocol::TransactionStatus;
use crate::protocol::{split_frame, Frame, StartupMessage};
use crate::relay::End;
use crate::runtime::{Phase, Shared};
use crate::topology::Status;
use crate::transport::{Peer, Stream};

mod adopt;
mod login;
mod startup;

pub(crate) use adopt::adopt;

use login::{authenticate, check_transport};
use startup::{read_startup, Startup};

/// Largest authentication message accepted from a client (PostgreSQL's
/// PG_MAX_AUTH_TOKEN_LENGTH).
const MAX_AUTH_MESSAGE: usize = 65_535 + 5;

/// The client side of a session.
struct Client {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    peer: Peer,
    /// The `tls-server-end-point` binding of the certificate this client's
    /// TLS session was accepted with (SCRAM-SHA-256-PLUS).
    channel_binding: Option<Vec<u8>>,
}

impl Client {
    async fn flush(&mut self) -> Result<(), Error> {
        if !self.out.is_empty() {
            self.stream.flush_all(&mut self.out).await.map_err(Error::ClientIo)?;
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<usize, Error> {
        self.stream.read_some(&mut self.buf).await.map_err(Error::ClientIo)
    }

    /// Reads one whole frame during login (small messages only).
    async fn read_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(f) = split_frame(&mut self.buf, MAX_AUTH_MESSAGE).map_err(Error::ClientProtocol)? {
                return Ok(f);
            }
            if self.fill().await? == 0 {
                return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends an ErrorResponse (after anything already queued) and flushes.
    /// Ends the login: the reported parameters, the client's cancel key and
    /// ReadyForQuery, flushed; then drops the login's scratch buffer (the
    /// relay reads on demand).
    async fn end_login(
        &mut self,
        params: &[(String, String)],
        cancel: &crate::cancel::CancelHandle,
    ) -> Result<(), Error> {
        for (k, v) in params {
            w::parameter_status(&mut self.out, k, v);
        }
        w::backend_key_data(&mut self.out, cancel.key().pid, cancel.key().secret);
        w::ready_for_query(&mut self.out, TransactionStatus::Idle);
        self.flush().await?;
        self.out = BytesMut::new();
        if self.buf.is_empty() {
            // Nothing after the login yet: the relay reads on demand into a
            // recycled buffer; this one's allocation would otherwise stay
            // with an idle client (a read chunk each).
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    async fn send_error(&mut self, severity: Severity, err: &Error) {
        self.send_failure(severity, &err.failure(Stage::Login)).await;
    }

    /// Sends the ErrorResponse of `failure` (after anything already queued)
    /// and flushes.
    async fn send_failure(&mut self, severity: Severity, failure: &Failure<'_>) {
        match failure.server_frame() {
            Some(frame) => self.out.extend_from_slice(frame),
            None => w::error_response(&mut self.out, severity, failure.sqlstate, &failure.message()),
        }
        let _ = self.flush().await;
    }
}

/// Serves one accepted client connection to the end.
pub(crate) async fn serve(stream: Stream, peer: Peer, shared: Arc<Shared>) {
    let mut client = Client { stream, buf: BytesMut::new(), out: BytesMut::new(), peer, channel_binding: None };
    let login_timeout = shared.config().server.client_login_timeout;
    // The login's steps are boxed: the task of an idle client keeps only
    // what its relay needs, not room for every step it went through.
    let startup = match tokio::time::timeout(login_timeout, Box::pin(read_startup(&mut client, &shared))).await {
        Ok(Ok(Startup::Message(s))) => s,
        Ok(Ok(Startup::Silent(why))) => return why.log(peer),
        Ok(Err(e)) => {
            if !matches!(e, Error::ClientIo(_)) {
                tracing::info!(client = %peer, error = %e, "startup refused");
                client.send_error(Severity::Fatal, &e).await;
            }
            return;
        }
        // PostgreSQL closes such a connection without a word.
        Err(_) => {
            if shared.config().server.log_connections {
                let reason = "timeout expired while waiting for the startup packet";
                tracing::info!(client = %peer, reason, "client disconnected");
            }
            return;
        }
    };
    let Some(user) = startup.param("user").map(str::to_owned) else {
        let e = Error::Refused { code: "28000", message: "no PostgreSQL user name specified in startup packet".into() };
        client.send_error(Severity::Fatal, &e).await;
        return;
    };
    let database = startup.param("database").filter(|d| !d.is_empty()).unwrap_or(&user).to_owned();
    if shared.config().server.log_connections {
        match client.stream.tls_info() {
            Some(t) => {
                tracing::info!(client = %peer, %user, %database, tls = t.version, cipher = %t.cipher, "client connected")
            }
            None => tracing::info!(client = %peer, %user, %database, "client connected"),
        }
    }
    if let Err(e) = check_transport(&client, &shared, &user, &database) {
        metrics::counter!(m::AUTH_FAILURES, "reason" => refusal_reason(&e)).increment(1);
        tracing::info!(client = %peer, %user, error = %e, "connection refused");
        client.send_error(Severity::Fatal, &e).await;
        return;
    }
    let login =
        tokio::time::timeout(login_timeout, Box::pin(authenticate(&mut client, &shared, &user, &database))).await;
    let client_key = match login {
        Ok(Ok(key)) => key,
        Ok(Err(Error::ClientIo(_))) => return,
        Ok(Err(e)) => {
            metrics::counter!(m::AUTH_FAILURES, "reason" => refusal_reason(&e)).increment(1);
            tracing::info!(client = %peer, %user, error = %e, "authentication failed");
            client.send_error(Severity::Fatal, &e).await;
            return;
        }
        // PostgreSQL only logs "canceling authentication due to timeout" and
        // closes; the client gets nothing.
        Err(_) => {
            if shared.config().server.log_connections {
                let reason = "timeout expired during authentication";
                tracing::info!(client = %peer, %user, %database, reason, "client disconnected");
            }
            return;
        }
    };
    w::auth_ok(&mut client.out);
    // The admin console, and databases an operator disabled (crate::admin).
    match crate::admin::on_login(&shared, &user, &database) {
        crate::admin::Login::Pool => {}
        crate::admin::Login::Refuse(e) => return client.send_error(Severity::Fatal, &e).await,
        crate::admin::Login::Console(role) => {
            let Client { stream, buf, out, peer, .. } = &mut client;
            let console = crate::admin::serve((stream, buf, out), *peer, &shared, (&user, &database, role));
            return Box::pin(console).await;
        }
    }
    let end = run_session(&mut client, &shared, startup, user.clone(), database.clone(), client_key).await;
    match &end {
        // Server failures and pool exhaustion are worth a warning whatever the settings.
        End::Failed(e) if e.side() != crate::error::Side::Client => {
            tracing::warn!(client = %peer, %user, %database, error = %e, "session ended by a failure");
        }
        End::ServerFatal(_) => {
            tracing::warn!(client = %peer, %user, %database, reason = %end, "session ended by the server");
        }
        _ if shared.config().server.log_connections => {
            tracing::info!(client = %peer, %user, %database, reason = %end, "client disconnected");
        }
        _ => {}
    }
}

/// The `reason` label of a refused login (`pooler_auth_failures_total`).
fn refusal_reason(e: &Error) -> &'static str {
    match e {
        Error::ClientAuth { .. } => "password",
        Error::Refused { code: "28000", .. } => "refused",
        _ => "other",
    }
}

/// A session whose login is over: what its relay needs.
struct Opened {
    pool: Arc<crate::pool::Pool>,
    /// The login's server connection (`None`: answered without one).
    lease: Option<Lease>,
    node: usize,
    login: LoginInfo,
    mode: PoolMode,
    /// The client's reported and extra parameters.
    login_state: (crate::relay::Settings, crate::relay::Settings),
    cancel: crate::cancel::CancelHandle,
}

/// After authentication: take a server connection and finish the client's
/// startup. Its own future (boxed by the caller) ends before the relay starts,
/// so an idle client's task does not keep room for it. While the database
/// is paused (`PAUSE`) the login waits, connected, and chooses its node once
/// resumed.
async fn open_session(
    client: &mut Client,
    shared: &Arc<Shared>,
    startup: &StartupMessage,
    user: String,
    database: String,
    client_key: Option<[u8; 32]>,
) -> Result<Box<Opened>, End> {
    if shared.memory.over() {
        shared.memory.refused();
        let e = Error::OutOfMemory { held: shared.memory.held(), limit: shared.memory.limit(), waited_ms: 0 };
        tracing::warn!(user, database, "memory limit reached: a login is refused (53200)");
        client.send_error(Severity::Fatal, &e).await;
        return Err(End::Failed(e));
    }
    loop {
        // A login that needs no server connection is answered even while
        // paused; one that does waits here.
        match open_session_once(client, shared, startup, user.clone(), database.clone(), client_key).await {
            Err(End::Failed(Error::Paused)) => Box::pin(shared.control.pause.wait(&database)).await,
            r => return r,
        }
    }
}

/// [`open_session`], once: `End::Failed(Error::Paused)` (nothing sent to the
/// client) when a checkout found the database paused.
async fn open_session_once(
    client: &mut Client,
    shared: &Arc<Shared>,
    startup: &StartupMessage,
    user: String,
    database: String,
    client_key: Option<[u8; 32]>,
) -> Result<Box<Opened>, End> {
    // A plain session-mode client needs the primary for its whole session:
    // during a failover it waits (bounded) for the new one.
    let plain_session =
        shared.config().pool.mode_for(&user, &database) == PoolMode::Session && !shared.router.balancing();
    if plain_session && !shared.router.snapshot().primary_available() {
        let wait = shared.config().failover.search_primary_node_timeout;
        if !Box::pin(shared.cluster.wait_for_primary(wait)).await {
            // Nothing is sent to a primary marked down (a hung one would
            // hold the login for as long as it hangs).
            let s = shared.router.snapshot();
            if let Some(n) = s.nodes.get(s.primary).filter(|n| matches!(n.status, Status::Down | Status::Quarantine)) {
                let e =
                    Error::NoPrimary { node: s.primary, status: n.status.as_str(), waited_ms: wait.as_millis() as u64 };
                client.send_error(Severity::Fatal, &e).await;
                return Err(End::Failed(e));
            }
        }
    }
    // The session starts on the primary as the cluster controller knows it
    // now; a client that may log in on a standby does so at once when the
    // primary is known to be out of service, rather than after a timeout.
    let mut node = shared.router.primary();
    if !plain_session && !shared.router.snapshot().primary_available() {
        if let Some(n) = shared.router.fallback_node(node) {
            tracing::debug!(primary = node, standby = n, "primary out of service: client logs in on a standby");
            node = n;
        }
    }
    let Some(addr) = shared.node(node) else {
        let e = Error::Refused { code: "08001", message: "no backend node is configured".into() };
        client.send_error(Severity::Fatal, &e).await;
        return Err(End::Failed(e));
    };
    let key = PoolKey { node, user: user.clone(), database: database.clone() };
    let secret = match Box::pin(crate::access::user_secret(shared, &user, &database)).await {
        Ok(s) => s,
        Err(e) => {
            client.send_error(Severity::Fatal, &e).await;
            return Err(End::Failed(e));
        }
    };
    let login = LoginInfo { secret, user: user.clone(), database: database.clone(), client_key };
    let pool = shared.pools.get(key, &addr, || login.clone());
    if let Some(key) = client_key {
        pool.learn_client_key(key);
    }
    let mut phase = shared.phase.clone();
    if let Some(opened) = login_without_server(client, shared, startup, &pool, node, &login).await? {
        return Ok(opened);
    }
    let checkout = tokio::select! {
        r = Box::pin(pool.checkout()) => r,
        _ = phase.wait_for(|p| *p != Phase::Running) => Err(Error::Shutdown),
    };
    let mut pool = pool;
    let mut lease = match checkout {
        Ok(l) => l,
        Err(Error::Paused) => return Err(End::Failed(Error::Paused)),
        // Transaction-pooled (or load-balanced) clients need the primary only
        // for writes: while it is unreachable they may log in on a standby.
        Err(e) if e.is_unavailable() && (pool.settings().mode != PoolMode::Session || shared.router.balancing()) => {
            let first = shared.backend_failed(node, &e);
            let fallback = shared.router.fallback_node(node).and_then(|n| shared.node(n).map(|a| (n, a)));
            let Some((n, addr)) = fallback else {
                client.send_error(Severity::Fatal, &e).await;
                return Err(End::Failed(e));
            };
            let key = PoolKey { node: n, user: user.clone(), database: database.clone() };
            let standby_pool = shared.pools.get(key, &addr, || login.clone());
            if let Some(key) = client_key {
                standby_pool.learn_client_key(key);
            }
            match Box::pin(standby_pool.checkout()).await {
                Ok(l) => {
                    if first {
                        tracing::warn!(primary = node, standby = n, error = %e, "primary unreachable; client logged in on a standby");
                    } else {
                        tracing::debug!(primary = node, standby = n, error = %e, "primary unreachable; client logged in on a standby");
                    }
                    node = n;
                    pool = standby_pool;
                    l
                }
                Err(Error::Paused) => return Err(End::Failed(Error::Paused)),
                Err(_) => {
                    client.send_error(Severity::Fatal, &e).await;
                    return Err(End::Failed(e));
                }
            }
        }
        // A session-mode client needs the primary: it waits (bounded) for one
        // that answers, a new one after a failover or this one back.
        Err(e) if e.is_unavailable() => {
            shared.backend_failed(node, &e);
            let wait = shared.config().failover.search_primary_node_timeout;
            let found = Box::pin(shared.cluster.wait_for_primary_after(node, wait)).await;
            let retry = found.and_then(|n| shared.node(n).map(|a| (n, a)));
            let Some((n, addr)) = retry else {
                client.send_error(Severity::Fatal, &e).await;
                return Err(End::Failed(e));
            };
            let key = PoolKey { node: n, user: user.clone(), database: database.clone() };
            pool = shared.pools.get(key, &addr, || login.clone());
            if let Some(key) = client_key {
                pool.learn_client_key(key);
            }
            node = n;
            match Box::pin(pool.checkout()).await {
                Ok(l) => l,
                Err(Error::Paused) => return Err(End::Failed(Error::Paused)),
                Err(e) => {
                    client.send_error(Severity::Fatal, &e).await;
                    return Err(End::Failed(e));
                }
            }
        }
        Err(e) => {
            client.send_error(Severity::Fatal, &e).await;
            return Err(End::Failed(e));
        }
    };
    let mode = pool.settings().mode;
    // Session mode with load balancing runs on the transaction relay, which
    // can hold a connection per node; plain session mode keeps its own relay.
    // Plain session mode: the login's connection is the client's for the
    // whole session and takes its startup settings as they are; the other
    // modes carry the client's parameters from connection to connection.
    let dedicated = mode == PoolMode::Session && !shared.router.balancing();
    let login_state = if dedicated {
        Box::pin(apply_startup_params(lease.conn(), startup))
            .await
            .map(|()| (lease.conn_ref().params().to_vec(), Vec::new()))
    } else {
        Box::pin(crate::relay::login_state(lease.conn(), startup)).await
    };
    let login_state = match login_state {
        Ok(s) => s,
        Err(e) => {
            client.send_error(Severity::Fatal, &e).await;
            Box::pin(finish(&pool, lease, true, TransactionStatus::Idle)).await;
            return Err(End::Failed(e));
        }
    };
    let server_pid = lease.conn_ref().key().pid;
    let cancel = if dedicated && server_pid > 0 {
        // Plain session mode: this server connection is the client's for the
        // whole session, so the client is told its real pid (what
        // pg_backend_pid() says, what its own notifications carry, what
        // pg_terminate_backend() needs), with a secret of the pooler's.
        shared.cancels.register_for_pid(server_pid)
    } else {
        // The transaction relay may move the client between connections
        // (and nodes), and a server that sent no BackendKeyData has no pid
        // to show: a pid of the pooler's, which names no backend.
        shared.cancels.register()
    };
    cancel.set_target(Some(CancelTarget { addr: lease.conn_ref().addr_shared(), key: lease.conn_ref().key() }));
    if let Err(e) = client.end_login(lease.conn_ref().params(), &cancel).await {
        Box::pin(finish(&pool, lease, true, TransactionStatus::Idle)).await;
        return Err(End::Failed(e));
    }
    Ok(Box::new(Opened { pool, lease: Some(lease), node, login, mode, login_state, cancel }))
}

/// Transaction and statement mode: the login answered without a server
/// connection, from the server defaults the pool last saw for this user and
/// database (as pgbouncer does), when the client's startup settings need no
/// server to report them ([`crate::relay::login_state_from_defaults`]). The
/// first request takes a connection like any other. `Ok(None)`: log in on a
/// connection (no connection was opened for this pool yet, the settings need
/// the server, or the primary is not in service).
async fn login_without_server(
    client: &mut Client,
    shared: &Arc<Shared>,
    startup: &StartupMessage,
    pool: &Arc<crate::pool::Pool>,
    node: usize,
    login: &LoginInfo,
) -> Result<Option<Box<Opened>>, End> {
    let mode = pool.settings().mode;
    if !matches!(mode, PoolMode::Transaction | PoolMode::Statement)
        || node != shared.router.primary()
        || !shared.router.snapshot().primary_available()
    {
        return Ok(None);
    }
    let Some(defaults) = pool.server_defaults() else { return Ok(None) };
    let Some(params) = crate::relay::login_state_from_defaults(&defaults, startup) else { return Ok(None) };
    let cancel = shared.cancels.register();
    client.end_login(&params, &cancel).await.map_err(End::Failed)?;
    Ok(Some(Box::new(Opened {
        pool: pool.clone(),
        lease: None,
        node,
        login: login.clone(),
        mode,
        login_state: (params, Vec::new()),
        cancel,
    })))
}

/// After authentication: take a server connection, finish the client's
/// startup, relay, and give the connection back.
async fn run_session(
    client: &mut Client,
    shared: &Arc<Shared>,
    startup: StartupMessage,
    user: String,
    database: String,
    client_key: Option<[u8; 32]>,
) -> End {
    let application_name = startup.param("application_name").unwrap_or_default().to_owned();
    let opened = Box::pin(open_session(client, shared, &startup, user, database, client_key)).await;
    // The startup packet's parameters are applied: not kept for the session.
    drop(startup);
    let opened = match opened {
        Ok(o) => o,
        Err(end) => return end,
    };
    relay_opened(client, shared, opened, &application_name, None).await
}

/// Relays an opened session until it ends (`imported`: the session a
/// predecessor handed over, whose state it starts from); a client idle
/// while this process hands over goes to the successor, or, if that fails,
/// is served on here.
async fn relay_opened(
    client: &mut Client,
    shared: &Arc<Shared>,
    opened: Box<Opened>,
    application_name: &str,
    imported: Option<&crate::upgrade::SessionState>,
) -> End {
    metrics::gauge!(m::CLIENTS_ACTIVE).increment(1.0);
    let Client { stream, buf, out, peer, .. } = client;
    // Listed for the admin console (SHOW CLIENTS, KILL_CLIENT) while it lasts.
    let who = crate::clients::Registration {
        user: &opened.login.user,
        database: &opened.login.database,
        application_name,
        peer: peer.tcp_addr(),
        tls: stream.tls_info().map(|t| t.summary()),
        state: crate::clients::ClientState::Idle,
    };
    let registered = shared.clients.register(who, &*stream);
    // What the relay takes is moved straight into it: a part of `opened`
    // left in this future would stay for the whole session, in every idle
    // client's memory.
    let Opened { pool, lease, node, login, mode, login_state, cancel } = {
        // The box itself is freed here, not when the session ends.
        let opened = opened;
        *opened
    };
    let mut relay = crate::relay::Relay::new(
        shared,
        pool.clone(),
        mode,
        &cancel,
        (stream, buf, out),
        (lease, node),
        login,
        login_state,
        *peer,
    )
    .tracked(&registered)
    .imported(imported);
    let outcome = relay.run().await;
    drop(relay);
    metrics::gauge!(m::CLIENTS_ACTIVE).decrement(1.0);
    drop(cancel);
    if registered.killed() {
        let e = Error::Refused { code: "57P01", message: "terminating connection due to administrator command".into() };
        client.send_error(Severity::Fatal, &e).await;
        return End::Failed(e);
    }
    if let End::HandOver(mut state) = outcome.end {
        drop(registered);
        if adopt::hand_over(shared, client, &mut state, application_name).await {
            return End::HandOver(state);
        }
        // The successor could not take it: served on here, never dropped.
        return Box::pin(adopt::serve(client, shared, &state)).await;
    }
    if let (Some(n), true) = (end_notice(&outcome.end), outcome.client_can_take_error) {
        client.send_failure(Severity::Fatal, &n).await;
    }
    outcome.end
}

/// What the client is told when its session ends for `end`, if anything
/// (the words are [`Error::end_notice`]'s). Nothing after the server's own
/// FATAL: PostgreSQL's last words are the client's last message, as on a
/// direct connection.
fn end_notice(end: &End) -> Option<Failure<'_>> {
    match end {
        End::Shutdown => Some(Failure::shutdown(false)),
        End::ForcedShutdown => Some(Failure::shutdown(true)),
        End::Failed(e) => e.end_notice(),
        End::Terminated | End::ClientClosed | End::ServerFatal(_) | End::HandOver(_) => None,
    }
}

/// Returns the lease to its pool when the connection is clean, else closes it.
async fn finish(pool: &crate::pool::Pool, lease: Lease, clean: bool, status: TransactionStatus) {
    if clean {
        pool.checkin(lease, status, crate::pool::Reset::Full).await;
    } else {
        drop(lease);
    }
}

/// Sets the client's startup parameters (`application_name`, `client_encoding`,
/// `DateStyle`, anything in `options`...) on the server connection where they
/// differ from what the server reports.
async fn apply_startup_params(conn: &mut ServerConn, startup: &StartupMessage) -> Result<(), Error> {
    let wanted = startup_settings(startup)?;
    let sql =
        param_statements(wanted.iter().filter(|(k, v)| !conn.param(k).is_some_and(|cur| cur.eq_ignore_ascii_case(v))));
    if sql.is_empty() {
        return Ok(());
    }
    conn.simple_query(&sql).await.map(|_| ())
}

#[cfg(test)]
mod task_size {
    /// Every client is a task holding this future for its whole life: what
    /// an idle client costs starts here. The login's steps and the relays'
    /// cold paths are boxed so it stays small; the relay itself is inside
    /// (no second box), so this is nearly all an idle client's task keeps.
    /// It was 8.9 KB, then 2.8 KB plus a 4 KB box for the relay; now 2.5 KB
    /// in a debug build, 2.9 KB in a release one.
    #[tokio::test]
    async fn a_client_task_with_its_relay_holds_less_than_3_kib() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut config = crate::Config::with_nodes(vec![crate::config::NodeConfig::new("127.0.0.1", 1)]);
        config.auth.method = crate::config::AuthMethod::Trust;
        let shared = crate::Pooler::new(config).unwrap().shared();
        let task = super::serve(stream.into(), crate::transport::Peer::Tcp(addr), shared);
        let size = std::mem::size_of_val(&task);
        eprintln!("client task future: {size} bytes");
        assert!(size < 3072, "the client task's future is {size} bytes");
    }
}
