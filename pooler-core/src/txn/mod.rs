//! Transaction and statement pooling: the relay that lends a client a server
//! connection only while it has work in flight, and carries what the client
//! believes about its session (prepared statements, parameters) from one
//! server connection to the next.
//!
//! One loop per client moves bytes both ways without blocking on either side:
//! each direction has an output buffer, and a side is read only while the
//! buffer towards the other side is below a high-water mark. Every message
//! sent to the server that expects an answer is recorded in a queue, in
//! order; answers are matched against it, which tells when the connection is
//! quiet (and may go back to the pool at ReadyForQuery with status idle), and
//! which answers belong to messages the pooler added itself (hidden from the
//! client) or which answers the pooler gives in the server's place.

pub(crate) mod facts;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backend::{self, LoginInfo, ServerConn};
use crate::buffers::{recycled, release_memory, READ_CHUNK};
use crate::cancel::{CancelHandle, CancelTarget};
use crate::classify::Classification;
use crate::config::PoolMode;
use crate::error::Error;
use crate::params::{param_statements, restore_sql, startup_settings};
use crate::pool::PoolKey;
use crate::pool::{Lease, Pool, Reset};
use crate::prepared::{ClientStatements, StatementDef};
use crate::protocol::messages::{is_frontend_message, split_cstr, tag, Bind, ParameterStatus, Target};
use crate::protocol::write::{self as w, Severity};
use crate::protocol::{peek_header, ProtocolError, TransactionStatus, HEADER_LEN};
use crate::runtime::{Phase, Shared};

/// SQLSTATE of "cannot execute ... in a read-only transaction".
const READ_ONLY_TRANSACTION: &str = "25006";

/// Past this many bytes waiting for one side, the other side is not read.
const HIGH_WATER: usize = 256 * 1024;
/// Rows and COPY data longer than this stream through instead of being
/// gathered whole.
const STREAM_OVER: usize = 8 * 1024;

/// Parameter names and values.
pub(crate) type Settings = Vec<(String, String)>;

/// The kind of answer a message sent to the server ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Parse,
    Bind,
    Describe,
    Close,
    Execute,
    /// Sync, Query or FunctionCall: ends with ReadyForQuery.
    Ready,
}

/// What the pooler answers in the server's place when the entry is reached.
#[derive(Debug)]
enum Synthetic {
    ParseComplete,
    CloseComplete,
    /// `DEALLOCATE name` of a statement that lives only in the pooler's map.
    Deallocate,
    /// An error (then the client's messages up to Sync are skipped).
    Error(Bytes),
    /// An error answering a simple Query: the error, then ReadyForQuery.
    QueryError(Bytes),
}

/// A Parse in flight: the client's name for it (none when the pooler sent it
/// itself) and the statement.
type ParseUndo = (Option<Box<[u8]>>, Arc<StatementDef>);

/// One message in flight to the server, or an answer the pooler will give.
#[derive(Debug)]
struct Pending {
    kind: Kind,
    /// The answer belongs to the pooler's own message: not forwarded.
    hidden: bool,
    synthetic: Option<Synthetic>,
    /// A Parse of a named statement: if it fails or is skipped, the client's
    /// name (if any) and the server's cache forget it.
    parse: Option<ParseUndo>,
}

impl Pending {
    fn plain(kind: Kind) -> Self {
        Pending { kind, hidden: false, synthetic: None, parse: None }
    }
}

/// Why a session ended (for the log).
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent Terminate.
    Terminated,
    /// The client closed its socket.
    ClientClosed,
    /// The pooler is shutting down and the client was idle.
    Shutdown,
    /// The shutdown timeout ran out.
    ForcedShutdown,
    /// The server ended the session with a FATAL (or PANIC) ErrorResponse,
    /// whose body this is, and closed: the client got it as the server sent
    /// it, and nothing after it.
    ServerFatal(Bytes),
    /// Something failed.
    Failed(Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Terminated => f.write_str("terminate"),
            End::ClientClosed => f.write_str("client closed the connection"),
            End::Shutdown => f.write_str("pooler shutdown"),
            End::ForcedShutdown => f.write_str("pooler shutdown timeout"),
            End::ServerFatal(body) => {
                let e = crate::protocol::messages::ErrorFields::new(body);
                let (severity, code) = (e.severity().unwrap_or("FATAL"), e.code().unwrap_or("?????"));
                write!(f, "the server ended the session: {severity} {code}: {}", e.message().unwrap_or("(no message)"))
            }
            End::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Outcome of a transaction-mode session, for `run_session`.
pub(crate) struct Outcome {
    pub(crate) end: End,
    /// The client stream stands between messages: an ErrorResponse may be sent.
    pub(crate) client_can_take_error: bool,
}

/// The state of one client in transaction or statement mode.
pub(crate) struct Relay<'a> {
    shared: &'a Shared,
    pool: Arc<Pool>,
    mode: PoolMode,
    cancel: &'a CancelHandle,
    stream: &'a TcpStream,
    cbuf: &'a mut BytesMut,
    cout: &'a mut BytesMut,
    lease: Option<Lease>,
    sout: BytesMut,
    queue: VecDeque<Pending>,
    statements: ClientStatements,
    /// Reported parameters as the client was last told them.
    /// Shared with other clients whose settings are the same (copied on change).
    params: crate::runtime::SharedParams,
    /// Unreported parameters the client changed, with their values.
    extra: Vec<(String, String)>,
    /// Unreported parameters changed in the current transaction (values to read).
    dirty: Vec<String>,
    /// Status of the last ReadyForQuery (or the pooler's idea of it).
    status: TransactionStatus,
    /// Why the server connection stays with this client for good.
    pinned: Option<&'static str>,
    /// Client messages are dropped until its next Sync (after a synthetic error).
    client_skip: bool,
    /// The server reported an error and is skipping to the next Sync.
    server_skip: bool,
    /// Bytes of a streaming CopyData still to come from the client.
    up_remaining: usize,
    /// Bytes of a streaming row or CopyData still to come from the server.
    down_remaining: usize,
    last_client_activity: Instant,
    /// Last bytes from the server, or the request that made it owe an
    /// answer (kept only with `pool.response_timeout`).
    last_server_activity: Instant,
    max_message: usize,
    /// Statement mode saw a transaction block open: the session ends.
    refused_transaction: bool,
    /// Extended-protocol messages went to the server since the last Sync: the
    /// server holds an implicit transaction (or skips to Sync after an error),
    /// so the connection cannot change hands yet.
    needs_sync: bool,
    /// Node of the lent connection.
    node: usize,
    /// Pools of the nodes this client has used, by node.
    pools: Vec<Option<Arc<Pool>>>,
    /// How to log in to any node as this client's user.
    login: LoginInfo,
    /// The lent connection has run something that may write.
    wrote: bool,
    /// The session's last committed write is at this WAL position (0: none).
    write_lsn: u64,
    /// The next request must not run on the lent (read) connection: give it
    /// back and route again.
    reroute: bool,
    /// The next client message starts a new request.
    at_request_start: bool,
    /// Classification of the unnamed statement last parsed.
    unnamed_class: Option<Classification>,
    /// Statements seen before that do nothing to session state (no pinning,
    /// no SET, no DEALLOCATE, no tracked parameter...), with their class: a
    /// repeated one is not read again. A few entries, replaced in turn.
    plain: Vec<(Box<[u8]>, Classification)>,
    plain_next: usize,
    /// A client timeout is configured (else the last activity is not timed).
    timed: bool,
    /// Where each client message is looked at (reused).
    scratch: Vec<u8>,
    /// A write made the session stop balancing: every request, or (after a
    /// write inside a transaction block) every later transaction block.
    sticky_all: bool,
    sticky_transactions: bool,
    /// The lent connection has been inside a transaction block.
    in_block: bool,
    /// Session pool mode with load balancing: connections are not given back
    /// between requests but parked here, by node, for the session's life.
    session_mode: bool,
    parked: Vec<Option<Lease>>,
    /// Session mode: the read node chosen for the session.
    session_read_node: Option<usize>,
    /// The body of the last message relayed from the server, when it was a
    /// FATAL (or PANIC) ErrorResponse: the server closes after it.
    last_words: Option<Box<[u8]>>,
}

