//! The crate's error type, and the one mapping from a failure to what the
//! client is told ([`Error::failure`]): its SQLSTATE and words, whose fault
//! it was, and whether sending the request again is safe.

use std::borrow::Cow;

use bytes::Bytes;

use crate::protocol::messages::ErrorFields;
use crate::protocol::ProtocolError;

/// Which party a failure came from: whose fault it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client connection or what the client sent.
    Client,
    /// A PostgreSQL server connection or what it sent.
    Server,
    /// The pooler itself (limits, pools, shutdown).
    Pooler,
}

/// A failure while serving a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client broke the protocol.
    #[error("client protocol violation: {0}")]
    ClientProtocol(ProtocolError),
    /// A server broke the protocol.
    #[error("server protocol violation: {0}")]
    ServerProtocol(ProtocolError),
    /// Reading from or writing to the client failed.
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    /// Reading from or writing to a server failed.
    #[error("server connection: {0}")]
    ServerIo(std::io::Error),
    /// A server closed its connection unexpectedly.
    #[error("server closed the connection unexpectedly")]
    ServerClosed,
    /// Could not open a server connection.
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        /// `host:port` of the node.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening and authenticating a server connection took too long.
    #[error("timeout while connecting to server {addr}")]
    ConnectTimeout {
        /// `host:port` of the node.
        addr: String,
    },
    /// The server answered with an ErrorResponse (kept whole, to forward it).
    #[error("server error: {}", server_error_text(.0))]
    Server(Bytes),
    /// The pooler cannot log in to the server for this user.
    #[error("cannot authenticate to server: {0}")]
    ServerAuth(String),
    /// The client failed authentication.
    #[error("password authentication failed for user \"{user}\"")]
    ClientAuth {
        /// The user name the client gave.
        user: String,
    },
    /// No backend connection became free in time.
    #[error("no server connection available for user \"{user}\" database \"{database}\" within {waited_ms} ms (pool size {size})")]
    PoolTimeout {
        /// User of the pool.
        user: String,
        /// Database of the pool.
        database: String,
        /// How long the client waited.
        waited_ms: u64,
        /// The pool size in force.
        size: usize,
    },
    /// The pooler is shutting down.
    #[error("the pooler is shutting down")]
    Shutdown,
    /// The relay buffers hold more than `server.max_memory`: no new login
    /// or transaction until memory is given back (nothing was sent).
    #[error("out of memory: the pooler's connection buffers hold {held} bytes, past server.max_memory ({limit} bytes); waited {waited_ms} ms")]
    OutOfMemory {
        /// Bytes held when refused.
        held: usize,
        /// The limit in force.
        limit: usize,
        /// How long the request waited for memory.
        waited_ms: u64,
    },
    /// The database was paused (`PAUSE`) while a checkout took its slot:
    /// nothing was sent; the caller waits for `RESUME` and chooses the node
    /// again (it may have changed meanwhile). Never reported to a client.
    #[error("the database is paused")]
    Paused,
    /// No node answered as the primary within
    /// `failover.search_primary_node_timeout`: nothing was sent anywhere.
    #[error("no primary is available: node {node} is {status} and no other node answers as the primary (waited {waited_ms} ms)")]
    NoPrimary {
        /// The node writes last went to.
        node: usize,
        /// Its status (`down`, `quarantine`).
        status: &'static str,
        /// How long the request waited.
        waited_ms: u64,
    },
    /// A server owed an answer and sent nothing for `pool.response_timeout`.
    #[error("server sent no answer for {waited_ms} ms (pool.response_timeout); the query may or may not have run")]
    ResponseTimeout {
        /// The timeout in force.
        waited_ms: u64,
    },
    /// A client request the pooler refuses (the text says why).
    #[error("{message}")]
    Refused {
        /// SQLSTATE to report.
        code: &'static str,
        /// Message to report.
        message: String,
    },
}

