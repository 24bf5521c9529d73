//! One connection to a PostgreSQL server: connect, authenticate, run the
//! pooler's own statements (reset, SET), and the state the pooler tracks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::net::TcpStream;

use crate::auth::{ScramKeyClient, UserSecret};
use crate::error::Error;
use crate::protocol::messages::{tag, AuthRequest, BackendKeyData, ParameterStatus};
use crate::protocol::{split_frame, Frame, ProtocolError, TransactionStatus};

/// Where a server listens, how to reach it, and how to name it in messages.
#[derive(Clone, Debug)]
pub struct ServerAddr {
    /// Host name or address, or (starting with `/`) the directory of the
    /// server's Unix socket.
    pub host: String,
    /// TCP port (also in the Unix socket's name).
    pub port: u16,
    /// TLS towards this server (`None`: plain text).
    pub(crate) tls: Option<crate::tls::ServerTls>,
}

impl PartialEq for ServerAddr {
    fn eq(&self, other: &ServerAddr) -> bool {
        self.host == other.host && self.port == other.port
    }
}

impl Eq for ServerAddr {}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.socket_path() {
            Some(path) => write!(f, "{}", path.display()),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Every node's address by index, shared by the sessions and the health
/// checks; a reload that adds nodes swaps in a longer list.
pub(crate) type NodeAddrs = std::sync::Arc<arc_swap::ArcSwap<Vec<ServerAddr>>>;

impl ServerAddr {
    /// A server at `host:port` reached in plain text.
    pub(crate) fn plain(host: impl Into<String>, port: u16) -> ServerAddr {
        ServerAddr { host: host.into(), port, tls: None }
    }

    /// Node `node` of `config`, with its TLS settings from `tls`.
    pub(crate) fn of_node(config: &crate::Config, node: usize, tls: &crate::tls::TlsContexts) -> Option<ServerAddr> {
        let n = config.nodes.get(node)?;
        let tls = Some(tls.for_node(config, node)).filter(|t| t.mode.asks());
        Some(ServerAddr { host: n.host.clone(), port: n.port, tls })
    }

    /// Every node of `config`.
    pub(crate) fn of_nodes(config: &crate::Config, tls: &crate::tls::TlsContexts) -> Vec<ServerAddr> {
        (0..config.nodes.len()).filter_map(|i| ServerAddr::of_node(config, i, tls)).collect()
    }

