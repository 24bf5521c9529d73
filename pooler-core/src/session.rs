//! One task per client: startup, authentication, backend assignment, and the
//! relay loop that moves bytes both ways until the client leaves.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::watch;

use crate::auth::{self, ScramServer};
use crate::backend::{LoginInfo, ServerConn};
use crate::cancel::CancelTarget;
use crate::config::PoolMode;
use crate::error::{Error, Failure, Stage};
use crate::hba::HbaMethod;
use crate::metrics as m;
use crate::params::{param_statements, startup_settings};
use crate::pool::{Lease, PoolKey};
use crate::protocol::messages::{self, tag, SaslInitialResponse};
use crate::protocol::write::{self as w, Severity};
use crate::protocol::TransactionStatus;
use crate::protocol::{split_frame, split_startup, Frame, ProtocolError, StartupMessage, StartupPacket};
use crate::relay::End;
use crate::runtime::{Phase, Shared};
use crate::topology::Status;
use crate::transport::{Peer, Stream};

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
    let login_timeout = shared.config.server.client_login_timeout;
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
            if shared.config.server.log_connections {
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
    if shared.config.server.log_connections {
        match client.stream.tls_info() {
            Some(t) => {
                tracing::info!(client = %peer, %user, %database, tls = t.version, cipher = %t.cipher, "client connected")
            }
            None => tracing::info!(client = %peer, %user, %database, "client connected"),
        }
    }
    if let Err(e) = check_transport(&client, &shared, &user, &database) {
        metrics::counter!(m::AUTH_FAILURES).increment(1);
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
            metrics::counter!(m::AUTH_FAILURES).increment(1);
            tracing::info!(client = %peer, %user, error = %e, "authentication failed");
            client.send_error(Severity::Fatal, &e).await;
            return;
        }
        // PostgreSQL only logs "canceling authentication due to timeout" and
        // closes; the client gets nothing.
        Err(_) => {
            if shared.config.server.log_connections {
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
        _ if shared.config.server.log_connections => {
            tracing::info!(client = %peer, %user, %database, reason = %end, "client disconnected");
        }
        _ => {}
    }
}

/// What the startup phase came to.
enum Startup {
    /// A StartupMessage: the client logs in.
    Message(StartupMessage),
    /// The connection ends with no answer, as PostgreSQL ends it.
    Silent(Silent),
}

/// Why a connection ends before a StartupMessage without an answer: the
/// cases PostgreSQL closes without sending anything (it logs the protocol
/// violations, not the others).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Silent {
    /// The TLS handshake failed (the client got a TLS alert, if anything):
    /// a wrong CA, no certificate where one is required, direct TLS without
    /// the `postgresql` ALPN protocol.
    Tls(String),
    /// A CancelRequest (forwarded, or matching no session).
    Cancel,
    /// Closed without a byte (health checks and port scanners do this; so
    /// does a client that did not like the answer to its SSLRequest).
    Closed,
    /// Closed in the middle of a packet.
    Incomplete,
    /// Terminate sent in place of a startup packet (a driver giving up at
    /// once; to PostgreSQL an invalid length).
    Terminate,
    /// A length PostgreSQL refuses: below 8 bytes, above 10,004 or a
    /// CancelRequest not 16 bytes long.
    InvalidLength(usize),
}

impl Silent {
    fn log(self, peer: Peer) {
        match self {
            Silent::Cancel => tracing::debug!(client = %peer, "cancel request handled"),
            Silent::Closed => tracing::debug!(client = %peer, "client closed the connection before a startup packet"),
            Silent::Terminate => tracing::debug!(client = %peer, "client sent Terminate instead of a startup packet"),
            Silent::Incomplete => tracing::info!(client = %peer, "incomplete startup packet"),
            Silent::InvalidLength(len) => tracing::info!(client = %peer, len, "invalid length of startup packet"),
            Silent::Tls(why) => {
                tracing::info!(client = %peer, reason = why.as_str(), "could not accept TLS connection")
            }
        }
    }
}

