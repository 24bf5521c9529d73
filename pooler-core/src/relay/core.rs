//! The relay's protocol core, without I/O: one client's protocol state in
//! transaction, statement and balanced session mode, fed the bytes each
//! side sent and answering with the bytes to send each side and what the
//! driver ([`super::Relay`]) must do.
//!
//! What it keeps: the queue of answers the server owes (in order), which of
//! them belong to messages the pooler added itself (hidden from the client)
//! or are given by the pooler in the server's place (synthetic), the
//! client's prepared statements under the pooler's server-side names (and
//! re-preparing them on a connection that lacks them), the parameters the
//! client set, why a connection is pinned, and when the connection is quiet
//! enough to change hands. It never touches a socket and never awaits: the
//! driver reads into [`Core::cbuf`] and the server view's buffer, calls
//! [`Core::relay_client_messages`] / [`Core::relay_server_messages`], writes
//! out [`Core::sout`] and [`Core::cout`], and asks [`Core::next`] what to
//! do. Side effects that need the runtime (a catalog lookup, a suspicious
//! primary) come out as [`Want`]s.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::facts;
use crate::backend::{self, LoginInfo};
use crate::classify::Classification;
use crate::config::PoolMode;
use crate::error::Error;
use crate::pool::Pool;
use crate::prepared::{ClientStatements, ServerStatements, StatementDef};
use crate::protocol::messages::{is_frontend_message, split_cstr, tag, Bind, ParameterStatus, Target};
use crate::protocol::write::{self as w, Severity};
use crate::protocol::{peek_header, ProtocolError, TransactionStatus, HEADER_LEN};
use crate::runtime::Shared;

/// SQLSTATE of "cannot execute ... in a read-only transaction".
const READ_ONLY_TRANSACTION: &str = "25006";

/// Past this many bytes waiting for one side, the other side is not read.
pub(super) const HIGH_WATER: usize = 256 * 1024;
/// Rows and COPY data longer than this stream through instead of being
/// gathered whole.
const STREAM_OVER: usize = 8 * 1024;

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
    /// A Bind or Describe of a statement under the pooler's name: the
    /// statement, marked stale if the server refuses it as such.
    stmt: Option<Arc<StatementDef>>,
}

impl Kind {
    /// A server message of type `t` is the answer that ends this entry.
    fn answered_by(self, t: u8) -> bool {
        match self {
            Kind::Parse => t == b'1',
            Kind::Bind => t == b'2',
            Kind::Close => t == b'3',
            Kind::Describe => t == b'T' || t == b'n',
            Kind::Execute => matches!(t, b'C' | b'I' | b's'),
            Kind::Ready => false,
        }
    }
}

impl Pending {
    fn plain(kind: Kind) -> Self {
        Pending { kind, hidden: false, synthetic: None, parse: None, stmt: None }
    }

    /// A Bind or Describe of `def` under the pooler's name.
    fn using(kind: Kind, def: Arc<StatementDef>) -> Self {
        Pending::using_or_plain(kind, Some(def))
    }

    fn using_or_plain(kind: Kind, stmt: Option<Arc<StatementDef>>) -> Self {
        Pending { kind, hidden: false, synthetic: None, parse: None, stmt }
    }
}

/// How the client's requests are pooled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A server connection per transaction (or per request outside one).
    Transaction,
    /// A server connection per statement: a transaction block ends the session.
    Statement,
    /// Session pooling with load balancing: a connection per node for the
    /// session's life, parked by the driver between requests.
    BalancedSession,
    /// Session pooling: the login's connection for the whole session,
    /// messages passed through as they are (statement names untouched),
    /// only what ends a request looked into.
    Session,
}

impl Mode {
    /// The mode for a client of a pool in `mode`, `balancing` or not.
    pub(crate) fn of(mode: PoolMode, balancing: bool) -> Mode {
        match mode {
            PoolMode::Transaction => Mode::Transaction,
            PoolMode::Statement => Mode::Statement,
            PoolMode::Session if balancing => Mode::BalancedSession,
            PoolMode::Session => Mode::Session,
        }
    }
}

/// The client's hold on a server connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// None lent: the next request takes one (the driver attaches).
    Idle,
    /// One lent for the request in flight; it goes back when quiet, idle,
    /// and no more of the client's bytes wait (the driver releases).
    Attached,
    /// One lent for good: the session used a feature that lives in the
    /// server session (the reason). Entered from `Attached` when a
    /// statement is relayed; never left.
    Pinned(&'static str),
}