    /// The Unix socket of a server whose host is a directory, as libpq
    /// names it: `<dir>/.s.PGSQL.<port>`.
    pub(crate) fn socket_path(&self) -> Option<std::path::PathBuf> {
        self.host.starts_with('/').then(|| std::path::Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }

    /// Opens a plaintext connection: TCP (no delay, keepalive) or the Unix
    /// socket.
    async fn open(&self) -> Result<crate::transport::Stream, Error> {
        let failed = |source| Error::Connect { addr: self.to_string(), source };
        match self.socket_path() {
            Some(path) => Ok(tokio::net::UnixStream::connect(path).await.map_err(failed)?.into()),
            None => {
                let stream = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(failed)?;
                configure_socket(&stream);
                Ok(stream.into())
            }
        }
    }
}

/// What the pooler needs to log in to a server as one user.
#[derive(Clone, Debug)]
pub struct LoginInfo {
    /// Role name.
    pub user: String,
    /// Database name.
    pub database: String,
    /// The user's secret from the password file, if any.
    pub secret: Option<UserSecret>,
    /// The user's SCRAM ClientKey, learned from a client that proved the
    /// password; lets the pooler log in with SCRAM when the password file has
    /// only a SCRAM verifier for the user.
    pub client_key: Option<[u8; 32]>,
}

/// The SCRAM client in use towards a server.
enum Scram {
    /// From the plaintext password.
    Password(ScramSha256),
    /// From a client's ClientKey and the stored verifier.
    Key(ScramKeyClient),
}

/// Reported parameters (name, value), shared between clients.
pub(crate) type SharedParams = Arc<Vec<(String, String)>>;

/// An authenticated server connection, idle at ReadyForQuery or lent to a client.
#[derive(Debug)]
pub struct ServerConn {
    pub(crate) stream: crate::transport::Stream,
    /// Bytes read from the server and not yet consumed.
    pub(crate) buf: BytesMut,
    /// Run-time parameters as the server last reported them.
    params: Vec<(String, String)>,
    /// A client's parameter set `params` was found equal to, kept while
    /// `params` stays as it is: the check before each lending
    /// ([`crate::params::has_settings`]) is then a pointer comparison, not
    /// a comparison of every name and value. Holding the set keeps its
    /// address from being reused by another.
    pub(crate) params_match: Option<SharedParams>,
    key: BackendKeyData,
    addr: Arc<ServerAddr>,
    created: Instant,
    pub(crate) idle_since: Instant,
    max_message: usize,
    /// Named statements the pooler prepared here (transaction mode).
    pub(crate) statements: crate::prepared::ServerStatements,
    /// Unreported parameters a client changed here, with their values
    /// (transaction mode carries them between connections).
    pub(crate) extra: Vec<(String, String)>,
    /// Parameters as reported when the connection was opened: the server's
    /// defaults for this user and database.
    pub(crate) initial_params: Vec<(String, String)>,
    /// Lets the pooler cut this connection from outside the task using it
    /// (its node was marked down).
    lifeline: Option<Lifeline>,
}

/// Handles on the open server connections of one node, so that all of them
/// can be cut at once from outside the tasks that use them: when the node is
/// marked down, a request waiting on a hung server gets an error at once
/// instead of waiting for as long as the server hangs. Each handle is a
/// duplicate of the socket; shutting it down ends the connection for its
/// user too (a read sees the end of the stream).
#[derive(Debug, Default)]
pub(crate) struct Lifelines {
    next: std::sync::atomic::AtomicU64,
    open: std::sync::Mutex<std::collections::HashMap<u64, socket2::Socket>>,
}

impl Lifelines {
    /// Registers `stream`; the handle unregisters it when dropped. `None`
    /// when the socket cannot be duplicated (out of descriptors): the
    /// connection works, it just cannot be cut from outside.
    fn hold(self: &Arc<Self>, stream: &crate::transport::Stream) -> Option<Lifeline> {
        let dup = socket2::SockRef::from(stream).try_clone().ok()?;
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open.lock().ok()?.insert(id, dup);
        Some(Lifeline { lines: self.clone(), id })
    }

    /// Shuts down every registered connection; how many there were.
    pub(crate) fn cut_all(&self) -> usize {
        let Ok(open) = self.open.lock() else { return 0 };
        for s in open.values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        open.len()
    }
}

/// One connection's entry in [`Lifelines`].
#[derive(Debug)]
struct Lifeline {
    lines: Arc<Lifelines>,
    id: u64,
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if let Ok(mut open) = self.lines.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl ServerConn {
    /// Opens a TCP connection, sends the startup packet, authenticates, and
    /// reads up to the first ReadyForQuery.
    pub async fn connect(
        addr: &ServerAddr,
        login: &LoginInfo,
        timeout: Duration,
        max_message: usize,
    ) -> Result<ServerConn, Error> {
        match tokio::time::timeout(timeout, Self::connect_inner(addr, login, max_message)).await {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectTimeout { addr: addr.to_string() }),
        }
    }

    async fn connect_inner(addr: &ServerAddr, login: &LoginInfo, max_message: usize) -> Result<ServerConn, Error> {
        // A server that drops the connection before the login is over (it is
        // shutting down or dying) is as unreachable as one that refuses it:
        // nothing of a client's was sent, so the request may wait for
        // another primary instead of failing.
        Self::start_up(addr, login, max_message).await.map_err(|e| match e {
            Error::ServerIo(source) => Error::Connect { addr: addr.to_string(), source },
            Error::ServerClosed => Error::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed during login"),
            },
            e => e,
        })
    }