/// Reads the startup packet, answering SSL and GSS requests with `N` and
/// handling a cancel request.
async fn read_startup(client: &mut Client, shared: &Shared) -> Result<Startup, Error> {
    let mut negotiations = 0;
    loop {
        // PostgreSQL 17's direct TLS: a TLS handshake record where a startup
        // packet's length would be (whose first byte is always 0).
        if client.buf.first() == Some(&TLS_HANDSHAKE) && !client.stream.is_tls() {
            if let Some(acceptor) = shared.tls.clients.load_full() {
                let early = client.buf.split();
                if let Err(why) = start_tls(client, &acceptor, &early).await {
                    return Ok(Startup::Silent(Silent::Tls(why)));
                }
                if client.stream.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
                    let why = "direct TLS connection without the \"postgresql\" ALPN protocol";
                    return Ok(Startup::Silent(Silent::Tls(why.into())));
                }
                continue;
            }
        }
        let packet = match split_startup(&mut client.buf) {
            Ok(p) => p,
            Err(ProtocolError::InvalidStartupLength { len }) => {
                let terminate = client.buf.starts_with(&[tag::TERMINATE, 0, 0, 0, 4]);
                return Ok(Startup::Silent(if terminate { Silent::Terminate } else { Silent::InvalidLength(len) }));
            }
            Err(e) => return Err(Error::ClientProtocol(e)),
        };
        match packet {
            Some(request @ (StartupPacket::SslRequest | StartupPacket::GssEncRequest)) => {
                negotiations += 1;
                if negotiations > 2 {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed("too many encryption requests")));
                }
                if client.stream.is_tls() {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed(
                        "encryption requested on an encrypted connection",
                    )));
                }
                let acceptor = match request {
                    StartupPacket::SslRequest => shared.tls.clients.load_full(),
                    // GSSAPI encryption is not offered.
                    _ => None,
                };
                let Some(acceptor) = acceptor else {
                    // The client goes on in plain text or gives up, as it chooses.
                    client.stream.write_all(b"N").await.map_err(Error::ClientIo)?;
                    continue;
                };
                // Bytes sent after SSLRequest and before the handshake would be
                // taken as if encrypted (CVE-2021-23214): refused.
                if !client.buf.is_empty() {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed(
                        "received unencrypted data after SSL request",
                    )));
                }
                client.stream.write_all(b"S").await.map_err(Error::ClientIo)?;
                if let Err(why) = start_tls(client, &acceptor, &[]).await {
                    return Ok(Startup::Silent(Silent::Tls(why)));
                }
            }
            Some(StartupPacket::Cancel(key)) => {
                shared.forward_cancel(key).await;
                return Ok(Startup::Silent(Silent::Cancel));
            }
            Some(StartupPacket::Startup(msg)) => {
                negotiate_version(client, &msg);
                if let Some(r) = msg.param("replication") {
                    if !matches!(r.to_ascii_lowercase().as_str(), "false" | "off" | "no" | "0") {
                        return Err(Error::Refused {
                            code: "08P01",
                            message: "replication connections are not supported by the pooler; connect to the server directly".into(),
                        });
                    }
                }
                return Ok(Startup::Message(msg));
            }
            None => {
                if client.fill().await? == 0 {
                    let why = if client.buf.is_empty() { Silent::Closed } else { Silent::Incomplete };
                    return Ok(Startup::Silent(why));
                }
            }
        }
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Runs the server side of a TLS handshake with `client`; `early`: handshake
/// bytes already read. The error is the reason, for the log.
async fn start_tls(client: &mut Client, acceptor: &crate::tls::Acceptor, early: &[u8]) -> Result<(), String> {
    client.stream.accept_tls(acceptor.config.clone(), early).map_err(|e| e.to_string())?;
    client.stream.handshake().await.map_err(|e| e.to_string())?;
    client.channel_binding = acceptor.end_point.clone();
    Ok(())
}

