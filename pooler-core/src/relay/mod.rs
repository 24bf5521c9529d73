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

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::Stream;
use bytes::{Bytes, BytesMut};

use crate::backend::{LoginInfo, ServerConn};
use crate::buffers::{recycled, release_memory};
use crate::cancel::{CancelHandle, CancelTarget};
use crate::config::PoolMode;
use crate::error::Error;
use crate::params::{has_settings, param_statements, restore_sql, startup_settings};
use crate::pool::PoolKey;
use crate::pool::{Lease, Pool, Reset};
use crate::protocol::messages::tag;
use crate::protocol::TransactionStatus;
use crate::runtime::{Phase, Shared};

mod core;
mod lease;

use self::core::HIGH_WATER;
pub(crate) use self::core::{Core, Link, Mode, Next, ServerView, Stickiness, Want};

/// Parameter names and values.
pub(crate) type Settings = Vec<(String, String)>;

/// The core's view of a lent server connection.
fn view(conn: &mut ServerConn) -> ServerView<'_> {
    let pid = conn.key().pid;
    let (buf, statements, (params, params_match)) = conn.protocol_parts();
    ServerView { buf, statements, params, params_match, pid }
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
    /// Idle while the pooler hands its clients to a successor: the client's
    /// session state (its socket stays with the session).
    HandOver(Box<crate::upgrade::SessionState>),
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
            End::HandOver(_) => f.write_str("handed over to the successor process"),
        }
    }
}

/// Outcome of a transaction-mode session, for `run_session`.
pub(crate) struct Outcome {
    pub(crate) end: End,
    /// The client stream stands between messages: an ErrorResponse may be sent.
    pub(crate) client_can_take_error: bool,
}

/// One client in transaction, statement or balanced session mode: the
/// driver around the protocol [`Core`]. It owns the sockets' side of things
/// (the client stream, the lent server connection and those parked by
/// node), the pool, the timers and the waits; the core decides.
pub(crate) struct Relay<'a> {
    cancel: &'a CancelHandle,
    stream: &'a mut Stream,
    lease: Option<Lease>,
    core: Core<'a>,
    last_client_activity: Instant,
    /// Last bytes from the server, or the request that made it owe an
    /// answer (kept only with `pool.response_timeout`).
    last_server_activity: Instant,
    /// Pools of the nodes this client has used, by node.
    pools: Vec<Option<Arc<Pool>>>,
    /// The session's last committed write is at this WAL position (0: none).
    write_lsn: u64,
    /// A client timeout is configured (else the last activity is not timed).
    timed: bool,
    /// Balanced session mode: connections are not given back between
    /// requests but parked here, by node, for the session's life.
    parked: Vec<Option<Lease>>,
    /// Session mode: the read node chosen for the session.
    session_read_node: Option<usize>,
    /// Where the admin console sees what this client is doing.
    client: Option<&'a crate::clients::ClientInfo>,
    /// Request and transaction clocks (`metrics.durations`; `None`: off,
    /// and the loop reads no clock for them).
    timing: Option<Box<Timing>>,
    /// What this session's buffers hold, counted in `server.max_memory`.
    memory: crate::memory::Account<'a>,
}

/// When the request and the transaction now running started.
#[derive(Debug, Default)]
struct Timing {
    request: Option<Instant>,
    transaction: Option<Instant>,
}

impl Timing {
    /// A request's bytes are on their way to the server.
    fn sent(&mut self) {
        if self.request.is_none() {
            let now = Instant::now();
            self.request = Some(now);
            self.transaction.get_or_insert(now);
        }
    }

    /// The server's answers moved the tally from `before` (requests,
    /// transactions) to `after`; the times go into it too (SHOW STATS
    /// `query_time`, `xact_time`) and into the histograms.
    fn answered(&mut self, before: (u64, u64), after: &mut crate::pool::Traffic) {
        if after.queries == before.0 {
            return;
        }
        let now = Instant::now();
        if let Some(started) = self.request.take() {
            let took = now - started;
            after.query_us += took.as_micros() as u64;
            metrics::histogram!(crate::metrics::QUERY_SECONDS).record(took.as_secs_f64());
        }
        if after.transactions != before.1 {
            if let Some(started) = self.transaction.take() {
                let took = now - started;
                after.transaction_us += took.as_micros() as u64;
                metrics::histogram!(crate::metrics::TRANSACTION_SECONDS).record(took.as_secs_f64());
            }
        }
    }
}