impl<'a> Relay<'a> {
    /// Starts with the connection used for the client's login.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: &'a Shared,
        pool: Arc<Pool>,
        mode: PoolMode,
        cancel: &'a CancelHandle,
        (stream, cbuf, cout): (&'a TcpStream, &'a mut BytesMut, &'a mut BytesMut),
        (lease, node): (Option<Lease>, usize),
        login: LoginInfo,
        (params, extra): (Settings, Settings),
    ) -> Self {
        let mut pools = vec![None; shared.nodes.len().max(1)];
        if let Some(slot) = pools.get_mut(node) {
            *slot = Some(pool.clone());
        }
        if lease.is_some() {
            shared.router.begin(node, false);
        }
        let parked = (0..pools.len()).map(|_| None).collect();
        let params = shared.param_sets.share(params);
        Relay {
            session_mode: mode == PoolMode::Session,
            parked,
            session_read_node: None,
            node,
            pools,
            login,
            wrote: false,
            write_lsn: 0,
            reroute: false,
            at_request_start: true,
            unnamed_class: None,
            plain: Vec::new(),
            plain_next: 0,
            scratch: Vec::new(),
            timed: !pool.settings().client_idle_timeout.is_zero()
                || !pool.settings().idle_transaction_timeout.is_zero()
                || !pool.settings().response_timeout.is_zero(),
            sticky_all: false,
            sticky_transactions: false,
            in_block: false,
            shared,
            pool,
            mode,
            cancel,
            stream,
            cbuf,
            cout,
            lease,
            sout: BytesMut::new(),
            queue: VecDeque::new(),
            statements: ClientStatements::default(),
            params,
            extra,
            dirty: Vec::new(),
            status: TransactionStatus::Idle,
            pinned: None,
            client_skip: false,
            server_skip: false,
            up_remaining: 0,
            down_remaining: 0,
            last_client_activity: Instant::now(),
            last_server_activity: Instant::now(),
            max_message: shared.config.server.max_message_size,
            refused_transaction: false,
            needs_sync: false,
            last_words: None,
        }
    }

    /// Relays until the client leaves; the server connection, if one is still
    /// lent, is given back (or closed) before this returns.
    pub(crate) async fn run(mut self, phase: &watch::Receiver<Phase>) -> Outcome {
        let mut end = self.run_loop(phase).await;
        if matches!(&end, End::Failed(Error::ServerIo(_) | Error::ServerClosed)) && self.lease.is_some() {
            Box::pin(self.relay_last_words()).await;
        }
        if !self.cout.is_empty() && !matches!(&end, End::Failed(Error::ClientIo(_)) | End::ClientClosed) {
            // What the client was sent before the end still reaches it.
            let _ = tokio::time::timeout(Duration::from_secs(1), flush_all(self.stream, self.cout)).await;
        }
        let client_can_take_error = self.down_remaining == 0 && self.cout.is_empty();
        if let (End::Failed(e @ (Error::ServerIo(_) | Error::ServerClosed)), true) = (&end, self.lease.is_some()) {
            self.shared.backend_failed(self.node, e);
            if let (Some(words), true) = (self.last_words.take(), client_can_take_error) {
                // The server said why (FATAL) and closed: that reached the
                // client, as on a direct connection; nothing is added.
                end = End::ServerFatal(Bytes::from(words));
            }
        }
        if let Some(lease) = self.lease.take() {
            let clean = self.queue.is_empty()
                && !self.needs_sync
                && self.sout.is_empty()
                && self.up_remaining == 0
                && self.down_remaining == 0
                && lease.conn_ref().buf.is_empty()
                && !matches!(&end, End::Failed(e) if e.side() == crate::error::Side::Server);
            self.shared.router.end(self.node);
            Box::pin(self.give_back(lease, self.node, self.status, clean, true)).await;
        }
        for node in 0..self.parked.len() {
            if let Some(lease) = self.parked[node].take() {
                Box::pin(self.give_back(lease, node, TransactionStatus::Idle, true, true)).await;
            }
        }
        Outcome { end, client_can_take_error }
    }

    async fn run_loop(&mut self, phase: &watch::Receiver<Phase>) -> End {
        let mut force_rx = phase.clone();
        let mut drain_rx = phase.clone();
        let mut force = std::pin::pin!(force_rx.wait_for(|p| *p == Phase::Force));
        let mut drain = std::pin::pin!(drain_rx.wait_for(|p| *p != Phase::Running));
        let mut draining = false;
        loop {
            // A client message waits and no server connection is lent: take one.
            if self.lease.is_none() && !self.cbuf.is_empty() {
                if let Err(e) = self.answer_locally() {
                    return End::Failed(e);
                }
                if self.cbuf.first() == Some(&tag::TERMINATE) {
                    return End::Terminated;
                }
                if let Some(e) = self.refused_message() {
                    return End::Failed(e);
                }
            }
            if self.lease.is_none() && !self.cbuf.is_empty() && !self.waiting_for_more() {
                if draining {
                    return End::Shutdown;
                }
                // The usual case needs no await: a free idle connection on the
                // primary, already in the client's settings.
                let attach = if self.attach_now() {
                    Ok(())
                } else {
                    tokio::select! {
                    r = Box::pin(self.attach()) => r,
                    _ = &mut force => return End::ForcedShutdown,
                    }
                };
                if let Err(e) = attach {
                    return End::Failed(e);
                }
            }
            if self.lease.is_some() && self.sout.len() < HIGH_WATER {
                if self.timed && self.queue.is_empty() {
                    // A request about to make the server owe an answer starts its clock.
                    self.last_server_activity = Instant::now();
                }
                match self.relay_client_messages() {
                    Ok(true) => {}
                    Ok(false) => return End::Terminated,
                    Err(e) => return End::Failed(e),
                }
            }
            if self.cout.len() < HIGH_WATER {
                if let Err(e) = self.relay_server_messages() {
                    return End::Failed(e);
                }
            }
            if let Err(e) = flush(self.stream, self.cout) {
                return End::Failed(Error::ClientIo(e));
            }
            if let Some(l) = &self.lease {
                if let Err(e) = flush(&l.conn_ref().stream, &mut self.sout) {
                    return End::Failed(Error::ServerIo(e));
                }
            }
            if let Some(e) = self.refused_message() {
                return End::Failed(e);
            }
            if self.refused_transaction {
                return End::Failed(Error::Refused {
                    code: "0A000",
                    message: "transaction blocks are not allowed in statement pooling mode".into(),
                });
            }
            if self.quiet()
                && self.status == TransactionStatus::Idle
                && self.pinned.is_none()
                && (self.cbuf.is_empty() || self.reroute)
            {
                // The usual release is inline; one that needs a round trip (or
                // parks the connection) is boxed, so an idle client's task
                // does not keep room for it.
                let r = if self.release_needs_round_trip() || self.session_mode {
                    Box::pin(self.release()).await
                } else {
                    self.release_plain().await
                };
                if let Err(e) = r {
                    return End::Failed(e);
                }
                if !self.cbuf.is_empty() {
                    // The connection went back with the next request already
                    // read (a pipelined request for another node): route it
                    // now. Waiting for the client would wait forever, as it
                    // has sent everything and waits for the answers.
                    continue;
                }
            }
            if draining && self.lease.is_none() && self.cbuf.is_empty() && self.cout.is_empty() {
                return End::Shutdown;
            }
            if self.lease.is_none() && self.cbuf.is_empty() {
                // Idle between transactions: hold no buffer memory.
                release_memory(self.cbuf);
                release_memory(self.cout);
                release_memory(&mut self.sout);
            }
            let deadline = self.deadline();
            let server = self.lease.as_ref().map(|l| &l.conn_ref().stream);
            let read_client = self.sout.len() < HIGH_WATER && self.cbuf.len() < HIGH_WATER;
            let read_server = server.is_some() && self.cout.len() < HIGH_WATER;
            let event = tokio::select! {
                biased;
                _ = &mut force => return End::ForcedShutdown,
                r = readable(server), if read_server => Event::ServerReadable(r),
                r = self.stream.readable(), if read_client => Event::ClientReadable(r),
                r = writable(server), if server.is_some() && !self.sout.is_empty() => Event::Writable(r, false),
                r = self.stream.writable(), if !self.cout.is_empty() => Event::Writable(r, true),
                _ = sleep_until(deadline), if deadline.is_some() => Event::Deadline,
                _ = &mut drain, if !draining => Event::Drain,
            };
            match event {
                Event::ServerReadable(r) => {
                    let res = match (r, self.lease.as_mut()) {
                        (Ok(()), Some(l)) => {
                            let conn = l.conn();
                            read_ready(&conn.stream, &mut conn.buf)
                        }
                        (Err(e), _) => Err(e),
                        (Ok(()), None) => Ok(None),
                    };
                    match res {
                        Ok(Some(0)) => return End::Failed(Error::ServerClosed),
                        Ok(Some(_)) if self.timed => self.last_server_activity = Instant::now(),
                        Ok(_) => {}
                        Err(e) => return End::Failed(Error::ServerIo(e)),
                    }
                }
                Event::ClientReadable(r) => match r.and_then(|()| read_ready(self.stream, self.cbuf)) {
                    Ok(Some(0)) => return End::ClientClosed,
                    Ok(Some(_)) if self.timed => self.last_client_activity = Instant::now(),
                    Ok(Some(_)) => {}
                    Ok(None) => {}
                    Err(e) => return End::Failed(Error::ClientIo(e)),
                },
                Event::Writable(Err(e), client) => {
                    return End::Failed(if client { Error::ClientIo(e) } else { Error::ServerIo(e) })
                }
                Event::Writable(Ok(()), _) => {}
                Event::Deadline => {
                    if let Some(e) = self.timed_out() {
                        return End::Failed(e);
                    }
                }
                Event::Drain => draining = true,
            }
        }
    }