fn server_error_text(frame: &Bytes) -> String {
    let f = server_fields(frame);
    format!(
        "{} {}: {}",
        f.severity().unwrap_or("ERROR"),
        f.code().unwrap_or("?????"),
        f.message().unwrap_or("(no message)")
    )
}

/// The fields of an ErrorResponse frame (header included).
fn server_fields(frame: &Bytes) -> ErrorFields<'_> {
    ErrorFields::new(frame.get(5..).unwrap_or_default())
}

/// When the client is told of a failure: the same error can mean
/// different things before and after the client's requests started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// While logging in (startup packet, authentication, the first server
    /// connection, the client's settings): none of the client's requests
    /// has been sent anywhere. The client gets the error's own words.
    Login,
    /// As the session ends after its relay ran: the failure may have cut
    /// a request short. The client gets words that say so.
    Session,
}

/// Whether the client may send the same request again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Nothing of the request reached a server: sent again (later, or
    /// through another pooler or node) it cannot run twice.
    Safe,
    /// The request may or may not have run (the server went away, or
    /// stopped answering, while it was under way): only an idempotent one
    /// should be sent again.
    Unknown,
    /// Not a retry matter: the client or its request is at fault (a
    /// protocol violation, a bad password, a request the pooler or server
    /// refuses), or the client is gone; sent again unchanged it fails the
    /// same way.
    No,
}

/// What a failure means for the client, from [`Error::failure`]: the
/// ErrorResponse it gets (the server's own, or one made of [`sqlstate`] and
/// [`message`]), whose fault it was and whether a retry is safe.
///
/// [`sqlstate`]: Failure::sqlstate
/// [`message`]: Failure::message
#[derive(Clone, Copy, Debug)]
pub struct Failure<'a> {
    /// The SQLSTATE the client sees (for a server's own ErrorResponse, its
    /// code).
    pub sqlstate: &'a str,
    /// Whose fault it was.
    pub fault: Side,
    /// Whether the same request may be sent again.
    pub retry: Retry,
    words: Words<'a>,
    server_frame: Option<&'a Bytes>,
}

/// Where a failure's message comes from (made only when asked for).
#[derive(Clone, Copy, Debug)]
enum Words<'a> {
    /// The error's `Display`.
    Own(&'a Error),
    /// Text given with the error (a refusal's, a server's).
    Given(&'a str),
    /// Fixed words.
    Fixed(&'static str),
    /// A protocol violation in PostgreSQL's own words (no prefix).
    Protocol(&'a ProtocolError),
    /// The error's words, naming the setting that limits it.
    Setting(&'a Error, &'static str),
}

impl<'a> Failure<'a> {
    /// What a session ended by the pooler's shutdown is told: idle
    /// (`cut_short` false, nothing under way) or closed by force after
    /// `shutdown_timeout` (a request may have been cut short).
    pub fn shutdown(cut_short: bool) -> Failure<'static> {
        Failure {
            sqlstate: "57P01",
            fault: Side::Pooler,
            retry: if cut_short { Retry::Unknown } else { Retry::Safe },
            words: Words::Fixed("terminating connection due to administrator command"),
            server_frame: None,
        }
    }

    /// What a client refused for the client limit
    /// (`server.max_client_connections`) is told, as PostgreSQL words it.
    pub fn too_many_clients() -> Failure<'static> {
        Failure {
            sqlstate: "53300",
            fault: Side::Pooler,
            retry: Retry::Safe,
            words: Words::Fixed("sorry, too many clients already"),
            server_frame: None,
        }
    }

    /// The message the client sees.
    pub fn message(&self) -> Cow<'a, str> {
        match self.words {
            Words::Own(e) => Cow::Owned(e.to_string()),
            Words::Given(text) => Cow::Borrowed(text),
            Words::Fixed(text) => Cow::Borrowed(text),
            Words::Protocol(p) => Cow::Owned(p.to_string()),
            Words::Setting(e, setting) => Cow::Owned(format!("{e} ({setting})")),
        }
    }

    /// The server's own ErrorResponse frame, when the server said it: the
    /// client gets it unchanged instead of one made of `sqlstate` and
    /// `message` (which are read from it).
    pub fn server_frame(&self) -> Option<&'a Bytes> {
        self.server_frame
    }
}