/// Whether the relay watches client and server timeouts: never in session
/// mode (the connection is the client's, as on a direct one), else when one
/// is set.
fn timed(dedicated: bool, s: &crate::config::PoolConfig) -> bool {
    !dedicated
        && (!s.client_idle_timeout.is_zero() || !s.idle_transaction_timeout.is_zero() || !s.response_timeout.is_zero())
}

impl<'a> Relay<'a> {
    /// Starts with the connection used for the client's login.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: &'a Shared,
        pool: Arc<Pool>,
        mode: PoolMode,
        cancel: &'a CancelHandle,
        (stream, cbuf, cout): (&'a mut Stream, &'a mut BytesMut, &'a mut BytesMut),
        (lease, node): (Option<Lease>, usize),
        login: LoginInfo,
        (params, extra): (Settings, Settings),
        peer: crate::transport::Peer,
    ) -> Self {
        let mut pools = vec![None; shared.node_count().max(1)];
        if let Some(slot) = pools.get_mut(node) {
            *slot = Some(pool.clone());
        }
        if lease.is_some() {
            shared.router.begin(node, false);
        }
        let parked = (0..pools.len()).map(|_| None).collect();
        let dedicated = Mode::of(mode, shared.router.balancing()) == Mode::Session;
        let timed = timed(dedicated, &pool.settings());
        let params = shared.param_sets.share(params);
        let mut core =
            Core::new(shared, pool, mode, (cbuf, cout), node, login, (params, extra), cancel.key().pid, peer);
        if lease.is_some() {
            core.attached(node);
        }
        if dedicated {
            // Session mode: the login's connection is the client's to the end.
            core.link = Link::Pinned("session pooling mode");
        }
        Relay {
            cancel,
            stream,
            lease,
            core,
            last_client_activity: Instant::now(),
            last_server_activity: Instant::now(),
            pools,
            write_lsn: 0,
            timed,
            parked,
            session_read_node: None,
            client: None,
            timing: shared.config().metrics.times_requests().then(Box::default),
            memory: crate::memory::Account::new(&shared.memory),
        }
    }

    /// Starts from a session a predecessor process handed over: its
    /// statements and the parameters to restore.
    pub(crate) fn imported(mut self, state: Option<&crate::upgrade::SessionState>) -> Self {
        if let Some(s) = state {
            self.core.import(s);
        }
        self
    }

    /// Reports what the client does (idle, active, waiting, pinned) to
    /// `client`, the admin console's entry for it.
    pub(crate) fn tracked(mut self, client: &'a crate::clients::ClientInfo) -> Self {
        self.client = Some(client);
        self
    }

    /// Records the client's state for the console: a relaxed load, and a
    /// store when it changed (no lock, no clock).
    #[inline]
    fn report_state(&self) {
        use crate::clients::ClientState;
        if let Some(c) = self.client {
            let state = match (&self.lease, &self.core.link) {
                (None, _) => ClientState::Idle,
                (Some(_), Link::Pinned(_)) => ClientState::Pinned,
                (Some(_), _) => ClientState::Active,
            };
            c.set_state(state);
            if self.lease.is_some() {
                c.set_node(self.core.node);
            }
        }
    }

    /// Adds what the relay counted to the figures of the pool of the node it
    /// is on (SHOW STATS).
    fn report_traffic(&mut self) {
        if self.core.tally == crate::pool::Traffic::default() {
            return;
        }
        let pool = match self.pools.get(self.core.node) {
            Some(Some(p)) => p,
            _ => &self.core.pool,
        };
        pool.stats().record(&mut self.core.tally);
    }

    /// Relays until the client leaves; the server connection, if one is still
    /// lent, is given back (or closed) before this returns. By reference: a
    /// future that took the relay by value would hold it twice (the argument
    /// and its moved copy), 1.2 KiB more per idle client.
    pub(crate) async fn run(&mut self) -> Outcome {
        let end = self.run_loop().await;
        // Boxed: the end's steps (and the leases they hold) take no room in
        // the future every idle client keeps.
        Box::pin(self.finish(end)).await
    }