    async fn start_up(addr: &ServerAddr, login: &LoginInfo, max_message: usize) -> Result<ServerConn, Error> {
        let mut stream = addr.open().await?;
        let channel_binding = match &addr.tls {
            Some(tls) => negotiate_tls(&mut stream, addr, tls).await?,
            None => None,
        };
        let now = Instant::now();
        let mut conn = ServerConn {
            stream,
            buf: BytesMut::new(),
            params: Vec::new(),
            params_match: None,
            key: BackendKeyData { pid: 0, secret: 0 },
            addr: Arc::new(addr.clone()),
            created: now,
            idle_since: now,
            max_message,
            statements: Default::default(),
            extra: Vec::new(),
            initial_params: Vec::new(),
            lifeline: None,
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", login.user.as_str()), ("database", login.database.as_str())], &mut out)
            .map_err(|e| Error::ServerAuth(format!("cannot encode startup packet: {e}")))?;
        conn.write(&out).await?;
        conn.authenticate(login, channel_binding).await?;
        // After AuthenticationOk: ParameterStatus, BackendKeyData, ReadyForQuery.
        loop {
            let frame = conn.read_frame().await?;
            match frame.tag() {
                tag::PARAMETER_STATUS => conn.note_parameter(frame.body())?,
                tag::BACKEND_KEY_DATA => {
                    conn.key = BackendKeyData::parse(frame.body()).map_err(Error::ServerProtocol)?
                }
                tag::READY_FOR_QUERY => {
                    conn.initial_params = conn.params.clone();
                    return Ok(conn);
                }
                tag::ERROR_RESPONSE => return Err(Error::Server(frame.into_bytes())),
                tag::NOTICE_RESPONSE | b'v' => {}
                t => {
                    return Err(Error::ServerProtocol(ProtocolError::Unexpected {
                        tag: t,
                        context: "during server startup",
                    }))
                }
            }
        }
    }

    /// Answers the server's authentication requests until AuthenticationOk.
    /// `channel_binding`: the `tls-server-end-point` data of a TLS
    /// connection, for SCRAM-SHA-256-PLUS when the server offers it.
    async fn authenticate(&mut self, login: &LoginInfo, channel_binding: Option<Vec<u8>>) -> Result<(), Error> {
        let mut scram: Option<Scram> = None;
        let mut out = BytesMut::new();
        let no_password = |method: &str| {
            Error::ServerAuth(format!(
                "server asks for {method} authentication for user \"{}\" and the password file has no usable password for that user",
                login.user
            ))
        };
        loop {
            let frame = self.read_frame().await?;
            match frame.tag() {
                tag::AUTHENTICATION => {}
                tag::ERROR_RESPONSE => return Err(Error::Server(frame.into_bytes())),
                tag::NOTICE_RESPONSE => continue,
                t => {
                    return Err(Error::ServerProtocol(ProtocolError::Unexpected {
                        tag: t,
                        context: "during server authentication",
                    }))
                }
            }
            out.clear();
            let enc = |e: std::io::Error| Error::ServerAuth(format!("cannot encode message: {e}"));
            match AuthRequest::parse(frame.body()).map_err(Error::ServerProtocol)? {
                AuthRequest::Ok => return Ok(()),
                AuthRequest::Cleartext => {
                    let pw = login
                        .secret
                        .as_ref()
                        .and_then(|s| s.plaintext())
                        .ok_or_else(|| no_password("cleartext password"))?;
                    frontend::password_message(pw.as_bytes(), &mut out).map_err(enc)?;
                }
                AuthRequest::Md5 { salt } => {
                    let hashed = login
                        .secret
                        .as_ref()
                        .and_then(|s| s.md5_response(&login.user, salt))
                        .ok_or_else(|| no_password("md5"))?;
                    frontend::password_message(hashed.as_bytes(), &mut out).map_err(enc)?;
                }
                AuthRequest::Sasl(list) => {
                    let plus = AuthRequest::sasl_mechanisms(list).any(|m| m == b"SCRAM-SHA-256-PLUS");
                    if !plus && !AuthRequest::sasl_mechanisms(list).any(|m| m == b"SCRAM-SHA-256") {
                        return Err(Error::ServerAuth("server offers no SASL mechanism the pooler supports".into()));
                    }
                    // Bound to the TLS channel whenever both sides can: a
                    // man in the middle cannot relay such an exchange.
                    let binding = channel_binding.clone().filter(|_| plus);
                    let mechanism = if binding.is_some() { "SCRAM-SHA-256-PLUS" } else { "SCRAM-SHA-256" };
                    let secret = login.secret.as_ref();
                    let s = match (secret.and_then(|s| s.plaintext()), secret.and_then(|s| s.scram()), login.client_key)
                    {
                        (Some(pw), _, _) => {
                            // postgres-protocol's names: "unrequested" sends
                            // `y` (the client could bind, the server did not
                            // offer it), "unsupported" sends `n`.
                            let cb = match binding {
                                Some(data) => ChannelBinding::tls_server_end_point(data),
                                None if channel_binding.is_some() && !plus => ChannelBinding::unrequested(),
                                None => ChannelBinding::unsupported(),
                            };
                            Scram::Password(ScramSha256::new(pw.as_bytes(), cb))
                        }
                        (None, Some(verifier), Some(key)) => Scram::Key(ScramKeyClient::new(key, verifier, binding)),
                        _ => return Err(no_password("SCRAM-SHA-256")),
                    };
                    let first = match &s {
                        Scram::Password(c) => c.message().to_vec(),
                        Scram::Key(c) => c.client_first(),
                    };
                    frontend::sasl_initial_response(mechanism, &first, &mut out).map_err(enc)?;
                    scram = Some(s);
                }
                AuthRequest::SaslContinue(data) => {
                    let s = scram
                        .as_mut()
                        .ok_or(Error::ServerProtocol(ProtocolError::Malformed("SASL continue without SASL start")))?;
                    let fail = |e: &dyn std::fmt::Display| Error::ServerAuth(format!("SCRAM exchange failed: {e}"));
                    let reply = match s {
                        Scram::Password(c) => {
                            c.update(data).map_err(|e| fail(&e))?;
                            // update() succeeded, so the client-final message is ready.
                            c.message().to_vec()
                        }
                        Scram::Key(c) => c.server_first(data).map_err(|e| fail(&e))?,
                    };
                    frontend::sasl_response(&reply, &mut out).map_err(enc)?;
                }
                AuthRequest::SaslFinal(data) => {
                    let s = scram
                        .as_mut()
                        .ok_or(Error::ServerProtocol(ProtocolError::Malformed("SASL final without SASL start")))?;
                    let checked = match s {
                        Scram::Password(c) => c.finish(data).map_err(|e| e.to_string()),
                        Scram::Key(c) => c.server_final(data).map_err(|e| e.to_string()),
                    };
                    checked.map_err(|e| Error::ServerAuth(format!("server's SCRAM signature is invalid: {e}")))?;
                    continue;
                }
                AuthRequest::Unsupported(code) => {
                    return Err(Error::ServerAuth(format!(
                        "server asks for an authentication method the pooler does not support (code {code})"
                    )))
                }
            }
            self.write(&out).await?;
        }
    }

    /// Reads one whole frame (for the pooler's own short exchanges only).
    pub(crate) async fn read_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(f) = split_frame(&mut self.buf, self.max_message).map_err(Error::ServerProtocol)? {
                return Ok(f);
            }
            self.buf.reserve(4096);
            let n = self.stream.read_some(&mut self.buf).await.map_err(Error::ServerIo)?;
            if n == 0 {
                return Err(Error::ServerClosed);
            }
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await.map_err(Error::ServerIo)
    }