impl std::fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.sqlstate, self.message())
    }
}

impl Error {
    /// What this failure means for the client told of it at `stage`: the
    /// one place that maps every [`Error`] to its SQLSTATE and words, whose
    /// fault it was, and whether a retry is safe. Everything else
    /// ([`Error::sqlstate`], [`Error::side`], [`Error::is_retryable`], the
    /// ErrorResponse a client gets at login or when its session ends) reads
    /// it from here.
    pub fn failure(&self, stage: Stage) -> Failure<'_> {
        use Retry::{No, Safe, Unknown};
        let session = stage == Stage::Session;
        // A request under way when the server went: it may have run.
        let cut_short = if session { Unknown } else { Safe };
        let (sqlstate, fault, retry, words) = match self {
            Error::ClientProtocol(p) => {
                let words = match p {
                    // PostgreSQL's own words for it.
                    ProtocolError::InvalidMessageType { .. } if session => Words::Protocol(p),
                    // Only relayed messages end a session this way: name the setting.
                    ProtocolError::MessageTooLarge { .. } if session => Words::Setting(self, "server.max_message_size"),
                    _ => Words::Own(self),
                };
                (p.sqlstate(), Side::Client, No, words)
            }
            // Whatever the server did wrong, for the client it is a broken link.
            Error::ServerProtocol(p) => {
                let words = match p {
                    ProtocolError::MessageTooLarge { .. } if session => Words::Setting(self, "server.max_message_size"),
                    _ => Words::Own(self),
                };
                (PROTOCOL_VIOLATION, Side::Server, cut_short, words)
            }
            // Nobody left to tell; a request under way may have run.
            Error::ClientIo(_) => {
                (CONNECTION_FAILURE, Side::Client, if session { Unknown } else { No }, Words::Own(self))
            }
            Error::ServerIo(_) | Error::ServerClosed => {
                let words = if session { Words::Fixed(SERVER_LOST) } else { Words::Own(self) };
                (CONNECTION_FAILURE, Side::Server, cut_short, words)
            }
            // Nothing was sent: no connection.
            Error::Connect { .. } | Error::ConnectTimeout { .. } => ("08001", Side::Server, Safe, Words::Own(self)),
            // Always an answer to the pooler's own login or statements,
            // never to a client's request (those are relayed, not errors).
            Error::Server(frame) => {
                let f = server_fields(frame);
                let code = f.code().unwrap_or("XX000");
                // Turned away for now (too many connections, starting up,
                // shutting down): nothing of the request ran.
                let retry = if code.starts_with("53") || code.starts_with("08") || code == "57P03" { Safe } else { No };
                let words = Words::Given(f.message().unwrap_or("(no message)"));
                return Failure { sqlstate: code, fault: Side::Server, retry, words, server_frame: Some(frame) };
            }
            Error::ServerAuth(_) => ("28000", Side::Server, No, Words::Own(self)),
            Error::ClientAuth { .. } => ("28P01", Side::Client, No, Words::Own(self)),
            Error::PoolTimeout { .. } => ("53300", Side::Pooler, Safe, Words::Own(self)),
            Error::Shutdown => ("57P01", Side::Pooler, Safe, Words::Own(self)),
            Error::Paused => ("57P03", Side::Pooler, Safe, Words::Own(self)),
            Error::OutOfMemory { .. } => ("53200", Side::Pooler, Safe, Words::Own(self)),
            Error::NoPrimary { .. } => ("57P03", Side::Pooler, Safe, Words::Own(self)),
            Error::ResponseTimeout { .. } => (CONNECTION_FAILURE, Side::Server, Unknown, Words::Own(self)),
            Error::Refused { code, message } => (*code, Side::Client, No, Words::Given(message)),
        };
        Failure { sqlstate, fault, retry, words, server_frame: None }
    }

    /// What the client is told when its session ends with this failure
    /// ([`Stage::Session`]), if anything: nothing when its own connection
    /// failed (nobody left to tell).
    pub fn end_notice(&self) -> Option<Failure<'_>> {
        match self {
            Error::ClientIo(_) | Error::ClientAuth { .. } => None,
            _ => Some(self.failure(Stage::Session)),
        }
    }

    /// Which party the failure came from ([`Failure::fault`]).
    pub fn side(&self) -> Side {
        self.failure(Stage::Session).fault
    }

    /// True when the same request can be sent again with no risk of running
    /// it twice, whenever it failed: nothing of it reached a server
    /// ([`Retry::Safe`] at [`Stage::Session`]).
    pub fn is_retryable(&self) -> bool {
        self.failure(Stage::Session).retry == Retry::Safe
    }

    /// The server could not be reached, or does not take connections for
    /// now: refused, timed out, or `57P03 cannot_connect_now` (starting up,
    /// shutting down). Nothing was sent, so another node (or this one, later)
    /// may serve the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } => true,
            Error::Server(b) => server_fields(b).code() == Some("57P03"),
            _ => false,
        }
    }

    /// The SQLSTATE reported to the client ([`Failure::sqlstate`]; for a
    /// server's ErrorResponse, its code).
    pub fn sqlstate(&self) -> &str {
        self.failure(Stage::Login).sqlstate
    }

    /// The server's ErrorResponse frame when the server produced this error, so
    /// it can be forwarded to the client unchanged.
    pub fn server_error_frame(&self) -> Option<&Bytes> {
        match self {
            Error::Server(b) => Some(b),
            _ => None,
        }
    }
}