    /// After the loop: what the client is still owed, and the connections
    /// given back (or closed).
    async fn finish(&mut self, mut end: End) -> Outcome {
        self.report_traffic();
        if matches!(&end, End::Failed(Error::ServerIo(_) | Error::ServerClosed)) && self.lease.is_some() {
            Box::pin(self.relay_last_words()).await;
        }
        if !self.core.cout.is_empty() && !matches!(&end, End::Failed(Error::ClientIo(_)) | End::ClientClosed) {
            // What the client was sent before the end still reaches it.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.flush_all(self.core.cout)).await;
        }
        let client_can_take_error = self.core.down_remaining == 0 && self.core.cout.is_empty();
        if let (End::Failed(e @ (Error::ServerIo(_) | Error::ServerClosed)), true) = (&end, self.lease.is_some()) {
            self.core.shared.backend_failed(self.core.node, e);
            if let (Some(words), true) = (self.core.last_words.take(), client_can_take_error) {
                // The server said why (FATAL) and closed: that reached the
                // client, as on a direct connection; nothing is added.
                end = End::ServerFatal(Bytes::from(words));
            }
        }
        if let Some(lease) = self.lease.take() {
            let clean = !self.core.server_owes()
                && !self.core.needs_sync
                && self.core.sout.is_empty()
                && self.core.up_remaining == 0
                && self.core.down_remaining == 0
                && lease.conn_ref().buf.is_empty()
                && !matches!(&end, End::Failed(e) if e.side() == crate::error::Side::Server);
            self.core.shared.router.end(self.core.node);
            if self.core.mode == Mode::Session {
                Box::pin(self.end_session(lease, clean)).await;
            } else {
                Box::pin(self.give_back(lease, self.core.node, self.core.status, clean, true)).await;
            }
        }
        for node in 0..self.parked.len() {
            if let Some(lease) = self.parked[node].take() {
                Box::pin(self.give_back(lease, node, TransactionStatus::Idle, true, true)).await;
            }
        }
        Outcome { end, client_can_take_error }
    }