    /// Runs one statement with the simple protocol and reads its whole answer.
    /// ParameterStatus updates are recorded; other output is dropped. An
    /// ErrorResponse is returned as [`Error::Server`] once ReadyForQuery arrives.
    pub async fn simple_query(&mut self, sql: &str) -> Result<TransactionStatus, Error> {
        let mut out = BytesMut::new();
        crate::protocol::write::query(&mut out, sql);
        self.write(&out).await?;
        let mut error: Option<Bytes> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag() {
                tag::PARAMETER_STATUS => self.note_parameter(frame.body())?,
                tag::ERROR_RESPONSE if error.is_none() => error = Some(frame.into_bytes()),
                tag::READY_FOR_QUERY => {
                    let status = TransactionStatus::parse(frame.body()).map_err(Error::ServerProtocol)?;
                    return match error {
                        Some(e) => Err(Error::Server(e)),
                        None => Ok(status),
                    };
                }
                _ => {}
            }
        }
    }

    /// Runs a one-row query with the simple protocol and returns its text
    /// columns (`None` for NULL). No row: an empty list.
    pub async fn query_row(&mut self, sql: &str) -> Result<Vec<Option<String>>, Error> {
        let mut out = BytesMut::new();
        crate::protocol::write::query(&mut out, sql);
        self.write(&out).await?;
        let mut error: Option<Bytes> = None;
        let mut row = Vec::new();
        loop {
            let frame = self.read_frame().await?;
            match frame.tag() {
                tag::PARAMETER_STATUS => self.note_parameter(frame.body())?,
                tag::ERROR_RESPONSE if error.is_none() => error = Some(frame.into_bytes()),
                b'D' if row.is_empty() => row = decode_data_row(frame.body()).map_err(Error::ServerProtocol)?,
                tag::READY_FOR_QUERY => {
                    return match error {
                        Some(e) => Err(Error::Server(e)),
                        None => Ok(row),
                    };
                }
                _ => {}
            }
        }
    }