    /// Answers, without a server connection, what needs none: Parse of a
    /// statement a server has accepted before, Close of the client's own
    /// statement, Flush, and Sync when nothing is in flight. A client that
    /// prepares synchronously while others hold every connection inside
    /// transactions (pgbench -M prepared does) is not stuck behind them.
    fn answer_locally(&mut self) -> Result<(), Error> {
        while let Some((t, total)) = peek_header(self.cbuf).map_err(Error::ClientProtocol)? {
            if self.cbuf.len() < total || total > self.max_message {
                return Ok(());
            }
            let body = &self.cbuf[HEADER_LEN..total];
            match t {
                tag::PARSE => {
                    let (name, rest) = split_cstr(body).map_err(Error::ClientProtocol)?;
                    let (sql, _) = split_cstr(rest).map_err(Error::ClientProtocol)?;
                    if name.is_empty() || self.statements.contains(name) || facts::is_reserved(name) {
                        return Ok(());
                    }
                    let Some(def) = self.shared.statements.find_valid(rest) else {
                        return Ok(());
                    };
                    let f = facts::analyze(sql);
                    if f.reserved_name || f.pin.is_some() || !f.parameters.is_empty() || f.drops_all_statements {
                        return Ok(());
                    }
                    self.statements.insert(name, def);
                    w::parse_complete(self.cout);
                }
                b'C' => {
                    let c = Target::parse(body).map_err(Error::ClientProtocol)?;
                    if c.kind != b'S' || c.name.is_empty() || self.statements.remove(c.name).is_none() {
                        return Ok(());
                    }
                    w::close_complete(self.cout);
                }
                b'H' => {}
                b'S' => w::ready_for_query(self.cout, TransactionStatus::Idle),
                _ => return Ok(()),
            }
            self.cbuf.advance(total);
        }
        Ok(())
    }

    /// The client's next message has a type PostgreSQL refuses after login
    /// (it is never forwarded): the error that ends the session, once what
    /// the client sent before it is answered. PostgreSQL would answer that
    /// first; what the server will not answer before a Sync (extended
    /// messages without one) is not waited for.
    fn refused_message(&self) -> Option<Error> {
        let t = *self.cbuf.first()?;
        if is_frontend_message(t) || self.up_remaining > 0 || (!self.queue.is_empty() && !self.needs_sync) {
            return None;
        }
        Some(Error::ClientProtocol(ProtocolError::InvalidMessageType { tag: t }))
    }

    /// After the server connection failed (closed, reset, a write refused):
    /// what the server sent before it went (the rest of a result, the FATAL
    /// saying why) still reaches the client, in order. Bounded by a second.
    async fn relay_last_words(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut closed = false;
        loop {
            let before = self.lease.as_ref().map_or(0, |l| l.conn_ref().buf.len());
            if self.relay_server_messages().is_err() {
                return;
            }
            let Some(l) = self.lease.as_mut() else { return };
            let progress = l.conn_ref().buf.len() < before;
            match tokio::time::timeout_at(deadline, flush_all(self.stream, self.cout)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            if progress {
                continue;
            }
            if closed {
                return;
            }
            let conn = l.conn();
            match tokio::time::timeout_at(deadline, conn.stream.readable()).await {
                Ok(Ok(())) => match read_ready(&conn.stream, &mut conn.buf) {
                    Ok(Some(0)) | Err(_) => closed = true,
                    Ok(_) => {}
                },
                _ => return,
            }
        }
    }

    /// The client buffer holds only the start of a message: wait for the
    /// rest before taking a connection, so a client that stops mid-message
    /// holds none (a message over the size limit is refused once attached).
    fn waiting_for_more(&self) -> bool {
        matches!(peek_header(self.cbuf), Ok(Some((_, total))) if self.cbuf.len() < total && total <= self.max_message)
            || (self.cbuf.len() < HEADER_LEN)
    }

    /// The client owes bytes: nothing is in flight, and the client buffer
    /// holds no whole message (empty, or the start of one).
    fn client_owes(&self) -> bool {
        self.queue.is_empty()
            && match peek_header(self.cbuf) {
                Ok(Some((_, total))) => self.cbuf.len() < total,
                Ok(None) => true,
                Err(_) => false,
            }
    }

    /// Nothing is in flight on the server connection and nothing half relayed.
    fn quiet(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.conn_ref().buf.is_empty())
            && self.queue.is_empty()
            && !self.needs_sync
            && self.sout.is_empty()
            && self.up_remaining == 0
            && self.down_remaining == 0
            && !self.client_skip
    }

    /// When the client (or, with `response_timeout`, the server) has been
    /// silent too long, by the configured timeouts.
    fn deadline(&self) -> Option<Instant> {
        let s = &self.pool.settings();
        if self.lease.is_some() && !self.queue.is_empty() && !s.response_timeout.is_zero() {
            // Client traffic counts too: during COPY FROM STDIN the server
            // owes its answer only once the data ends.
            return Some(self.last_server_activity.max(self.last_client_activity) + s.response_timeout);
        }
        if !self.client_owes() {
            return None;
        }
        let t = if self.lease.is_some() && self.status != TransactionStatus::Idle {
            s.idle_transaction_timeout
        } else if self.lease.is_some() && (self.needs_sync || !self.cbuf.is_empty()) {
            // Holding a connection in the middle of a request (a message cut
            // short, or extended messages without their Sync): as idle in a
            // transaction, else as idle.
            if s.idle_transaction_timeout.is_zero() {
                s.client_idle_timeout
            } else {
                s.idle_transaction_timeout
            }
        } else if self.lease.is_none() {
            s.client_idle_timeout
        } else {
            Duration::ZERO
        };
        (!t.is_zero()).then(|| self.last_client_activity + t)
    }

    fn timed_out(&self) -> Option<Error> {
        let deadline = self.deadline()?;
        if Instant::now() < deadline {
            return None;
        }
        if self.lease.is_some() && !self.queue.is_empty() {
            return Some(Error::ResponseTimeout {
                waited_ms: self.pool.settings().response_timeout.as_millis() as u64,
            });
        }
        Some(if self.lease.is_some() {
            Error::Refused {
                code: "25P03",
                message: "terminating connection due to idle-in-transaction timeout (pool.idle_transaction_timeout)"
                    .into(),
            }
        } else {
            Error::Refused {
                code: "57P05",
                message: "terminating connection due to idle-session timeout (pool.client_idle_timeout)".into(),
            }
        })
    }

    /// The pool of `node`, created on first use.
    fn pool_for(&mut self, node: usize) -> Arc<Pool> {
        if let Some(Some(p)) = self.pools.get(node) {
            return p.clone();
        }
        let Some(addr) = self.shared.nodes.get(node) else {
            return self.pool.clone();
        };
        let key = PoolKey { node, user: self.login.user.clone(), database: self.login.database.clone() };
        let login = &self.login;
        let p = self.shared.pools.get(key, addr, || login.clone());
        if let Some(k) = login.client_key {
            p.learn_client_key(k);
        }
        if let Some(slot) = self.pools.get_mut(node) {
            *slot = Some(p.clone());
        }
        p
    }