    async fn run_loop(&mut self) -> End {
        // One signal for a kill and for the pooler's phase: the session's
        // own (crate::clients), re-armed after each wake-up.
        let client = self.client;
        let mut attention = std::pin::pin!(attention(client));
        let mut draining = false;
        let mut handing_over = false;
        loop {
            // The phase is read at every turn (a relaxed load), so a session
            // that started after the announcement sees it too.
            match self.core.shared.clients.phase() {
                Phase::Running => {}
                Phase::Force => return End::ForcedShutdown,
                p if !draining => {
                    draining = true;
                    handing_over = p == Phase::HandingOver;
                }
                _ => {}
            }
            if self.core.refresh_settings() {
                // A reload changed the pool's settings: its timeouts apply now.
                self.timed = timed(self.core.mode == Mode::Session, &self.core.settings);
            }
            // A client message waits and no server connection is lent: take one.
            if self.lease.is_none() && !self.core.cbuf.is_empty() {
                if let Err(e) = self.core.answer_locally() {
                    return End::Failed(e);
                }
                if self.core.cbuf.first() == Some(&tag::TERMINATE) {
                    return End::Terminated;
                }
                let attach = match self.core.next(false, false) {
                    Next::Close(e) => return End::Failed(e),
                    Next::Attach if draining && !handing_over => return End::Shutdown,
                    Next::Attach => true,
                    Next::Release | Next::Wait => false,
                };
                // The usual case needs no await: a free idle connection on the
                // primary, already in the client's settings.
                let attached = if !attach || self.attach_now() {
                    Ok(())
                } else {
                    if let Some(c) = self.client {
                        c.set_state(crate::clients::ClientState::Waiting);
                    }
                    let clients = &self.core.shared.clients;
                    let mut attaching = Box::pin(self.attach());
                    loop {
                        tokio::select! {
                        r = &mut attaching => break r,
                        _ = &mut attention => {
                            attention.set(self::attention(client));
                            if client.is_some_and(|c| c.killed()) {
                                return End::ClientClosed;
                            }
                            if clients.phase() == Phase::Force {
                                return End::ForcedShutdown;
                            }
                        }
                        }
                    }
                };
                if let Err(e) = attached {
                    return End::Failed(e);
                }
            }
            if self.lease.is_some() && self.core.sout.len() < HIGH_WATER {
                if self.timed && !self.core.server_owes() {
                    // A request about to make the server owe an answer starts its clock.
                    self.last_server_activity = Instant::now();
                }
                let relayed = match self.lease.as_mut() {
                    Some(l) => self.core.relay_client_messages(&mut view(l.conn())),
                    None => Ok(true),
                };
                match relayed {
                    Ok(true) => self.perform_wants(),
                    Ok(false) => return End::Terminated,
                    Err(e) => return End::Failed(e),
                }
            }
            // Client messages held behind a replayable request (core/unnamed.rs)
            // go on once it is answered: they are read already, and no event
            // would bring the loop back to them.
            let mut resume = false;
            if self.core.cout.len() < HIGH_WATER {
                let before = (self.core.tally.queries, self.core.tally.transactions);
                let holding = self.core.holds_client_messages();
                if let Err(e) = self.relay_server_messages() {
                    return End::Failed(e);
                }
                resume = holding && !self.core.holds_client_messages() && !self.core.cbuf.is_empty();
                if let Some(t) = self.timing.as_deref_mut() {
                    t.answered(before, &mut self.core.tally);
                }
            }
            let queued = self.core.cout.len();
            if !self.core.output_can_wait() {
                if let Err(e) = self.stream.flush(self.core.cout) {
                    return End::Failed(Error::ClientIo(e));
                }
            }
            self.core.tally.sent += (queued - self.core.cout.len()) as u64;
            if self.core.mode == Mode::Session && self.core.tally.transactions > 0 {
                // A session's connection goes back only at its end: its
                // figures are reported as its transactions end instead.
                self.report_traffic();
            }
            if let (Some(t), false) = (self.timing.as_deref_mut(), self.core.sout.is_empty()) {
                t.sent();
            }
            if let Some(l) = &mut self.lease {
                if let Err(e) = l.conn().stream.flush(&mut self.core.sout) {
                    return End::Failed(Error::ServerIo(e));
                }
            }
            // Also read by the drain check below, which uses it only in session
            // mode, where the connection is never released in between.
            let server_idle = self.lease.as_ref().is_some_and(|l| l.conn_ref().buf.is_empty());
            match self.core.next(self.lease.is_some(), server_idle) {
                Next::Close(e) => return End::Failed(e),
                Next::Attach | Next::Wait => {}
                Next::Release => {
                    // The usual release is inline; one that needs a round trip (or
                    // parks the connection) is boxed, so an idle client's task
                    // does not keep room for it.
                    let r = if self.release_needs_round_trip() || self.parks() {
                        Box::pin(self.release()).await
                    } else {
                        self.release_plain().await
                    };
                    if let Err(e) = r {
                        return End::Failed(e);
                    }
                    if !self.core.cbuf.is_empty() {
                        // The connection went back with the next request already
                        // read (a pipelined request for another node): route it
                        // now. Waiting for the client would wait forever, as it
                        // has sent everything and waits for the answers.
                        continue;
                    }
                }
            }
            if resume {
                continue;
            }
            if draining && self.core.cbuf.is_empty() && self.core.cout.is_empty() {
                // Between requests (session mode: with nothing in flight and
                // no transaction open) the session ends at a drain.
                let idle = match self.core.mode {
                    Mode::Session => self.core.quiet(server_idle) && self.core.status == TransactionStatus::Idle,
                    _ => self.lease.is_none(),
                };
                if idle && !handing_over {
                    return End::Shutdown;
                }
                // Handing over: a client that can go goes at its idle point;
                // one that cannot is served until it leaves.
                if idle && self.can_hand_over() {
                    return End::HandOver(Box::new(self.session_state()));
                }
            }
            if self.lease.is_none() && self.core.cbuf.is_empty() {
                // Idle between transactions: hold no buffer memory.
                release_memory(self.core.cbuf);
                release_memory(self.core.cout);
                release_memory(&mut self.core.sout);
                release_memory(&mut self.core.replay_sent);
            }
            let server_buf = self.lease.as_ref().map_or(0, |l| l.conn_ref().buffer_capacity());
            self.memory
                .sync(self.core.cbuf.capacity() + self.core.cout.capacity() + self.core.sout.capacity() + server_buf);
            self.report_state();
            let deadline = self.deadline();
            let server = self.lease.as_ref().map(|l| &l.conn_ref().stream);
            let read_client = self.core.sout.len() < HIGH_WATER && self.core.cbuf.len() < HIGH_WATER;
            let read_server = server.is_some() && self.core.cout.len() < HIGH_WATER;
            let event = tokio::select! {
                biased;
                // First, so a busy client cannot keep a kill waiting.
                _ = &mut attention => Event::Attention,
                r = readable(server), if read_server => Event::ServerReadable(r),
                r = self.stream.readable(), if read_client => Event::ClientReadable(r),
                r = writable(server), if server.is_some_and(|s| !self.core.sout.is_empty() || s.wants_write()) => Event::Writable(r, false),
                r = self.stream.writable(), if (!self.core.cout.is_empty() && !self.core.output_can_wait()) || self.stream.wants_write() => Event::Writable(r, true),
                _ = sleep_until(deadline), if deadline.is_some() => Event::Deadline,
            };
            match event {
                Event::ServerReadable(r) => {
                    let res = match (r, self.lease.as_mut()) {
                        (Ok(()), Some(l)) => {
                            let conn = l.conn();
                            conn.stream.read_ready(&mut conn.buf)
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
                Event::ClientReadable(r) => match r.and_then(|()| self.stream.read_ready(self.core.cbuf)) {
                    Ok(Some(0)) => return End::ClientClosed,
                    Ok(Some(n)) if self.timed => {
                        self.core.tally.received += n as u64;
                        self.last_client_activity = Instant::now();
                    }
                    Ok(Some(n)) => self.core.tally.received += n as u64,
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
                Event::Attention => {
                    attention.set(self::attention(client));
                    if client.is_some_and(|c| c.killed()) {
                        // KILL_CLIENT: the session ends as if the client had
                        // left, and is told why (crate::session).
                        return End::ClientClosed;
                    }
                    // A phase change: read at the top of the loop.
                }
            }
        }
    }

    /// Whether this client can go to a successor now: pooled by
    /// transaction or statement (no server connection is its own), nothing
    /// pinned, no connection lent or parked, and a plain socket (a TLS
    /// session's keys do not leave rustls, so a TLS client stays until it
    /// leaves).
    fn can_hand_over(&self) -> bool {
        self.core.mode != Mode::Session
            && !matches!(self.core.link, Link::Pinned(_))
            && self.lease.is_none()
            && self.parked.iter().all(Option::is_none)
            && !self.stream.is_tls()
            && self.core.status == TransactionStatus::Idle
    }

    /// The client's session as a successor takes it.
    fn session_state(&self) -> crate::upgrade::SessionState {
        let key = self.cancel.key();
        let mut state = crate::upgrade::SessionState {
            user: self.core.login.user.clone(),
            database: self.core.login.database.clone(),
            application_name: String::new(),
            socket: String::new(),
            peer: String::new(),
            cancel_pid: key.pid,
            cancel_secret: key.secret,
            params: Vec::new(),
            extra: Vec::new(),
            dirty: Vec::new(),
            statements: Vec::new(),
            client_key: String::new(),
        };
        self.core.export(&mut state);
        state
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
            match tokio::time::timeout_at(deadline, self.stream.flush_all(self.core.cout)).await {
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
                Ok(Ok(())) => match conn.stream.read_ready(&mut conn.buf) {
                    Ok(Some(0)) | Err(_) => closed = true,
                    Ok(_) => {}
                },
                _ => return,
            }
        }
    }

    /// When the client (or, with `response_timeout`, the server) has been
    /// silent too long, by the configured timeouts.
    fn deadline(&self) -> Option<Instant> {
        let s = &self.core.settings;
        if self.lease.is_some() && self.core.server_owes() && !s.response_timeout.is_zero() {
            // Client traffic counts too: during COPY FROM STDIN the server
            // owes its answer only once the data ends.
            return Some(self.last_server_activity.max(self.last_client_activity) + s.response_timeout);
        }
        if !self.core.client_owes() {
            return None;
        }
        let t = if self.lease.is_some() && self.core.status != TransactionStatus::Idle {
            s.idle_transaction_timeout
        } else if self.lease.is_some() && (self.core.needs_sync || !self.core.cbuf.is_empty()) {
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
        if self.lease.is_some() && self.core.server_owes() {
            return Some(Error::ResponseTimeout { waited_ms: self.core.settings.response_timeout.as_millis() as u64 });
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

    /// Asks the primary's catalog, in the background, which of `names` are
    /// volatile user functions in the client's database.
    fn look_up_functions(&self, names: Vec<String>) {
        let catalog = self.core.shared.functions.clone();
        let database = self.core.login.database.clone();
        let names = catalog.start_lookup(&database, &names, Instant::now());
        let Some(addr) = self.core.shared.node(self.core.shared.router.primary()) else { return };
        if names.is_empty() {
            return;
        }
        let login = self.core.login.clone();
        let timeout = self.core.settings.connect_timeout;
        let max = self.core.max_message;
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

    /// Moves server messages to the client's output, matching answers to the
    /// queue.
    /// Moves server messages to the client's output, matching answers to
    /// the queue, and does what the core asks for on the way.
    fn relay_server_messages(&mut self) -> Result<(), Error> {
        let Some(l) = self.lease.as_mut() else {
            return Ok(());
        };
        let r = self.core.relay_server_messages(&mut view(l.conn()));
        self.perform_wants();
        r
    }

    /// Balanced session mode: connections are parked between requests, by
    /// node, rather than given back.
    fn parks(&self) -> bool {
        self.core.mode == Mode::BalancedSession
    }

    /// Carries out what the core asked for: background catalog lookups,
    /// a health check of a primary that answered like a standby.
    fn perform_wants(&mut self) {
        if self.core.wants.is_empty() {
            return;
        }
        for want in std::mem::take(&mut self.core.wants) {
            match want {
                Want::LookUpFunctions(names) => self.look_up_functions(names),
                Want::SuspectPrimary(node) => {
                    self.core.shared.cluster.backend_error(node, crate::cluster::BackendError::READ_ONLY_PRIMARY)
                }
            }
        }
    }
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

enum Event {
    ServerReadable(std::io::Result<()>),
    ClientReadable(std::io::Result<()>),
    Writable(std::io::Result<()>, bool),
    Deadline,
    /// The session's signal: a kill, or the pooler's phase changed.
    Attention,
}

async fn readable(s: Option<&Stream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(s: Option<&Stream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.writable().await,
        None => std::future::pending().await,
    }
}

/// Completes when the client's session has something to look at: a kill,
/// or the pooler's phase changed (never for a relay that is not listed, as
/// in the fuzz target, whose phase never changes).
async fn attention(client: Option<&crate::clients::ClientInfo>) {
    match client {
        Some(c) => c.attention().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The fuzz target's way into the core ([`crate::fuzzing::relay_core`]).
#[doc(hidden)]
pub(crate) fn fuzz(mode: u8, client: &[u8], server: &[u8], chunk: usize) -> bool {
    use crate::config::{AuthMethod, NodeConfig};
    let mode = match mode {
        0 => PoolMode::Transaction,
        1 => PoolMode::Statement,
        _ => PoolMode::Session,
    };
    let mut config = crate::Config::with_nodes(vec![NodeConfig::new("127.0.0.1", 1)]);
    config.auth.method = AuthMethod::Trust;
    config.pool.mode = mode;
    config.server.max_message_size = 64 * 1024;
    let Ok(pooler) = crate::Pooler::new(config) else { return true };
    let shared = pooler.shared();
    let login = LoginInfo { user: "u".into(), database: "d".into(), secret: None, client_key: None };
    let key = crate::pool::PoolKey { node: 0, user: "u".into(), database: "d".into() };
    let Some(addr) = shared.node(0) else { return true };
    let pool = shared.pools.get(key, &addr, || login.clone());
    let (mut cbuf, mut cout) = (BytesMut::new(), BytesMut::new());
    let params = std::sync::Arc::new(Vec::new());
    let peer = crate::transport::Peer::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 1)));
    let mut core = Core::new(&shared, pool, mode, (&mut cbuf, &mut cout), 0, login, (params, Vec::new()), 1, peer);
    core.attached(0);
    let (mut sbuf, mut statements, mut sparams) = (BytesMut::new(), Default::default(), Vec::new());
    let mut params_match = None;
    let mut clients = client.chunks(chunk.max(1));
    let mut servers = server.chunks(chunk.max(1));
    loop {
        let (c, s) = (clients.next(), servers.next());
        if c.is_none() && s.is_none() {
            return false;
        }
        if let Some(c) = c {
            core.cbuf.extend_from_slice(c);
        }
        if let Some(s) = s {
            sbuf.extend_from_slice(s);
        }
        let mut view = ServerView {
            buf: &mut sbuf,
            statements: &mut statements,
            params: &mut sparams,
            params_match: &mut params_match,
            pid: 2,
        };
        if core.relay_client_messages(&mut view).is_err() || core.relay_server_messages(&mut view).is_err() {
            return true;
        }
        if matches!(core.next(true, view.buf.is_empty()), Next::Close(_)) {
            return true;
        }
        // What was relayed is gone (as the driver writes it out), so memory
        // stays bounded by what one call may buffer.
        core.sout.clear();
        core.cout.clear();
    }
}