    /// Records a ParameterStatus body.
    pub(crate) fn note_parameter(&mut self, body: &[u8]) -> Result<(), Error> {
        let p = ParameterStatus::parse(body).map_err(Error::ServerProtocol)?;
        note_param(&mut self.params, p);
        self.params_match = None;
        Ok(())
    }

    /// The read buffer, the prepared statements and the parameter list
    /// (with its match, to forget when the list changes), borrowed apart:
    /// the relay core's view of the connection.
    #[allow(clippy::type_complexity)]
    pub(crate) fn protocol_parts(
        &mut self,
    ) -> (&mut BytesMut, &mut crate::prepared::ServerStatements, (&mut Vec<(String, String)>, &mut Option<SharedParams>))
    {
        (&mut self.buf, &mut self.statements, (&mut self.params, &mut self.params_match))
    }

    /// The read buffer's capacity (what it holds in memory).
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the read buffer's memory when nothing is buffered (idle in the pool).
    pub(crate) fn release_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            // Kept for the next read on this thread rather than freed.
            crate::buffers::recycle(std::mem::take(&mut self.buf));
        }
    }

    /// Run-time parameters as the server last reported them.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// One reported parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The server's cancel key for this connection.
    pub fn key(&self) -> BackendKeyData {
        self.key
    }

    /// The address, shared (for cancel targets).
    pub fn addr_shared(&self) -> Arc<ServerAddr> {
        self.addr.clone()
    }

    /// When the connection was opened.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// True when nothing unexpected is waiting on the socket and it is not
    /// closed: a server that was terminated while idle has sent an error and
    /// closed, which this sees without blocking.
    pub fn is_alive(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream.is_quiet()
    }

    /// Sends Terminate and closes, without waiting long.
    pub async fn close(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_millis(500), self.stream.write_all(&out)).await;
    }
}

/// Decodes a DataRow body into text columns.
pub(crate) fn decode_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let bad = ProtocolError::Malformed("DataRow");
    let count = u16::from_be_bytes([*body.first().ok_or(bad.clone())?, *body.get(1).ok_or(bad.clone())?]);
    let mut rest = &body[2..];
    let mut cols = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = rest.get(..4).ok_or(bad.clone())?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        if len < 0 {
            cols.push(None);
            continue;
        }
        let v = rest.get(..len as usize).ok_or(bad.clone())?;
        cols.push(Some(String::from_utf8_lossy(v).into_owned()));
        rest = &rest[len as usize..];
    }
    Ok(cols)
}