/// What a write on the primary did to where the session's later reads go
/// (`routing.disable_load_balance_on_write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stickiness {
    /// Reads balance as usual.
    Balanced,
    /// After a write inside a transaction block: later transaction blocks
    /// go to the primary.
    Blocks,
    /// After a write: every later request goes to the primary.
    Everything,
}

/// What the driver does next, as the core sees it.
#[derive(Debug)]
pub(crate) enum Next {
    /// The session ends with this error (a message type PostgreSQL refuses,
    /// once what came before it is answered; a transaction block in
    /// statement mode).
    Close(Error),
    /// A whole request waits and no connection is lent: take one.
    Attach,
    /// The lent connection is quiet, idle and not pinned, and no more of the
    /// client's request waits for it (or the next request must run
    /// elsewhere): give it back.
    Release,
    /// Nothing to decide: move bytes, wait for either side or a timer.
    Wait,
}

/// What the core asks of its driver besides moving bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Ask the primary's catalog about these functions (in the background).
    LookUpFunctions(Vec<String>),
    /// The node believed to be the primary answered 25006 (read-only
    /// transaction): have it checked now.
    SuspectPrimary(usize),
}

/// A server connection as the core sees it: what it read from the server
/// and the server session's protocol state; no socket.
#[derive(Debug)]
pub(crate) struct ServerView<'a> {
    /// Bytes read from the server and not yet relayed.
    pub(crate) buf: &'a mut BytesMut,
    /// The statements prepared on this connection under the pooler's names.
    pub(crate) statements: &'a mut ServerStatements,
    /// Parameters as the server last reported them.
    pub(crate) params: &'a mut Vec<(String, String)>,
    /// Forgotten when `params` changes (`ServerConn::params_match`).
    pub(crate) params_match: &'a mut Option<crate::runtime::SharedParams>,
    /// The server backend's pid (its NOTIFY messages carry it).
    pub(crate) pid: i32,
}

/// One client's protocol state (see the module doc).
pub(crate) struct Core<'a> {
    pub(super) shared: &'a Shared,
    /// The pool the client logged in to: its settings apply.
    pub(super) pool: Arc<Pool>,
    /// The login pool's settings, as of [`Core::refresh_settings`] (a
    /// reload swaps them; the relay looks once per wake-up).
    pub(super) settings: Arc<crate::config::PoolConfig>,
    settings_generation: u64,
    pub(super) mode: Mode,
    /// Transactions, requests and bytes since the last report to a pool.
    pub(super) tally: crate::pool::Traffic,
    /// Bytes from the client, not yet relayed.
    pub(super) cbuf: &'a mut BytesMut,
    /// Bytes for the client.
    pub(super) cout: &'a mut BytesMut,
    /// Bytes for the server.
    pub(super) sout: BytesMut,
    queue: VecDeque<Pending>,
    pub(super) statements: ClientStatements,
    /// Reported parameters as the client was last told them.
    /// Shared with other clients whose settings are the same (copied on change).
    pub(super) params: crate::runtime::SharedParams,
    /// Unreported parameters the client changed, with their values.
    pub(super) extra: Vec<(String, String)>,
    /// Unreported parameters changed in the current transaction (values to read).
    pub(super) dirty: Vec<String>,
    /// Status of the last ReadyForQuery (or the pooler's idea of it).
    pub(super) status: TransactionStatus,
    /// The client's hold on a server connection.
    pub(super) link: Link,
    /// Client messages are dropped until its next Sync (after a synthetic error).
    pub(super) client_skip: bool,
    /// The server reported an error and is skipping to the next Sync.
    pub(super) server_skip: bool,
    /// Bytes of a streaming CopyData still to come from the client.
    pub(super) up_remaining: usize,
    /// Bytes of a streaming row or CopyData still to come from the server.
    pub(super) down_remaining: usize,
    pub(super) max_message: usize,
    /// Statement mode saw a transaction block open: the session ends.
    pub(super) refused_transaction: bool,
    /// Extended-protocol messages went to the server since the last Sync: the
    /// server holds an implicit transaction (or skips to Sync after an error),
    /// so the connection cannot change hands yet.
    pub(super) needs_sync: bool,
    /// Node of the lent connection.
    pub(super) node: usize,
    /// How to log in to any node as this client's user.
    pub(super) login: LoginInfo,
    /// The pid the client was given (its own notifications carry it).
    pub(super) client_pid: i32,
    /// The client's address, kept for the statement log only (an idle
    /// client does not pay for it otherwise).
    pub(super) peer: Option<Box<crate::transport::Peer>>,
    /// The lent connection has run something that may write.
    pub(super) wrote: bool,
    /// The next request must not run on the lent (read) connection: give it
    /// back and route again.
    pub(super) reroute: bool,
    /// The next client message starts a new request.
    pub(super) at_request_start: bool,
    /// Classification of the unnamed statement last parsed.
    pub(super) unnamed_class: Option<Classification>,
    /// Statements seen before that do nothing to session state (no pinning,
    /// no SET, no DEALLOCATE, no tracked parameter...), with their class: a
    /// repeated one is not read again. A few entries, replaced in turn.
    pub(super) plain: Vec<(Box<[u8]>, Classification)>,
    pub(super) plain_next: usize,
    /// The router's generation `plain` was classified under.
    pub(super) plain_generation: u64,
    /// Where each client message is looked at (reused).
    pub(super) scratch: Vec<u8>,
    /// What the session's writes did to its reads.
    pub(super) stickiness: Stickiness,
    /// The lent connection has been inside a transaction block.
    pub(super) in_block: bool,
    /// Prepared statements (by id) whose text sets parameters, with their
    /// names: executing one (its Bind) changes the session's settings, as
    /// running the text would. Empty for nearly every client.
    pub(super) setting_statements: Vec<(u64, Vec<String>)>,
    /// The body of the last message relayed from the server, when it was a
    /// FATAL (or PANIC) ErrorResponse: the server closes after it.
    pub(super) last_words: Option<Box<[u8]>>,
    /// What the driver is asked to do, in order (drained by it).
    pub(super) wants: Vec<Want>,
    /// A request that used a cached unnamed statement, kept until its
    /// ReadyForQuery to be sent again if the statement proves stale
    /// (core/unnamed.rs).
    replay: Option<unnamed::Replay>,
    /// What that request sent after its Parse (empty otherwise; its memory
    /// goes back between transactions with the other buffers).
    pub(super) replay_sent: BytesMut,
    /// `cout`'s length when all it held was the pooler's ParseComplete and
    /// CloseComplete answers (`Core::output_can_wait`).
    pub(super) held: usize,
    /// The client sent more while a request that used a cached unnamed
    /// statement was in flight: it pipelines, and its unnamed statements
    /// are no longer cached (they would make it wait a round trip).
    pub(super) pipelines: bool,
}