/// PostgreSQL's refusal when no hba line admits a connection, which is how
/// it refuses plain text where only `hostssl` lines exist.
fn no_entry(client: &Client, user: &str, database: &str) -> Error {
    let host = match client.peer {
        Peer::Tcp(a) => a.ip().to_string(),
        Peer::Unix { .. } => "[local]".into(),
    };
    let encryption = if client.stream.is_tls() { "SSL encryption" } else { "no encryption" };
    Error::Refused {
        code: "28000",
        message: format!(
            "no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{database}\", {encryption}"
        ),
    }
}

/// What `client_tls.sslmode` demands of a TCP client, checked once the user
/// is known: TLS (`require`), and under `verify-full` a certificate naming
/// the user. (Unix-socket clients are local; TLS does not apply to them, as
/// in PostgreSQL.)
fn check_transport(client: &Client, shared: &Shared, user: &str, database: &str) -> Result<(), Error> {
    let mode = shared.config.client_tls.sslmode;
    if matches!(client.peer, Peer::Unix { .. }) {
        return Ok(());
    }
    if mode.requires() && !client.stream.is_tls() {
        return Err(no_entry(client, user, database));
    }
    if mode == crate::config::ClientTlsMode::VerifyFull {
        let cn = client.stream.tls_info().and_then(|t| t.client_cn);
        if cn.as_deref() != Some(user) {
            return Err(Error::Refused {
                code: "28000",
                message: format!(
                    "certificate validation (clientcert=verify-full) failed for user \"{user}\": CN mismatch"
                ),
            });
        }
    }
    Ok(())
}

/// Queues NegotiateProtocolVersion when the client asked for a newer minor
/// version or for protocol options (`_pq_.*`) the pooler does not know.
fn negotiate_version(client: &mut Client, msg: &StartupMessage) {
    let unknown: Vec<&str> = msg.params.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("_pq_.")).collect();
    if msg.minor > 0 || !unknown.is_empty() {
        w::negotiate_protocol_version(&mut client.out, 0, &unknown);
    }
}

/// Runs the configured client authentication. Errors are reported as
/// PostgreSQL does, without telling whether the user exists. After a SCRAM
/// login, returns the ClientKey the client proved.
async fn authenticate(
    client: &mut Client,
    shared: &Shared,
    user: &str,
    database: &str,
) -> Result<Option<[u8; 32]>, Error> {
    // The hba rules (or auth.method) choose; refusals come back as errors.
    let transport = match client.peer {
        Peer::Tcp(a) => crate::hba::Transport::Host { addr: a.ip(), tls: client.stream.is_tls() },
        Peer::Unix { .. } => crate::hba::Transport::Local,
    };
    let cn = client.stream.tls_info().and_then(|t| t.client_cn);
    let method = crate::access::login_method(shared, transport, cn.as_deref(), user, database).await?;
    match method {
        HbaMethod::Trust => return Ok(None),
        HbaMethod::Cert => return check_certificate(client, user).map(|()| None),
        HbaMethod::Peer => return check_peer(client, user).map(|()| None),
        _ => {}
    }
    // The password file's secret, else auth_query's.
    let secret = crate::access::user_secret(shared, user, database).await?;
    let secret = secret.as_ref();
    let fail = || Error::ClientAuth { user: user.to_owned() };
    let use_scram = match method {
        HbaMethod::ScramSha256 => true,
        // Like PostgreSQL: md5 is asked for only when an md5 answer can be checked;
        // a user whose only secret is a SCRAM verifier is asked for SCRAM.
        _ => secret.is_some_and(|s| s.plaintext().is_none() && s.md5().is_none() && s.scram().is_some()),
    };
    if !use_scram {
        let salt = auth::md5_salt();
        w::auth_md5(&mut client.out, salt);
        client.flush().await?;
        let frame = expect_password(client).await?;
        let answer = messages::password_message(frame.body()).map_err(Error::ClientProtocol)?;
        return match secret {
            Some(s) if auth::verify_md5(s, user, salt, answer) => Ok(None),
            _ => Err(fail()),
        };
    }
    let binding = client.channel_binding.clone().filter(|_| client.stream.is_tls());
    let mut scram = ScramServer::new(secret.and_then(|s| s.scram()), user).with_channel_binding(binding);
    w::auth_sasl(&mut client.out, scram.mechanisms());
    client.flush().await?;
    let frame = expect_password(client).await?;
    let init = SaslInitialResponse::parse(frame.body()).map_err(Error::ClientProtocol)?;
    let server_first = scram
        .client_first(init.mechanism, init.data)
        .map_err(|e| Error::Refused { code: "28000", message: format!("SCRAM authentication failed: {e}") })?;
    w::auth_sasl_continue(&mut client.out, &server_first);
    client.flush().await?;
    let frame = expect_password(client).await?;
    match scram.client_final(frame.body()) {
        Ok(server_final) => {
            w::auth_sasl_final(&mut client.out, &server_final);
            Ok(scram.client_key())
        }
        Err(_) => Err(fail()),
    }
}