/// Records a reported parameter value in `params`.
pub(crate) fn note_param(params: &mut Vec<(String, String)>, p: ParameterStatus<'_>) {
    match params.iter_mut().find(|(k, _)| k == p.name) {
        Some((_, v)) => {
            if v != p.value {
                *v = p.value.to_owned();
            }
        }
        None => params.push((p.name.to_owned(), p.value.to_owned())),
    }
}

/// An upgrade's handover of idle connections (`crate::upgrade`).
impl ServerConn {
    /// The socket to hand over and its kind (`tcp`, `unix`): `None` for a
    /// TLS connection (its session state cannot travel) or one with bytes
    /// waiting (not at rest at ReadyForQuery).
    pub(crate) fn handover_socket(&self) -> Option<(std::os::fd::BorrowedFd<'_>, &'static str)> {
        if !self.is_alive() {
            return None;
        }
        self.stream.plain_socket()
    }

    /// A connection a predecessor process handed over, idle at
    /// ReadyForQuery: `initial_params` are what the server reported at its
    /// login, which a `DISCARD ALL` brings it back to.
    pub(crate) fn adopted(
        stream: crate::transport::Stream,
        addr: ServerAddr,
        key: BackendKeyData,
        initial_params: Vec<(String, String)>,
        created: Instant,
        max_message: usize,
    ) -> ServerConn {
        ServerConn {
            stream,
            buf: BytesMut::new(),
            params: initial_params.clone(),
            params_match: None,
            key,
            addr: Arc::new(addr),
            created,
            idle_since: Instant::now(),
            max_message,
            statements: Default::default(),
            extra: Vec::new(),
            initial_params,
            lifeline: None,
        }
    }
}

/// TCP_NODELAY and keepalive on a connection.
impl ServerConn {
    /// Registers the connection with its node's `lifelines` and sets
    /// TCP_USER_TIMEOUT (zero: the kernel's default).
    pub(crate) fn hold_lifeline(&mut self, lifelines: &Arc<Lifelines>, tcp_user_timeout: Duration) {
        if !tcp_user_timeout.is_zero() {
            let _ = socket2::SockRef::from(&self.stream).set_tcp_user_timeout(Some(tcp_user_timeout));
        }
        self.lifeline = lifelines.hold(&self.stream);
    }
}

pub(crate) fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60)).with_interval(Duration::from_secs(10));
    let _ = sock.set_tcp_keepalive(&ka);
}

/// Asks the server for TLS (SSLRequest) and runs the handshake when it
/// agrees; a server that declines is used in plain text unless the mode
/// requires TLS. Returns the `tls-server-end-point` channel binding data of
/// the server's certificate, when there is a TLS session and the
/// certificate's signature defines one.
async fn negotiate_tls(
    stream: &mut crate::transport::Stream,
    addr: &ServerAddr,
    tls: &crate::tls::ServerTls,
) -> Result<Option<Vec<u8>>, Error> {
    let refused = |why: String| Error::ServerAuth(format!("TLS with {addr} (sslmode {:?}): {why}", tls.mode));
    let upstream = tls.upstream.load();
    let Some(config) = upstream.for_mode(tls.mode).cloned() else {
        if !tls.mode.requires() {
            return Ok(None);
        }
        return Err(refused("no usable TLS settings (see server_tls.ca_file and the log at start)".into()));
    };
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    stream.write_all(&out).await.map_err(Error::ServerIo)?;
    // Exactly one byte: anything the server sends after it is either the
    // TLS handshake (after 'S') or an error (after 'E').
    let mut answer = [0u8; 1];
    loop {
        stream.readable().await.map_err(Error::ServerIo)?;
        match stream.read_exact_now(&mut answer) {
            Ok(true) => break,
            Ok(false) => continue,
            Err(e) => return Err(Error::ServerIo(e)),
        }
    }
    match answer[0] {
        b'S' => {}
        b'N' if !tls.mode.requires() => return Ok(None),
        b'N' => return Err(refused("the server does not accept TLS connections".into())),
        // A server too old for SSLRequest answers with an error message.
        b'E' => return Err(refused("the server answered SSLRequest with an error".into())),
        // Not PostgreSQL (an HTTP server answering "H..."): reported as the
        // protocol violation it is, as a startup answer would be.
        other => {
            return Err(Error::ServerProtocol(ProtocolError::Unexpected {
                tag: other,
                context: "in answer to SSLRequest",
            }))
        }
    }
    let name = crate::tls::server_name(&addr.host)
        .ok_or_else(|| refused(format!("{:?} is not a valid server name", addr.host)))?;
    stream.connect_tls(config, name).map_err(Error::ServerIo)?;
    stream.handshake().await.map_err(|e| refused(e.to_string()))?;
    Ok(stream.peer_certificate().and_then(crate::certificate::end_point))
}