const CONNECTION_FAILURE: &str = "08006";
const PROTOCOL_VIOLATION: &str = "08P01";
const SERVER_LOST: &str = "server closed the connection unexpectedly; the query may or may not have run";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::write::{error_response, Severity};

    fn server(code: &str) -> Error {
        let mut b = bytes::BytesMut::new();
        error_response(&mut b, Severity::Fatal, code, "x");
        Error::Server(b.freeze())
    }

    #[test]
    fn only_refusals_before_anything_was_sent_count_as_unavailable() {
        assert!(server("57P03").is_unavailable(), "the database system is shutting down / starting up");
        assert!(!server("3D000").is_unavailable(), "a missing database is the client's problem");
        assert!(!Error::ServerClosed.is_unavailable());
        assert!(Error::ConnectTimeout { addr: "h:1".into() }.is_unavailable());
    }

    /// Every variant of [`Error`], numbered. A new variant does not compile
    /// here until it is numbered; then [`VARIANTS`] and the table in
    /// `every_failure_has_its_sqlstate_fault_retry_and_words` must follow.
    fn variant(e: &Error) -> usize {
        match e {
            Error::ClientProtocol(_) => 0,
            Error::ServerProtocol(_) => 1,
            Error::ClientIo(_) => 2,
            Error::ServerIo(_) => 3,
            Error::ServerClosed => 4,
            Error::Connect { .. } => 5,
            Error::ConnectTimeout { .. } => 6,
            Error::Server(_) => 7,
            Error::ServerAuth(_) => 8,
            Error::ClientAuth { .. } => 9,
            Error::PoolTimeout { .. } => 10,
            Error::Shutdown => 11,
            Error::NoPrimary { .. } => 12,
            Error::ResponseTimeout { .. } => 13,
            Error::Refused { .. } => 14,
            Error::Paused => 15,
            Error::OutOfMemory { .. } => 16,
        }
    }

    const VARIANTS: usize = 17;

    /// What an error should mean for the client.
    struct Expected {
        sqlstate: &'static str,
        fault: Side,
        /// Retry safety at login, then as the session ends.
        retry: (Retry, Retry),
        /// The words at login.
        login: &'static str,
        /// The words as the session ends (`None`: the client is not told).
        notice: Option<&'static str>,
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn every_failure_has_its_sqlstate_fault_retry_and_words() {
        use std::io::ErrorKind as K;
        use Retry::{No, Safe, Unknown};
        use Side::{Client, Pooler, Server};
        let e = |sqlstate, fault, retry, login, notice| Expected { sqlstate, fault, retry, login, notice };
        let lost = Some(SERVER_LOST);
        let too_large = ProtocolError::MessageTooLarge { tag: b'B', len: 70000, max: 65536 };
        let table: Vec<(Error, Expected)> = vec![
            (
                Error::ClientProtocol(ProtocolError::InvalidMessageType { tag: 0 }),
                e("08P01", Client, (No, No), "client protocol violation: invalid frontend message type 0", Some("invalid frontend message type 0")),
            ),
            (
                Error::ClientProtocol(too_large.clone()),
                e(
                    "54000",
                    Client,
                    (No, No),
                    "client protocol violation: message of type 'B' is 70000 bytes, over the limit of 65536",
                    Some("client protocol violation: message of type 'B' is 70000 bytes, over the limit of 65536 (server.max_message_size)"),
                ),
            ),
            (
                Error::ServerProtocol(ProtocolError::Malformed("x")),
                e("08P01", Server, (Safe, Unknown), "server protocol violation: malformed message: x", Some("server protocol violation: malformed message: x")),
            ),
            (
                Error::ServerProtocol(too_large),
                e(
                    "08P01",
                    Server,
                    (Safe, Unknown),
                    "server protocol violation: message of type 'B' is 70000 bytes, over the limit of 65536",
                    Some("server protocol violation: message of type 'B' is 70000 bytes, over the limit of 65536 (server.max_message_size)"),
                ),
            ),
            (Error::ClientIo(io(K::BrokenPipe)), e("08006", Client, (No, Unknown), "client connection: broken pipe", None)),
            (Error::ServerIo(io(K::ConnectionReset)), e("08006", Server, (Safe, Unknown), "server connection: connection reset", lost)),
            (Error::ServerClosed, e("08006", Server, (Safe, Unknown), "server closed the connection unexpectedly", lost)),
            (
                Error::Connect { addr: "h:1".into(), source: io(K::ConnectionRefused) },
                e("08001", Server, (Safe, Safe), "could not connect to server h:1: connection refused", Some("could not connect to server h:1: connection refused")),
            ),
            (
                Error::ConnectTimeout { addr: "h:1".into() },
                e("08001", Server, (Safe, Safe), "timeout while connecting to server h:1", Some("timeout while connecting to server h:1")),
            ),
            // The server's own words, forwarded whole (checked below).
            (server("3D000"), e("3D000", Server, (No, No), "x", Some("x"))),
            (server("53300"), e("53300", Server, (Safe, Safe), "x", Some("x"))),
            (server("57P03"), e("57P03", Server, (Safe, Safe), "x", Some("x"))),
            (
                Error::ServerAuth("no password for user \"u\"".into()),
                e("28000", Server, (No, No), "cannot authenticate to server: no password for user \"u\"", Some("cannot authenticate to server: no password for user \"u\"")),
            ),
            (
                Error::ClientAuth { user: "u".into() },
                e("28P01", Client, (No, No), "password authentication failed for user \"u\"", None),
            ),
            (
                Error::PoolTimeout { user: "u".into(), database: "d".into(), waited_ms: 5, size: 2 },
                e(
                    "53300",
                    Pooler,
                    (Safe, Safe),
                    "no server connection available for user \"u\" database \"d\" within 5 ms (pool size 2)",
                    Some("no server connection available for user \"u\" database \"d\" within 5 ms (pool size 2)"),
                ),
            ),
            (Error::Shutdown, e("57P01", Pooler, (Safe, Safe), "the pooler is shutting down", Some("the pooler is shutting down"))),
            (
                Error::OutOfMemory { held: 10, limit: 8, waited_ms: 3 },
                e(
                    "53200",
                    Pooler,
                    (Safe, Safe),
                    "out of memory: the pooler's connection buffers hold 10 bytes, past server.max_memory (8 bytes); waited 3 ms",
                    Some("out of memory: the pooler's connection buffers hold 10 bytes, past server.max_memory (8 bytes); waited 3 ms"),
                ),
            ),
            (Error::Paused, e("57P03", Pooler, (Safe, Safe), "the database is paused", Some("the database is paused"))),
            (
                Error::NoPrimary { node: 0, status: "down", waited_ms: 7 },
                e(
                    "57P03",
                    Pooler,
                    (Safe, Safe),
                    "no primary is available: node 0 is down and no other node answers as the primary (waited 7 ms)",
                    Some("no primary is available: node 0 is down and no other node answers as the primary (waited 7 ms)"),
                ),
            ),
            (
                Error::ResponseTimeout { waited_ms: 9 },
                e(
                    "08006",
                    Server,
                    (Unknown, Unknown),
                    "server sent no answer for 9 ms (pool.response_timeout); the query may or may not have run",
                    Some("server sent no answer for 9 ms (pool.response_timeout); the query may or may not have run"),
                ),
            ),
            (
                Error::Refused { code: "0A000", message: "no transaction blocks here".into() },
                e("0A000", Client, (No, No), "no transaction blocks here", Some("no transaction blocks here")),
            ),
        ];
        let mut covered = [false; VARIANTS];
        for (error, want) in &table {
            covered[variant(error)] = true;
            let login = error.failure(Stage::Login);
            let session = error.failure(Stage::Session);
            for f in [&login, &session] {
                assert_eq!((f.sqlstate, f.fault), (want.sqlstate, want.fault), "{error:?}");
                assert_eq!(f.server_frame().is_some(), matches!(error, Error::Server(_)), "{error:?}");
            }
            assert_eq!((login.retry, session.retry), want.retry, "{error:?}");
            assert_eq!(login.message(), want.login, "{error:?}");
            assert_eq!(error.end_notice().map(|f| f.message().into_owned()).as_deref(), want.notice, "{error:?}");
            // The accessors read the same mapping.
            assert_eq!((error.sqlstate(), error.side()), (want.sqlstate, want.fault), "{error:?}");
            assert_eq!(error.is_retryable(), want.retry.1 == Safe, "{error:?}");
        }
        let missing: Vec<usize> = (0..VARIANTS).filter(|&v| !covered[v]).collect();
        assert!(missing.is_empty(), "variants with no row in the table: {missing:?}");
    }

    #[test]
    fn a_servers_own_error_reaches_the_client_unchanged() {
        let e = server("3D000");
        let f = e.failure(Stage::Session);
        assert_eq!(f.server_frame(), e.server_error_frame());
        assert_eq!(f.to_string(), "3D000 x");
    }

    #[test]
    fn failures_with_no_error_behind_them_have_their_mapping_here_too() {
        let idle = Failure::shutdown(false);
        let forced = Failure::shutdown(true);
        assert_eq!((idle.sqlstate, idle.fault, idle.retry), ("57P01", Side::Pooler, Retry::Safe));
        assert_eq!(forced.retry, Retry::Unknown, "a request may have been cut short");
        assert_eq!(forced.message(), "terminating connection due to administrator command");
        let full = Failure::too_many_clients();
        assert_eq!((full.sqlstate, full.fault, full.retry), ("53300", Side::Pooler, Retry::Safe));
        assert_eq!(full.message(), "sorry, too many clients already");
    }
}