/// The `cert` method: a client certificate, verified during the handshake
/// against `client_tls.ca_file`, whose common name is the user name.
fn check_certificate(client: &Client, user: &str) -> Result<(), Error> {
    let Some(tls) = client.stream.tls_info() else {
        return Err(Error::Refused { code: "28000", message: "connection requires a valid client certificate".into() });
    };
    match tls.client_cn {
        Some(cn) if cn == user => Ok(()),
        Some(_) => Err(Error::Refused {
            code: "28000",
            message: format!("certificate authentication failed for user \"{user}\""),
        }),
        None => Err(Error::Refused { code: "28000", message: "connection requires a valid client certificate".into() }),
    }
}

/// The `peer` method: the operating-system user of a Unix-socket client is
/// the user name.
fn check_peer(client: &Client, user: &str) -> Result<(), Error> {
    let failed =
        || Error::Refused { code: "28000", message: format!("Peer authentication failed for user \"{user}\"") };
    let Peer::Unix { uid } = client.peer else {
        return Err(Error::Refused {
            code: "28000",
            message: "peer authentication is only supported on local (Unix-socket) connections".into(),
        });
    };
    let name = uid.and_then(crate::auth::os_user_name).ok_or_else(failed)?;
    if name == user {
        Ok(())
    } else {
        tracing::info!(%user, os_user = %name, "peer authentication: the OS user is not the requested user");
        Err(failed())
    }
}