/// Sends a CancelRequest for `key` to the server at `addr` and waits for the
/// server to close the connection (which is how it acknowledges).
pub async fn send_cancel(addr: &ServerAddr, key: BackendKeyData, timeout: Duration) -> Result<(), Error> {
    let work = async {
        // In plain text whatever the node's sslmode: PostgreSQL reads a
        // CancelRequest before any hba rule applies, and answers none.
        let mut stream = addr.open().await?;
        let mut out = BytesMut::new();
        frontend::cancel_request(key.pid, key.secret, &mut out);
        stream.write_all(&out).await.map_err(Error::ServerIo)?;
        let mut sink = BytesMut::new();
        while stream.read_some(&mut sink).await.map_err(Error::ServerIo)? > 0 {
            sink.clear();
        }
        Ok(())
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(Error::ConnectTimeout { addr: addr.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that takes the connection and drops it before the login is
    /// over (shutting down, dying) counts as unreachable, like one that
    /// refuses: nothing of a client's was sent, the request may go elsewhere.
    #[tokio::test]
    async fn a_server_closing_during_login_counts_as_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let addr = ServerAddr::plain("127.0.0.1", port);
        let login = LoginInfo { user: "u".into(), database: "d".into(), secret: None, client_key: None };
        let e = ServerConn::connect(&addr, &login, Duration::from_secs(5), 1 << 20).await.unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
        assert!(e.to_string().contains("could not connect"), "{e}");
    }

    /// The check before lending is a pointer comparison once a client's
    /// set was found equal, and a full one again once the server reports a
    /// change (or for another set with other values).
    #[tokio::test]
    async fn a_parameter_match_holds_until_the_server_reports_a_change() {
        use crate::params::has_settings;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let _far = listener.accept().await.unwrap();
        let initial = vec![("DateStyle".to_owned(), "ISO, MDY".to_owned()), ("TimeZone".to_owned(), "UTC".to_owned())];
        let addr = ServerAddr::plain("127.0.0.1", 1);
        let key = BackendKeyData { pid: 1, secret: 2 };
        let mut conn = ServerConn::adopted(near.into(), addr, key, initial.clone(), Instant::now(), 1 << 20);
        let client = Arc::new(initial.clone());
        assert!(conn.params_match.is_none());
        assert!(has_settings(&mut conn, &client, &[]));
        assert!(conn.params_match.as_ref().is_some_and(|m| Arc::ptr_eq(m, &client)), "remembered");
        assert!(has_settings(&mut conn, &client, &[]));
        // Unreported settings are compared as they are.
        assert!(!has_settings(&mut conn, &client, &[("work_mem".into(), "1MB".into())]));
        // Another client's set with another value is not taken for a match.
        let other = Arc::new(vec![initial[0].clone(), ("TimeZone".to_owned(), "Europe/Paris".to_owned())]);
        assert!(!has_settings(&mut conn, &other, &[]));
        // The server reports a change (a client's SET): the match is gone,
        // and the old set no longer matches.
        conn.note_parameter(b"TimeZone\0Europe/Paris\0").unwrap();
        assert!(conn.params_match.is_none());
        assert!(!has_settings(&mut conn, &client, &[]));
        assert!(has_settings(&mut conn, &other, &[]));
    }
}