impl<'a> Core<'a> {
    /// Takes the pool's settings again if a reload changed them (one
    /// relaxed load when it did not).
    /// True when they changed.
    #[inline]
    pub(in crate::relay) fn refresh_settings(&mut self) -> bool {
        let g = self.pool.settings_generation();
        if g == self.settings_generation {
            return false;
        }
        self.settings = self.pool.settings();
        self.settings_generation = g;
        true
    }

    /// A client that has just logged in, on `node`, with the reported
    /// `params` it was told and the unreported `extra` settings, known to
    /// the client by `client_pid`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: &'a Shared,
        pool: Arc<Pool>,
        mode: PoolMode,
        (cbuf, cout): (&'a mut BytesMut, &'a mut BytesMut),
        node: usize,
        login: LoginInfo,
        (params, extra): (crate::runtime::SharedParams, Vec<(String, String)>),
        client_pid: i32,
        peer: crate::transport::Peer,
    ) -> Core<'a> {
        Core {
            shared,
            max_message: shared.config().server.max_message_size,
            settings: pool.settings(),
            settings_generation: pool.settings_generation(),
            pool,
            mode: Mode::of(mode, shared.router.balancing()),
            tally: Default::default(),
            peer: shared.config().server.log_statements.then(|| Box::new(peer)),
            cbuf,
            cout,
            sout: BytesMut::new(),
            queue: VecDeque::new(),
            statements: ClientStatements::default(),
            params,
            extra,
            dirty: Vec::new(),
            status: TransactionStatus::Idle,
            link: Link::Idle,
            client_skip: false,
            server_skip: false,
            up_remaining: 0,
            down_remaining: 0,
            refused_transaction: false,
            needs_sync: false,
            node,
            login,
            client_pid,
            wrote: false,
            reroute: false,
            at_request_start: true,
            unnamed_class: None,
            plain: Vec::new(),
            plain_next: 0,
            plain_generation: shared.router.generation(),
            scratch: Vec::new(),
            stickiness: Stickiness::Balanced,
            in_block: false,
            setting_statements: Vec::new(),
            last_words: None,
            wants: Vec::new(),
            replay: None,
            replay_sent: BytesMut::new(),
            held: usize::MAX,
            pipelines: false,
        }
    }

    /// Answers, without a server connection, what needs none: Parse of a
    /// statement a server has accepted before, Close of the client's own
    /// statement, Flush, and Sync when nothing is in flight. A client that
    /// prepares synchronously while others hold every connection inside
    /// transactions (pgbench -M prepared does) is not stuck behind them.
    pub(super) fn answer_locally(&mut self) -> Result<(), Error> {
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
    pub(super) fn refused_message(&self) -> Option<Error> {
        let t = *self.cbuf.first()?;
        if is_frontend_message(t) || self.up_remaining > 0 || (!self.queue.is_empty() && !self.needs_sync) {
            return None;
        }
        Some(Error::ClientProtocol(ProtocolError::InvalidMessageType { tag: t }))
    }

    /// The client buffer holds only the start of a message: wait for the
    /// rest before taking a connection, so a client that stops mid-message
    /// holds none (a message over the size limit is refused once attached).
    pub(super) fn waiting_for_more(&self) -> bool {
        matches!(peek_header(self.cbuf), Ok(Some((_, total))) if self.cbuf.len() < total && total <= self.max_message)
            || (self.cbuf.len() < HEADER_LEN)
    }

    /// The client owes bytes: nothing is in flight, and the client buffer
    /// holds no whole message (empty, or the start of one).
    pub(super) fn client_owes(&self) -> bool {
        self.queue.is_empty()
            && match peek_header(self.cbuf) {
                Ok(Some((_, total))) => self.cbuf.len() < total,
                Ok(None) => true,
                Err(_) => false,
            }
    }

    /// Nothing is in flight on the server connection and nothing half relayed.
    pub(super) fn quiet(&self, server_buf_empty: bool) -> bool {
        server_buf_empty
            && self.queue.is_empty()
            && !self.needs_sync
            && self.sout.is_empty()
            && self.up_remaining == 0
            && self.down_remaining == 0
            && !self.client_skip
    }

    /// What the driver should do next: `attached` says whether a connection
    /// is lent, `server_idle` whether it has nothing unread from the server.
    pub(crate) fn next(&self, attached: bool, server_idle: bool) -> Next {
        if let Some(e) = self.refused_message() {
            return Next::Close(e);
        }
        if self.refused_transaction {
            return Next::Close(Error::Refused {
                code: "0A000",
                message: "transaction blocks are not allowed in statement pooling mode".into(),
            });
        }
        if !attached {
            return if !self.cbuf.is_empty() && !self.waiting_for_more() { Next::Attach } else { Next::Wait };
        }
        if self.quiet(server_idle)
            && self.status == TransactionStatus::Idle
            && !self.pinned()
            && (self.cbuf.is_empty() || self.reroute)
        {
            return Next::Release;
        }
        Next::Wait
    }

    /// The connection stays with this client for good.
    pub(super) fn pinned(&self) -> bool {
        matches!(self.link, Link::Pinned(_))
    }

    /// The driver lent a connection on `node` for the next request
    /// (Idle -> Attached; a pinned link keeps its connection and never
    /// comes here).
    pub(super) fn attached(&mut self, node: usize) {
        if self.link == Link::Idle {
            self.link = Link::Attached;
        }
        self.node = node;
    }

    /// The driver took the connection back (Attached -> Idle).
    pub(super) fn released(&mut self) {
        if self.link == Link::Attached {
            self.link = Link::Idle;
        }
    }

    /// A message of type `t`, `total` bytes long, may be gathered whole
    /// (`server.max_message_size`).
    fn check_size(&self, t: u8, total: usize) -> Result<(), ProtocolError> {
        if total > self.max_message {
            return Err(ProtocolError::MessageTooLarge { tag: t, len: total, max: self.max_message });
        }
        Ok(())
    }

    /// The server owes answers to messages sent (or the pooler owes its own).
    pub(super) fn server_owes(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Moves whole client messages to the server's output, rewriting what
    /// names prepared statements. `Ok(false)`: the client sent Terminate.
    pub(super) fn relay_client_messages(&mut self, srv: &mut ServerView<'_>) -> Result<bool, Error> {
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
            if self.holds_client_messages() {
                if !self.cbuf.is_empty() {
                    // The client pipelines: from now on its unnamed
                    // statements go as sent, rather than wait like this.
                    self.pipelines = true;
                }
                break;
            }
            let Some((t, total)) = peek_header(self.cbuf).map_err(Error::ClientProtocol)? else {
                break;
            };
            if self.mode == Mode::Session && !self.gathered_in_session(t) {
                // Session mode looks only into what ends a request: the
                // rest streams through as it arrives, at any size.
                self.expect_answer(t);
                self.up_remaining = total - pass_on(self.cbuf, Some(&mut self.sout), total);
                continue;
            }
            if t == b'd' && total > STREAM_OVER {
                // COPY data streams through, whatever its size.
                let to = (!self.client_skip).then_some(&mut self.sout);
                self.up_remaining = total - pass_on(self.cbuf, to, total);
                continue;
            }
            self.check_size(t, total).map_err(Error::ClientProtocol)?;
            if self.cbuf.len() < total {
                self.cbuf.reserve(total - self.cbuf.len());
                break;
            }
            if self.mode == Mode::Session {
                if t == tag::TERMINATE {
                    self.cbuf.advance(total);
                    return Ok(false);
                }
                self.session_message(t, total);
                continue;
            }
            if self.at_request_start
                && t != tag::TERMINATE
                && self.node != self.shared.router.primary()
                && self.status == TransactionStatus::Idle
            {
                // On a read node, a new request runs there only if it only reads.
                let mut wants = Vec::new();
                let front = self.front_is_read(&mut wants);
                self.wants.append(&mut wants);
                match front {
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
            let request_start = self.at_request_start;
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
            let r = self.client_message(t, &frame, request_start, srv);
            self.scratch = frame;
            r?;
        }
        Ok(true)
    }

    /// Session mode: whether a message of type `t` is gathered whole (it
    /// ends a request, or is logged).
    fn gathered_in_session(&self, t: u8) -> bool {
        matches!(t, tag::QUERY | b'S' | b'F' | tag::TERMINATE) || (t == tag::PARSE && self.peer.is_some())
    }

    /// Session mode: notes what a message of type `t` sent to the server
    /// asks of it. Only the requests that end with ReadyForQuery are queued
    /// (the connection is the client's for good, so which message an answer
    /// belongs to matters only for whether the session stands between
    /// requests); extended-protocol messages want their Sync.
    fn expect_answer(&mut self, t: u8) {
        match t {
            tag::QUERY | b'S' | b'F' => self.queue.push_back(Pending::plain(Kind::Ready)),
            tag::PARSE | b'B' | b'D' | b'C' | b'E' | b'H' => self.needs_sync = true,
            _ => {}
        }
    }

    /// Session mode: passes the whole message at the front of the client
    /// buffer (`total` bytes of type `t`) to the server as it is, noting the
    /// answer it will get. Only `SHOW pool_nodes` is rewritten.
    fn session_message(&mut self, t: u8, total: usize) {
        let body = &self.cbuf[HEADER_LEN..total];
        if self.peer.is_some() {
            log_statement(self.peer.as_deref(), t, body);
        }
        if t == b'S' {
            self.server_skip = false;
            self.needs_sync = false;
        }
        if t == tag::QUERY && crate::show::is_show_pool_nodes(body.strip_suffix(&[0]).unwrap_or(body)) {
            self.sout.extend_from_slice(&self.shared.show_pool_nodes(self.node));
        } else {
            self.sout.extend_from_slice(&self.cbuf[..total]);
        }
        self.expect_answer(t);
        self.cbuf.advance(total);
    }
}

/// Logs a Query's or a Parse's SQL (`server.log_statements`).
fn log_statement(peer: Option<&crate::transport::Peer>, t: u8, body: &[u8]) {
    use crate::protocol::messages;
    let Some(peer) = peer else { return };
    match t {
        tag::QUERY => {
            if let Ok(q) = messages::Query::parse(body) {
                tracing::info!(client = %peer, sql = %String::from_utf8_lossy(q.sql), "statement");
            }
        }
        tag::PARSE => {
            if let Ok(p) = messages::Parse::parse(body) {
                tracing::info!(client = %peer, statement = p.name, sql = p.sql, "parse");
            }
        }
        _ => {}
    }
}

/// The SQL text of a prepared statement (its Parse body up to the NUL).
fn statement_sql(def: &StatementDef) -> &[u8] {
    let end = def.body.iter().position(|&b| b == 0).unwrap_or(def.body.len());
    &def.body[..end]
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

/// [`Core::undo`] with the server's statements borrowed apart.
fn undo_in(statements: &mut ClientStatements, server: &mut ServerStatements, p: Pending) {
    if let Some((client_name, def)) = p.parse {
        if let Some(name) = client_name {
            statements.remove_if(&name, def.id);
        }
        server.forget(def.id);
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

mod answers;
mod classes;
mod client;
mod statements;
mod unnamed;

#[cfg(test)]
mod tests;