async fn expect_password(client: &mut Client) -> Result<Frame, Error> {
    let frame = client.read_frame().await?;
    if frame.tag() == tag::TERMINATE {
        // libpq does this when it has no password to give: it asks the user and
        // reconnects. Not a failed login; end quietly, as PostgreSQL does.
        return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if frame.tag() != tag::PASSWORD {
        return Err(Error::ClientProtocol(ProtocolError::Unexpected {
            tag: frame.tag(),
            context: "while expecting a password response",
        }));
    }
    Ok(frame)
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
    phase: watch::Receiver<Phase>,
}

/// After authentication: take a server connection and finish the client's
/// startup. Its own future (boxed by the caller) ends before the relay starts,
/// so an idle client's task does not keep room for it.
async fn open_session(
    client: &mut Client,
    shared: &Arc<Shared>,
    startup: &StartupMessage,
    user: String,
    database: String,
    client_key: Option<[u8; 32]>,
) -> Result<Opened, End> {
    // A plain session-mode client needs the primary for its whole session:
    // during a failover it waits (bounded) for the new one.
    let plain_session =
        shared.config.pool.mode_for(&user, &database) == PoolMode::Session && !shared.router.balancing();
    if plain_session && !shared.router.snapshot().primary_available() {
        let wait = shared.config.failover.search_primary_node_timeout;
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
    let Some(addr) = shared.nodes.get(node) else {
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
    let pool = shared.pools.get(key, addr, || login.clone());
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
        // Transaction-pooled (or load-balanced) clients need the primary only
        // for writes: while it is unreachable they may log in on a standby.
        Err(e) if e.is_unavailable() && (pool.settings().mode != PoolMode::Session || shared.router.balancing()) => {
            let first = shared.backend_failed(node, &e);
            let fallback = shared.router.fallback_node(node).and_then(|n| shared.nodes.get(n).map(|a| (n, a)));
            let Some((n, addr)) = fallback else {
                client.send_error(Severity::Fatal, &e).await;
                return Err(End::Failed(e));
            };
            let key = PoolKey { node: n, user: user.clone(), database: database.clone() };
            let standby_pool = shared.pools.get(key, addr, || login.clone());
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
            let wait = shared.config.failover.search_primary_node_timeout;
            let found = Box::pin(shared.cluster.wait_for_primary_after(node, wait)).await;
            let retry = found.and_then(|n| shared.nodes.get(n).map(|a| (n, a)));
            let Some((n, addr)) = retry else {
                client.send_error(Severity::Fatal, &e).await;
                return Err(End::Failed(e));
            };
            let key = PoolKey { node: n, user: user.clone(), database: database.clone() };
            pool = shared.pools.get(key, addr, || login.clone());
            if let Some(key) = client_key {
                pool.learn_client_key(key);
            }
            node = n;
            match Box::pin(pool.checkout()).await {
                Ok(l) => l,
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
    Ok(Opened { pool, lease: Some(lease), node, login, mode, login_state, cancel, phase })
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
) -> Result<Option<Opened>, End> {
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
    Ok(Some(Opened {
        pool: pool.clone(),
        lease: None,
        node,
        login: login.clone(),
        mode,
        login_state: (params, Vec::new()),
        cancel,
        phase: shared.phase.clone(),
    }))
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
    let Opened { pool, lease, node, login, mode, login_state, cancel, phase } = match opened {
        Ok(o) => o,
        Err(end) => return end,
    };
    metrics::gauge!(m::CLIENTS_ACTIVE).increment(1.0);
    let (params, extra) = login_state;
    let Client { stream, buf, out, peer, .. } = client;
    // Listed for the admin console (SHOW CLIENTS, KILL_CLIENT) while it lasts.
    let who = crate::clients::Registration {
        user: &login.user,
        database: &login.database,
        application_name: &application_name,
        peer: peer.tcp_addr(),
        tls: stream.tls_info().map(|t| t.summary()),
        state: crate::clients::ClientState::Idle,
    };
    let registered = shared.clients.register(who, &*stream);
    // Boxed: the login's futures and the relay's do not share one
    // allocation sized for both.
    let outcome = Box::pin(
        crate::relay::Relay::new(
            shared,
            pool.clone(),
            mode,
            &cancel,
            (stream, buf, out),
            (lease, node),
            login,
            (params, extra),
            *peer,
        )
        .tracked(&registered)
        .run(&phase),
    )
    .await;
    metrics::gauge!(m::CLIENTS_ACTIVE).decrement(1.0);
    drop(cancel);
    if registered.killed() {
        let e = Error::Refused { code: "57P01", message: "terminating connection due to administrator command".into() };
        client.send_error(Severity::Fatal, &e).await;
        return End::Failed(e);
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
        End::Terminated | End::ClientClosed | End::ServerFatal(_) => None,
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
    /// cold paths are boxed so it stays small (it was 8.9 KB before).
    #[tokio::test]
    async fn a_client_task_holds_less_than_4_kib_inline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut config = crate::Config::with_nodes(vec![crate::config::NodeConfig::new("127.0.0.1", 1)]);
        config.auth.method = crate::config::AuthMethod::Trust;
        let shared = crate::Pooler::new(config).unwrap().shared();
        let task = super::serve(stream.into(), crate::transport::Peer::Tcp(addr), shared);
        let size = std::mem::size_of_val(&task);
        eprintln!("client task future: {size} bytes");
        assert!(size < 4096, "the client task's future is {size} bytes");
    }
}