    /// The client's application_name as it was last reported.
    fn application(&self) -> &str {
        self.params.iter().find(|(k, _)| k == "application_name").map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Takes a server connection on the node the next request should run on,
    /// and brings its session to what the client expects: the same
    /// parameters, no other client's leftovers.
    async fn attach(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let router = &self.shared.router;
        let front = if router.balancing() && !self.sticky_all { self.front_is_read() } else { None };
        let read = match front {
            Some(true) => !(self.sticky_transactions && self.front_is_block()),
            _ => false,
        };
        if !read {
            Box::pin(self.wait_for_primary()).await?;
        }
        // Writes go to the primary as the cluster controller knows it now.
        let primary = router.primary();
        let min_lsn = if router.read_your_writes() { self.write_lsn } else { 0 };
        let mut node = primary;
        let mut probe = false;
        if read {
            // The router (and the embedding service's routing policy, if
            // any) picks the read node; `probe`: ask it for the session's
            // last write first.
            let block = router.has_policy() && self.front_is_block();
            let (user, database, application) = (&self.login.user, &self.login.database, self.application());
            (node, probe) =
                router.choose_read(&crate::route::Requester { user, database, application, block }, min_lsn);
        }
        if self.session_mode && node != primary && !router.statement_level() {
            // One read node per session (pgpool's default), if it has the
            // session's writes; else this read goes to the primary.
            match self.session_read_node {
                Some(n) if n == primary || router.replayed(n) >= min_lsn || min_lsn == 0 => {
                    node = n;
                    probe = probe && n != primary;
                }
                Some(_) => {
                    node = primary;
                    probe = false;
                }
                None => self.session_read_node = Some(node),
            }
        }
        let parked = self.parked.get_mut(node).and_then(Option::take);
        let lease = match parked {
            Some(l) => Ok(l),
            // Holding the primary already, a session never waits for a read
            // connection (two sessions could wait on each other): no free
            // slot now means the primary serves the read.
            None if self.session_mode && node != primary => match self.pool_for(node).try_checkout().await {
                Ok(Some(l)) => Ok(l),
                Ok(None) => {
                    node = primary;
                    probe = false;
                    match self.parked.get_mut(primary).and_then(Option::take) {
                        Some(l) => Ok(l),
                        None => self.pool_for(primary).checkout().await,
                    }
                }
                Err(e) => Err(e),
            },
            None => self.pool_for(node).checkout().await,
        };
        let mut lease = match lease {
            Ok(l) => l,
            Err(e) if e.is_unavailable() && node != primary => {
                // Nothing was sent anywhere: the primary can serve the read.
                if self.shared.backend_failed(node, &e) {
                    tracing::warn!(node, error = %e, "read node unreachable; using the primary");
                }
                node = primary;
                probe = false;
                match self.parked.get_mut(primary).and_then(Option::take) {
                    Some(l) => l,
                    None => self.pool_for(primary).checkout().await?,
                }
            }
            Err(e) if e.is_unavailable() && read && min_lsn == 0 => {
                // The primary is unreachable and the request only reads: a
                // standby serves it (the health checks will confirm the rest).
                let first = self.shared.backend_failed(primary, &e);
                let Some(n) = router.fallback_node(primary) else { return Err(e) };
                if first {
                    tracing::warn!(node = primary, error = %e, standby = n, "primary unreachable; a standby serves the read");
                } else {
                    tracing::debug!(node = primary, error = %e, standby = n, "primary unreachable; a standby serves the read");
                }
                node = n;
                probe = false;
                match self.parked.get_mut(n).and_then(Option::take) {
                    Some(l) => l,
                    None => self.pool_for(n).checkout().await?,
                }
            }
            Err(e) if e.is_unavailable() => {
                // The primary cannot be reached and nothing was sent: the
                // request waits (bounded) for a primary that answers (a new
                // one after a failover, or this one back) and runs there.
                self.shared.backend_failed(primary, &e);
                // One bound for the whole request, waits before included.
                let wait = self.shared.config.failover.search_primary_node_timeout.saturating_sub(started.elapsed());
                let Some(n) = Box::pin(self.shared.cluster.wait_for_primary_after(primary, wait)).await else {
                    return Err(e);
                };
                tracing::info!(failed = primary, primary = n, "the request waited for a primary and runs there");
                node = n;
                probe = false;
                match self.parked.get_mut(n).and_then(Option::take) {
                    Some(l) => l,
                    None => self.pool_for(n).checkout().await?,
                }
            }
            Err(e) => return Err(e),
        };
        if probe {
            let replayed = Box::pin(lease.conn().query_row("SELECT pg_catalog.pg_last_wal_replay_lsn()")).await;
            let lsn = match &replayed {
                Ok(row) => row.first().cloned().flatten().and_then(|v| crate::lsn::parse_lsn(&v)).unwrap_or(0),
                Err(_) => 0,
            };
            router.note_replayed(node, lsn);
            if lsn < min_lsn {
                // Behind the session's own write: the primary serves this read.
                if replayed.is_ok() && self.session_mode {
                    if let Some(slot) = self.parked.get_mut(node) {
                        *slot = Some(lease);
                    }
                } else if replayed.is_ok() {
                    Box::pin(self.pool_for(node).checkin(lease, TransactionStatus::Idle, Reset::None)).await;
                } else {
                    drop(lease);
                }
                node = primary;
                lease = match self.parked.get_mut(primary).and_then(Option::take) {
                    Some(l) => l,
                    None => self.pool_for(primary).checkout().await?,
                };
            }
        }
        let sql = restore_sql(&self.params, &self.extra, lease.conn_ref());
        if !sql.is_empty() {
            if let Err(e) = Box::pin(lease.conn().simple_query(&sql)).await {
                // A server that cannot take the client's settings back is not
                // one to lend again blindly.
                drop(lease);
                return Err(e);
            }
        }
        self.take_lease(lease, node, read);
        Ok(())
    }

    /// [`Relay::attach`] without awaiting, for the usual case: no load
    /// balancing, the primary available, a free idle connection there that
    /// already has the client's settings. False: nothing was taken; attach
    /// the long way.
    fn attach_now(&mut self) -> bool {
        let router = &self.shared.router;
        // With balancing on, reads are routed (a routing policy's too): never here.
        if router.balancing() || self.session_mode {
            return false;
        }
        let node = {
            let s = router.snapshot();
            if !s.primary_available() {
                return false;
            }
            s.primary
        };
        let Some(lease) = self.pool_for(node).checkout_now() else {
            return false;
        };
        if !restore_sql(&self.params, &self.extra, lease.conn_ref()).is_empty() {
            self.pool_for(node).checkin_idle(lease);
            return false;
        }
        self.take_lease(lease, node, false);
        true
    }

    /// Makes `lease` (on `node`) the client's connection for the next request.
    fn take_lease(&mut self, mut lease: Lease, node: usize, read: bool) {
        if !self.extra.is_empty() || !lease.conn_ref().extra.is_empty() {
            lease.conn().extra = self.extra.clone();
        }
        if self.sout.capacity() == 0 {
            self.sout = recycled();
        }
        if self.cout.capacity() == 0 {
            *self.cout = recycled();
        }
        self.cancel
            .set_target(Some(CancelTarget { addr: lease.conn_ref().addr_shared(), key: lease.conn_ref().key() }));
        self.status = TransactionStatus::Idle;
        self.lease = Some(lease);
        self.node = node;
        self.wrote = false;
        self.in_block = false;
        self.reroute = false;
        self.at_request_start = true;
        self.shared.router.begin(node, read);
    }

    /// While no node is available as the primary (a failover in progress, a
    /// primary that fails its checks or hangs), waits up to
    /// `failover.search_primary_node_timeout` for one, then fails with
    /// [`Error::NoPrimary`]: nothing is ever sent to a primary marked down
    /// (a hung one would hold the request for as long as it hangs).
    async fn wait_for_primary(&self) -> Result<(), Error> {
        let router = &self.shared.router;
        if router.snapshot().primary_available() {
            return Ok(());
        }
        let wait = self.shared.config.failover.search_primary_node_timeout;
        if self.shared.cluster.wait_for_primary(wait).await {
            return Ok(());
        }
        let s = router.snapshot();
        match s.nodes.get(s.primary) {
            // In recovery but up: its own refusal (read-only) says it best.
            Some(n) if n.status == crate::cluster::Status::Up => Ok(()),
            n => Err(Error::NoPrimary {
                node: s.primary,
                status: n.map(|n| n.status.as_str()).unwrap_or("unknown"),
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }

    /// The request at the front of the client buffer opens a transaction block.
    fn front_is_block(&self) -> bool {
        let Ok(Some((t, total))) = peek_header(self.cbuf) else { return false };
        let body = self.cbuf.get(HEADER_LEN..total).unwrap_or_default();
        let sql = match t {
            tag::QUERY => body.strip_suffix(&[0]).unwrap_or(body),
            tag::PARSE => match split_cstr(body).and_then(|(_, rest)| split_cstr(rest)) {
                Ok((sql, _)) => sql,
                Err(_) => return false,
            },
            _ => return false,
        };
        matches!(self.shared.router.classifier().classify(sql).kind, crate::classify::Kind::Begin { .. })
    }

    /// Whether the request at the front of the client buffer only reads:
    /// `None` while it has not fully arrived. A request is a Query, a
    /// FunctionCall, or extended-protocol messages up to Sync.
    fn front_is_read(&self) -> Option<bool> {
        let classifier = self.shared.router.classifier();
        let mut unnamed = self.unnamed_class;
        let mut all_read = true;
        let mut pos = 0;
        // With default_transaction_read_only on, every transaction block is read-only.
        let read_only_default =
            self.params.iter().any(|(k, v)| k == "default_transaction_read_only" && v.eq_ignore_ascii_case("on"));
        let read = |c: &Classification| {
            c.is_read_only()
                || matches!(c.kind, crate::classify::Kind::Begin { read_only: true })
                || (read_only_default && matches!(c.kind, crate::classify::Kind::Begin { .. }))
        };
        loop {
            let (t, total) = peek_header(&self.cbuf[pos..]).ok()??;
            if self.cbuf.len() - pos < total {
                return None;
            }
            let body = &self.cbuf[pos + HEADER_LEN..pos + total];
            pos += total;
            match t {
                tag::QUERY => {
                    let sql = body.strip_suffix(&[0]).unwrap_or(body);
                    return Some(all_read && read(&self.effective(sql, classifier.classify(sql))));
                }
                tag::PARSE => {
                    let Ok((name, rest)) = split_cstr(body) else { return Some(false) };
                    let Ok((sql, _)) = split_cstr(rest) else { return Some(false) };
                    let c = self.effective(sql, classifier.classify(sql));
                    all_read &= read(&c);
                    if name.is_empty() {
                        unnamed = Some(c);
                    }
                }
                b'B' => {
                    let Ok(b) = Bind::parse(body) else { return Some(false) };
                    let c = if b.statement.is_empty() {
                        unnamed
                    } else {
                        self.statements.get(b.statement).map(|d| self.effective(statement_sql(d), d.class))
                    };
                    all_read &= c.is_some_and(|c| read(&c));
                }
                b'D' | b'E' | b'C' | b'H' => {}
                b'S' => return Some(all_read),
                _ => return Some(false),
            }
        }
    }

    /// `c`, unless it is a read that calls unlisted functions and the catalog
    /// says (or does not know yet) that one of them is a volatile user
    /// function: then a write. An unknown name is looked up in the
    /// background; until the answer is in, such statements go to the primary.
    fn effective(&self, sql: &[u8], c: Classification) -> Classification {
        use crate::classify::catalog::Verdict;
        use crate::classify::{Flags, Kind};
        let router = &self.shared.router;
        if c.kind != Kind::Read
            || !c.flags.contains(Flags::UNLISTED_FUNCTION)
            || !self.shared.config.routing.function_volatility
            || !router.balancing()
            || !router.classifier().asks_catalog()
        {
            return c;
        }
        let names = router.classifier().unlisted_calls(sql);
        let write = Classification { kind: Kind::Write, flags: c.flags | Flags::WRITE_FUNCTION };
        match self.shared.functions.verdict(&self.login.database, &names, Instant::now()) {
            Verdict::Read => c,
            Verdict::Write => write,
            Verdict::Unknown(missing) => {
                self.look_up_functions(missing);
                write
            }
        }
    }

    /// Asks the primary's catalog, in the background, which of `names` are
    /// volatile user functions in the client's database.
    fn look_up_functions(&self, names: Vec<String>) {
        let catalog = self.shared.functions.clone();
        let database = self.login.database.clone();
        let names = catalog.start_lookup(&database, &names, Instant::now());
        let Some(addr) = self.shared.nodes.get(self.shared.router.primary()).cloned() else { return };
        if names.is_empty() {
            return;
        }
        let login = self.login.clone();
        let timeout = self.pool.settings().connect_timeout;
        let max = self.max_message;
        tokio::spawn(async move {
            let ask = async {
                let mut conn = ServerConn::connect(&addr, &login, timeout, max).await?;
                conn.query_row(&crate::classify::catalog::lookup_sql(&names)).await
            };
            match tokio::time::timeout(timeout * 2, ask).await {
                Ok(Ok(row)) => {
                    let volatile: Vec<String> = row
                        .first()
                        .cloned()
                        .flatten()
                        .map(|v| v.split(',').map(str::to_owned).collect())
                        .unwrap_or_default();
                    tracing::debug!(%database, ?names, ?volatile, "catalog: volatile user functions learned");
                    catalog.record(&database, &names, &volatile, Instant::now());
                }
                Ok(Err(e)) => {
                    tracing::warn!(%database, error = %e, "cannot ask the catalog about functions; calls to them go to the primary")
                }
                Err(_) => {
                    tracing::warn!(%database, "catalog lookup timed out; calls to the functions go to the primary")
                }
            }
        });
    }

    /// After a statement that may change functions: what the catalog cache
    /// knows of this database is stale.
    fn note_function_ddl(&self, sql: &[u8]) {
        if crate::classify::catalog::is_function_ddl(sql) {
            self.shared.functions.invalidate(&self.login.database);
        }
    }

    /// Gives the quiet, idle server connection back to the pool, after reading
    /// the parameters the transaction changed and settling late cancels.
    /// Releasing needs a query on the connection first: the WAL position
    /// after a write (read-your-writes), or the values of changed parameters.
    fn release_needs_round_trip(&self) -> bool {
        (self.wrote && self.node == self.shared.router.primary() && self.shared.router.read_your_writes())
            || !self.dirty.is_empty()
    }

    /// [`Relay::release`] when it needs no round trip and the session does
    /// not park connections: give the connection back.
    async fn release_plain(&mut self) -> Result<(), Error> {
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        self.note_write_stickiness();
        self.shared.router.end(self.node);
        // Usually nothing needs awaiting: the connection goes straight back.
        let clean_idle = self.pinned.is_none()
            && self.dirty.is_empty()
            && self.status == TransactionStatus::Idle
            && !lease.conn_ref().statements.unsure;
        if clean_idle && self.cancel.try_detach() {
            self.pool_for(self.node).checkin_idle(lease);
            return Ok(());
        }
        Box::pin(self.give_back(lease, self.node, TransactionStatus::Idle, true, false)).await;
        Ok(())
    }

    /// After a write on the primary, what the session's later requests do
    /// (`routing.disable_load_balance_on_write`).
    fn note_write_stickiness(&mut self) {
        if self.wrote && self.node == self.shared.router.primary() {
            match self.shared.router.write_stickiness() {
                crate::config::WriteStickiness::Always => self.sticky_all = true,
                crate::config::WriteStickiness::TransTransaction if self.in_block => self.sticky_transactions = true,
                _ => {}
            }
        }
    }

    async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        self.note_write_stickiness();
        if self.wrote && self.node == self.shared.router.primary() && self.shared.router.read_your_writes() {
            // Where the session's reads must wait for: one round trip, only
            // after writes. The insert position, not the write position: with
            // asynchronous commit (`synchronous_commit = off`, globally or for
            // one transaction) the commit record may not be written yet, and a
            // standby that replayed up to the write position would still miss
            // it. The insert position is past every record inserted so far.
            match Box::pin(lease.conn().query_row("SELECT pg_catalog.pg_current_wal_insert_lsn()")).await {
                Ok(row) => {
                    if let Some(lsn) = row.first().cloned().flatten().and_then(|v| crate::lsn::parse_lsn(&v)) {
                        self.write_lsn = self.write_lsn.max(lsn);
                    }
                }
                Err(Error::Server(_)) => {
                    // The node refused: it is in recovery (demoted behind
                    // the pooler's back, which its 25006 already reported),
                    // so nothing was written there to wait for. The
                    // connection is idle and sound: the session goes on.
                }
                Err(e) => {
                    drop(lease);
                    self.shared.router.end(self.node);
                    return Err(e);
                }
            }
        }
        if !self.dirty.is_empty() {
            let names = std::mem::take(&mut self.dirty);
            let sql = format!(
                "SELECT {}",
                names
                    .iter()
                    .map(|n| {
                        let mut s = String::from("pg_catalog.current_setting(");
                        crate::sql::push_literal(&mut s, n);
                        s.push_str(", true)");
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match Box::pin(lease.conn().query_row(&sql)).await {
                Ok(values) => {
                    for (name, value) in names.into_iter().zip(values) {
                        self.extra.retain(|(k, _)| *k != name);
                        if let Some(v) = value {
                            self.extra.push((name, v));
                        }
                    }
                    lease.conn().extra = self.extra.clone();
                }
                Err(e) => {
                    // The connection's state is unknown: do not lend it again.
                    drop(lease);
                    self.shared.router.end(self.node);
                    return Err(e);
                }
            }
        }
        self.shared.router.end(self.node);
        if self.session_mode {
            // The connection stays this session's; between requests no cancel
            // points at it.
            self.cancel.set_target(None);
            if let Some(slot) = self.parked.get_mut(self.node) {
                *slot = Some(lease);
            }
            return Ok(());
        }
        self.give_back(lease, self.node, TransactionStatus::Idle, true, false).await;
        Ok(())
    }

    /// Returns `lease` to the pool: reset if it was pinned or its state is
    /// unknown, closed if it is not clean.
    async fn give_back(
        &mut self,
        mut lease: Lease,
        node: usize,
        status: TransactionStatus,
        clean: bool,
        session_over: bool,
    ) {
        let pool = self.pool_for(node);
        // No cancel for this client may reach the connection once someone else
        // has it: wait for any on its way (bounded), else do not reuse it.
        let settled = self.cancel.detach(crate::runtime::CANCEL_TIMEOUT + Duration::from_secs(1)).await;
        if !clean || !settled {
            drop(lease);
            return;
        }
        let conn = lease.conn();
        let needs_reset =
            self.session_mode || self.pinned.is_some() || !self.dirty.is_empty() || status != TransactionStatus::Idle;
        if needs_reset && session_over {
            // Session state may be anywhere: only a full reset makes it safe.
            let full = pool.settings().reset_query_list.iter().any(|q| q.trim().eq_ignore_ascii_case("DISCARD ALL"));
            if !full {
                drop(lease);
                return;
            }
            conn.statements.clear();
            conn.extra.clear();
            Box::pin(pool.checkin(lease, status, Reset::Full)).await;
            return;
        }
        if conn.statements.unsure {
            if Box::pin(conn.simple_query("DEALLOCATE ALL")).await.is_err() {
                drop(lease);
                return;
            }
            conn.statements.clear();
            conn.statements.unsure = false;
        }
        pool.checkin(lease, status, Reset::None).await;
    }

    /// Moves whole client messages to the server's output, rewriting what
    /// names prepared statements. `Ok(false)`: the client sent Terminate.
    fn relay_client_messages(&mut self) -> Result<bool, Error> {
        while self.sout.len() < HIGH_WATER {
            if self.up_remaining > 0 {
                let to = (!self.client_skip).then_some(&mut self.sout);
                let moved = pass_on(self.cbuf, to, self.up_remaining);
                if moved == 0 {
                    break;
                }
                self.up_remaining -= moved;
                continue;
            }
            if self.cbuf.first().is_some_and(|&t| !is_frontend_message(t)) {
                // A type PostgreSQL refuses: never forwarded (refused_message).
                break;
            }
            let Some((t, total)) = peek_header(self.cbuf).map_err(Error::ClientProtocol)? else {
                break;
            };
            if t == b'd' && total > STREAM_OVER {
                // COPY data streams through, whatever its size.
                let to = (!self.client_skip).then_some(&mut self.sout);
                self.up_remaining = total - pass_on(self.cbuf, to, total);
                continue;
            }
            if total > self.max_message {
                return Err(Error::ClientProtocol(ProtocolError::MessageTooLarge {
                    tag: t,
                    len: total,
                    max: self.max_message,
                }));
            }
            if self.cbuf.len() < total {
                self.cbuf.reserve(total - self.cbuf.len());
                break;
            }
            if self.at_request_start
                && t != tag::TERMINATE
                && self.node != self.shared.router.primary()
                && self.status == TransactionStatus::Idle
            {
                // On a read node, a new request runs there only if it only reads.
                match self.front_is_read() {
                    Some(true) => {}
                    Some(false) => {
                        self.reroute = true;
                        break;
                    }
                    None => break,
                }
            }
            if t == tag::TERMINATE {
                self.cbuf.advance(total);
                return Ok(false);
            }
            self.at_request_start = matches!(t, tag::QUERY | b'S' | b'F');
            if self.client_skip && t != b'S' {
                self.cbuf.advance(total);
                continue;
            }
            // A copy into a reused scratch buffer: splitting the frame off
            // the read buffer would allocate a shared header per message.
            let mut frame = std::mem::take(&mut self.scratch);
            frame.clear();
            frame.extend_from_slice(&self.cbuf[..total]);
            self.cbuf.advance(total);
            let r = self.client_message(t, &frame);
            self.scratch = frame;
            r?;
        }
        Ok(true)
    }

    fn client_message(&mut self, t: u8, frame: &[u8]) -> Result<(), Error> {
        let body = &frame[HEADER_LEN..];
        if matches!(t, tag::PARSE | b'B' | b'D' | b'C' | b'E' | b'H') {
            self.needs_sync = true;
        }
        let bad = |e| Error::ClientProtocol(e);
        match t {
            tag::QUERY => {
                let sql = body.strip_suffix(&[0]).ok_or(bad(ProtocolError::Malformed("query not terminated")))?;
                if self.known_plain(sql).is_none() && self.query_facts(sql, true) {
                    return Ok(());
                }
                let class = self.effective(sql, self.class_of(sql));
                if !class.is_read_only() {
                    self.wrote = true;
                    self.note_function_ddl(sql);
                }
                if crate::show::is_show_pool_nodes(sql) {
                    self.sout.extend_from_slice(&self.shared.show_pool_nodes(self.node));
                } else {
                    self.sout.extend_from_slice(frame);
                }
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            b'F' => {
                self.wrote = true;
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            b'S' => {
                self.client_skip = false;
                self.server_skip = false;
                self.needs_sync = false;
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            tag::PARSE => {
                let (name, rest) = split_cstr(body).map_err(bad)?;
                let (sql, _) = split_cstr(rest).map_err(bad)?;
                if self.known_plain(sql).is_none() && self.query_facts(sql, false) {
                    return Ok(());
                }
                if name.is_empty() {
                    let class = self.effective(sql, self.class_of(sql));
                    if !class.is_read_only() {
                        self.note_function_ddl(sql);
                        self.wrote = true;
                    }
                    self.unnamed_class = Some(class);
                    self.sout.extend_from_slice(frame);
                    self.queue.push_back(Pending::plain(Kind::Parse));
                    return Ok(());
                }
                if self.statements.get(name).is_some() {
                    let mut e = BytesMut::new();
                    w::error_response(
                        &mut e,
                        Severity::Error,
                        "42P05",
                        &format!("prepared statement \"{}\" already exists", String::from_utf8_lossy(name)),
                    );
                    self.push_synthetic(Kind::Parse, Synthetic::Error(e.freeze()), None);
                    self.client_skip = true;
                    return Ok(());
                }
                let classifier = self.shared.router.classifier();
                let def = self.shared.statements.intern(rest, || classifier.classify(sql));
                if !self.effective(sql, def.class).is_read_only() {
                    self.wrote = true;
                    self.note_function_ddl(sql);
                }
                self.statements.insert(name, def.clone());
                let undo = Some((Some(name.into()), def.clone()));
                if self.server_has(&def) {
                    self.push_synthetic(Kind::Parse, Synthetic::ParseComplete, undo);
                } else {
                    self.prepare_on_server(&def, false, undo);
                }
            }
            b'B' => {
                let b = Bind::parse(body).map_err(bad)?;
                match self.statements.get(b.statement).cloned() {
                    Some(def) if !b.statement.is_empty() => {
                        if !self.effective(statement_sql(&def), def.class).is_read_only() {
                            self.wrote = true;
                        }
                        self.ensure_prepared(&def);
                        w::bind_named(&mut self.sout, b.portal, &def.server_name, b.rest);
                    }
                    None if facts::is_reserved(b.statement) => {
                        self.refuse_name(Kind::Bind, b.statement);
                        return Ok(());
                    }
                    _ => self.sout.extend_from_slice(frame),
                }
                self.queue.push_back(Pending::plain(Kind::Bind));
            }
            b'D' => {
                let d = Target::parse(body).map_err(bad)?;
                match self.statements.get(d.name).cloned() {
                    Some(def) if d.kind == b'S' && !d.name.is_empty() => {
                        self.ensure_prepared(&def);
                        w::describe_or_close(&mut self.sout, b'D', b'S', &def.server_name);
                    }
                    None if d.kind == b'S' && facts::is_reserved(d.name) => {
                        self.refuse_name(Kind::Describe, d.name);
                        return Ok(());
                    }
                    _ => self.sout.extend_from_slice(frame),
                }
                self.queue.push_back(Pending::plain(Kind::Describe));
            }
            b'C' => {
                let c = Target::parse(body).map_err(bad)?;
                if c.kind == b'S' && !c.name.is_empty() && self.statements.remove(c.name).is_some() {
                    // The server keeps it for other clients; the client's name is gone.
                    self.push_synthetic(Kind::Close, Synthetic::CloseComplete, None);
                } else {
                    self.sout.extend_from_slice(frame);
                    self.queue.push_back(Pending::plain(Kind::Close));
                }
            }
            b'E' => {
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Execute));
            }
            _ => {
                // Flush, CopyData, CopyDone, CopyFail, and anything the server
                // will judge for itself.
                self.sout.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// Answers a Bind or Describe of a name in the pooler's namespace that is
    /// not the client's own: as if it did not exist, which for this client
    /// it does not.
    fn refuse_name(&mut self, kind: Kind, name: &[u8]) {
        let mut e = BytesMut::new();
        w::error_response(
            &mut e,
            Severity::Error,
            "26000",
            &format!("prepared statement \"{}\" does not exist", String::from_utf8_lossy(name)),
        );
        self.push_synthetic(kind, Synthetic::Error(e.freeze()), None);
        self.client_skip = true;
    }

    /// The class of `sql` when it was seen before and found to do nothing to
    /// session state (so its facts need no second look).
    fn known_plain(&self, sql: &[u8]) -> Option<Classification> {
        self.plain.iter().find(|(k, _)| **k == *sql).map(|(_, c)| *c)
    }

    /// The class of `sql`: remembered (a plain statement, classified when
    /// first seen, possibly just now by [`Relay::query_facts`]), else computed.
    fn class_of(&self, sql: &[u8]) -> Classification {
        self.known_plain(sql).unwrap_or_else(|| self.shared.router.classifier().classify(sql))
    }

    /// Remembers `sql` as plain (see [`Relay::known_plain`]).
    fn remember_plain(&mut self, sql: &[u8]) {
        const ENTRIES: usize = 8;
        if sql.len() > 4096 || crate::show::is_show_pool_nodes(sql) {
            return;
        }
        let entry = (Box::from(sql), self.shared.router.classifier().classify(sql));
        if self.plain.len() < ENTRIES {
            self.plain.push(entry);
        } else {
            self.plain[self.plain_next % ENTRIES] = entry;
            self.plain_next = self.plain_next.wrapping_add(1);
        }
    }

    /// Applies what a Query or Parse text does to session state. True when the
    /// pooler answers it itself (`DEALLOCATE` of a pooled statement).
    fn query_facts(&mut self, sql: &[u8], may_answer: bool) -> bool {
        let f = facts::analyze(sql);
        let tracked = self.pool.settings().track_extra_parameters.iter().any(|name| facts::mentions(sql, name));
        if !tracked && f.is_plain() {
            self.remember_plain(sql);
            return false;
        }
        if f.reserved_name {
            let e = reserved_error();
            if may_answer {
                self.push_synthetic(Kind::Ready, Synthetic::QueryError(e), None);
            } else {
                self.push_synthetic(Kind::Parse, Synthetic::Error(e), None);
                self.client_skip = true;
            }
            return true;
        }
        if let (Some(reason), None) = (f.pin, self.pinned) {
            self.pinned = Some(reason);
            tracing::debug!(reason, "server connection pinned to its client for the rest of the session");
        }
        if f.drops_all_statements {
            self.statements.clear();
            if let Some(l) = self.lease.as_mut() {
                let s = &mut l.conn().statements;
                s.clear();
                s.unsure = true;
            }
        }
        if f.resets_all_parameters {
            for (k, _) in &self.extra {
                if !self.dirty.contains(k) {
                    self.dirty.push(k.clone());
                }
            }
        }
        for p in f.parameters {
            let reported = self.params.iter().any(|(k, _)| k.eq_ignore_ascii_case(&p));
            if !reported && !self.dirty.contains(&p) {
                self.dirty.push(p);
            }
        }
        for name in &self.pool.settings().track_extra_parameters {
            if facts::mentions(sql, name) && !self.dirty.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                self.dirty.push(name.to_ascii_lowercase());
            }
        }
        if let (Some(name), true) = (f.deallocate, may_answer) {
            if self.statements.remove(&name).is_some() {
                self.push_synthetic(Kind::Ready, Synthetic::Deallocate, None);
                return true;
            }
        }
        false
    }

    /// True when the lent connection already has `def` prepared.
    fn server_has(&mut self, def: &StatementDef) -> bool {
        self.lease.as_mut().is_some_and(|l| l.conn().statements.touch(def.id))
    }

    /// Prepares `def` on the lent connection first if it lacks it; the
    /// answers to that are the pooler's, hidden from the client.
    fn ensure_prepared(&mut self, def: &Arc<StatementDef>) {
        if !self.server_has(def) {
            self.prepare_on_server(def, true, Some((None, def.clone())));
        }
    }

    /// Sends Parse of `def` under its server-side name, closing the least
    /// recently used statement first when the connection's cache is full.
    fn prepare_on_server(&mut self, def: &Arc<StatementDef>, hidden: bool, undo: Option<ParseUndo>) {
        let capacity = self.pool.settings().prepared_statement_cache_size;
        let Some(l) = self.lease.as_mut() else {
            return;
        };
        if let Some(old) = l.conn().statements.add(def, capacity) {
            w::describe_or_close(&mut self.sout, b'C', b'S', &old.server_name);
            self.queue.push_back(Pending { kind: Kind::Close, hidden: true, synthetic: None, parse: None });
        }
        w::parse_named(&mut self.sout, &def.server_name, &def.body);
        self.queue.push_back(Pending { kind: Kind::Parse, hidden, synthetic: None, parse: undo });
    }

    /// Queues an answer the pooler gives itself, in order with the server's.
    fn push_synthetic(&mut self, kind: Kind, s: Synthetic, parse: Option<ParseUndo>) {
        let p = Pending { kind, hidden: false, synthetic: Some(s), parse };
        if self.server_skip && kind != Kind::Ready {
            // The server skips to the next Sync after an error; so does the pooler.
            self.undo(p);
            return;
        }
        self.queue.push_back(p);
        self.answer_synthetic();
    }

    /// Gives the answers at the front of the queue that are the pooler's own.
    fn answer_synthetic(&mut self) {
        while self.queue.front().is_some_and(|p| p.synthetic.is_some()) {
            let Some(p) = self.queue.pop_front() else { break };
            match p.synthetic {
                Some(Synthetic::ParseComplete) => w::parse_complete(self.cout),
                Some(Synthetic::CloseComplete) => w::close_complete(self.cout),
                Some(Synthetic::Deallocate) => {
                    w::command_complete(self.cout, "DEALLOCATE");
                    w::ready_for_query(self.cout, self.status);
                }
                // The client's messages up to its Sync are dropped (client_skip),
                // so nothing queued after this can be waiting for an answer.
                Some(Synthetic::Error(e)) => self.cout.extend_from_slice(&e),
                Some(Synthetic::QueryError(e)) => {
                    self.cout.extend_from_slice(&e);
                    // Inside a transaction block, a failed statement fails the block.
                    let status = match self.status {
                        TransactionStatus::Idle => TransactionStatus::Idle,
                        _ => TransactionStatus::Failed,
                    };
                    w::ready_for_query(self.cout, status);
                }
                None => {}
            }
        }
    }

    /// A pending message that will never be answered: forget what it set up.
    fn undo(&mut self, p: Pending) {
        if let Some((client_name, def)) = p.parse {
            if let Some(name) = client_name {
                self.statements.remove_if(&name, def.id);
            }
            if let Some(l) = self.lease.as_mut() {
                l.conn().statements.forget(def.id);
            }
        }
    }

    /// Moves server messages to the client's output, matching answers to the
    /// queue.
    fn relay_server_messages(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        let r = self.relay_server_messages_from(lease.conn());
        self.lease = Some(lease);
        r
    }

    fn relay_server_messages_from(&mut self, conn: &mut ServerConn) -> Result<(), Error> {
        while self.cout.len() < HIGH_WATER {
            if self.down_remaining > 0 {
                let moved = pass_on(&mut conn.buf, Some(&mut *self.cout), self.down_remaining);
                if moved == 0 {
                    break;
                }
                self.down_remaining -= moved;
                continue;
            }
            let Some((t, total)) = peek_header(&conn.buf).map_err(Error::ServerProtocol)? else {
                break;
            };
            self.last_words = None;
            if (t == b'D' || t == b'd') && total > STREAM_OVER {
                // Rows and COPY data stream through, whatever their size.
                self.down_remaining = total - pass_on(&mut conn.buf, Some(&mut *self.cout), total);
                continue;
            }
            if total > self.max_message {
                return Err(Error::ServerProtocol(ProtocolError::MessageTooLarge {
                    tag: t,
                    len: total,
                    max: self.max_message,
                }));
            }
            if conn.buf.len() < total {
                conn.buf.reserve(total - conn.buf.len());
                break;
            }
            // Looked at in place and then copied out: splitting the frame off
            // the read buffer would allocate a shared header per message.
            let mut forward = true;
            if t == tag::ERROR_RESPONSE && self.node == self.shared.router.primary() {
                let code = crate::protocol::messages::ErrorFields::new(&conn.buf[HEADER_LEN..total]).code();
                if code == Some(READ_ONLY_TRANSACTION) {
                    // The primary refused a write as read-only: it may have
                    // been demoted behind the pooler's back. Check it now
                    // (and, if it is in recovery, every other node) instead
                    // of sending it writes until its next periodic check.
                    self.shared.cluster.suspect(self.node, "the primary answered 25006 (read-only transaction)");
                }
            }
            match t {
                tag::PARAMETER_STATUS => {
                    let frame = conn.buf[..total].to_vec();
                    let p = ParameterStatus::parse(&frame[HEADER_LEN..]).map_err(Error::ServerProtocol)?;
                    backend::note_param(conn.parts().2, p);
                    backend::note_param(Arc::make_mut(&mut self.params), p);
                }
                tag::READY_FOR_QUERY => {
                    self.status =
                        TransactionStatus::parse(&conn.buf[HEADER_LEN..total]).map_err(Error::ServerProtocol)?;
                    if self.status != TransactionStatus::Idle {
                        self.in_block = true;
                    }
                    if self.mode == PoolMode::Statement
                        && self.status != TransactionStatus::Idle
                        && self.pinned.is_none()
                    {
                        // The client is told instead of seeing its transaction open.
                        self.refused_transaction = true;
                        conn.buf.advance(total);
                        return Ok(());
                    }
                    // Pop to the Sync this answers (entries before it were skipped).
                    while let Some(p) = self.queue.pop_front() {
                        if p.kind == Kind::Ready && p.synthetic.is_none() {
                            break;
                        }
                        undo_in(&mut self.statements, conn, p);
                    }
                }
                tag::ERROR_RESPONSE if self.queue.front().is_some_and(|p| p.kind != Kind::Ready) => {
                    // The failed message and everything after it up to Sync:
                    // the server skips them, and so do their entries.
                    while self.queue.front().is_some_and(|p| p.kind != Kind::Ready) {
                        if let Some(p) = self.queue.pop_front() {
                            undo_in(&mut self.statements, conn, p);
                        }
                    }
                    self.server_skip = self.queue.is_empty();
                }
                b'1' | b'2' | b'3' | b'T' | b'n' | b'C' | b'I' | b's' => {
                    let done = self.queue.front().is_some_and(|p| match p.kind {
                        Kind::Parse => t == b'1',
                        Kind::Bind => t == b'2',
                        Kind::Close => t == b'3',
                        Kind::Describe => t == b'T' || t == b'n',
                        Kind::Execute => matches!(t, b'C' | b'I' | b's'),
                        Kind::Ready => false,
                    });
                    if done {
                        if let Some(p) = self.queue.pop_front() {
                            forward = !p.hidden;
                            if let (b'1', Some((_, def))) = (t, &p.parse) {
                                def.valid.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                }
                tag::NOTIFICATION_RESPONSE => {
                    // The client's own NOTIFY, heard on the connection it
                    // LISTENs on (pinned): it carries the pid the client was
                    // given, as on a connection of its own. Notifications
                    // from other sessions keep their real pid.
                    let (own, given) = (conn.key().pid, self.cancel.key().pid);
                    crate::protocol::messages::rewrite_notification_pid(&mut conn.buf[HEADER_LEN..total], own, given)
                        .map_err(Error::ServerProtocol)?;
                }
                _ => {}
            }
            if t == tag::ERROR_RESPONSE && forward {
                let body = &conn.buf[HEADER_LEN..total];
                let fatal = crate::protocol::messages::ErrorFields::new(body).ends_session();
                self.last_words = fatal.then(|| body.into());
            }
            if forward {
                self.cout.extend_from_slice(&conn.buf[..total]);
            }
            conn.buf.advance(total);
            self.answer_synthetic();
        }
        Ok(())
    }
}

/// The SQL text of a prepared statement (its Parse body up to the NUL).
fn statement_sql(def: &StatementDef) -> &[u8] {
    let end = def.body.iter().position(|&b| b == 0).unwrap_or(def.body.len());
    &def.body[..end]
}

/// A transaction-mode client's parameters at login, from the server's
/// `defaults` for its user and database alone, without a server connection:
/// only when every startup setting is `application_name` (reported as
/// given) or a reported parameter at its default value, so that what the
/// client is told is what a server would report. `None`: log in on a
/// connection ([`login_state`]), which also lets the server refuse a setting.
pub(crate) fn login_state_from_defaults(
    defaults: &[(String, String)],
    startup: &crate::protocol::StartupMessage,
) -> Option<Vec<(String, String)>> {
    let wanted = startup_settings(startup).ok()?;
    let mut params = defaults.to_vec();
    for (k, v) in wanted {
        let slot = params.iter_mut().find(|(p, _)| p.eq_ignore_ascii_case(&k))?;
        if k.eq_ignore_ascii_case("application_name") {
            slot.1 = v;
        } else if !slot.1.eq_ignore_ascii_case(&v) {
            return None;
        }
    }
    Some(params)
}

/// Prepares the login connection of a transaction-mode client: back to the
/// server's defaults (whatever the last client set), then the client's
/// startup settings. Returns the client's reported and unreported parameters.
pub(crate) async fn login_state(
    conn: &mut ServerConn,
    startup: &crate::protocol::StartupMessage,
) -> Result<(Vec<(String, String)>, Vec<(String, String)>), Error> {
    let defaults = conn.initial_params.clone();
    let sql = restore_sql(&defaults, &[], conn);
    if !sql.is_empty() {
        conn.simple_query(&sql).await?;
    }
    conn.extra.clear();
    let wanted = startup_settings(startup)?;
    let sql =
        param_statements(wanted.iter().filter(|(k, v)| !conn.param(k).is_some_and(|cur| cur.eq_ignore_ascii_case(v))));
    if !sql.is_empty() {
        conn.simple_query(&sql).await?;
    }
    let extra: Vec<(String, String)> = wanted
        .into_iter()
        .filter(|(k, _)| !conn.params().iter().any(|(p, _)| p.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    conn.extra = extra.clone();
    Ok((conn.params().to_vec(), extra))
}

/// The error for SQL that names the pooler's reserved statement names.
fn reserved_error() -> Bytes {
    let mut e = BytesMut::new();
    w::error_response(
        &mut e,
        Severity::Error,
        "42501",
        "names starting with \"_pooler_\" are reserved by the pooler in transaction pooling mode",
    );
    e.freeze()
}

/// [`Relay::undo`] with the connection already borrowed.
fn undo_in(statements: &mut ClientStatements, conn: &mut ServerConn, p: Pending) {
    if let Some((client_name, def)) = p.parse {
        if let Some(name) = client_name {
            statements.remove_if(&name, def.id);
        }
        conn.statements.forget(def.id);
    }
}

enum Event {
    ServerReadable(std::io::Result<()>),
    ClientReadable(std::io::Result<()>),
    Writable(std::io::Result<()>, bool),
    Deadline,
    Drain,
}

async fn readable(s: Option<&TcpStream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(s: Option<&TcpStream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.writable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads what is ready (after `readable()`). `Ok(None)`: nothing was
/// (readiness was stale). A read shorter than the space offered has drained
/// the socket, so it reports WouldBlock to tokio, which clears the readiness
/// at once (with the snapshot taken before the read, so data arriving later
/// still wakes the reader), sparing a `recv` that would only return EAGAIN.
/// Both relays read through this.
pub(crate) fn read_ready(s: &TcpStream, buf: &mut BytesMut) -> std::io::Result<Option<usize>> {
    use std::io::ErrorKind::WouldBlock;
    if buf.capacity() == 0 {
        *buf = recycled();
    }
    buf.reserve(READ_CHUNK);
    let space = buf.capacity() - buf.len();
    let mut got = None;
    let res = s.try_io(tokio::io::Interest::READABLE, || {
        let n = s.try_read_buf(buf)?;
        got = Some(n);
        if n > 0 && n < space {
            Err(WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (res, got) {
        (Ok(n), _) => Ok(Some(n)),
        (Err(e), Some(n)) if e.kind() == WouldBlock => Ok(Some(n)),
        (Err(e), None) if e.kind() == WouldBlock => Ok(None),
        (Err(e), _) => Err(e),
    }
}

/// Moves up to `want` bytes from the front of `src` to `dst` (dropping them
/// when `dst` is `None`); returns how many moved. A message streaming through
/// is relayed this way piece by piece, never gathered whole.
fn pass_on(src: &mut BytesMut, dst: Option<&mut BytesMut>, want: usize) -> usize {
    let take = want.min(src.len());
    if let Some(d) = dst {
        d.extend_from_slice(&src[..take]);
    }
    src.advance(take);
    take
}

/// Writes as much of `out` as the socket takes now.
fn flush(s: &TcpStream, out: &mut BytesMut) -> std::io::Result<()> {
    while !out.is_empty() {
        match s.try_write(out) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `out`, waiting for the socket as needed.
async fn flush_all(s: &TcpStream, out: &mut BytesMut) -> std::io::Result<()> {
    while !out.is_empty() {
        s.writable().await?;
        flush(s, out)?;
    }
    Ok(())
}
