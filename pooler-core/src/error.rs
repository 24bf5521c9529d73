//! The crate's error type: which side failed, and what the client is told.

use bytes::Bytes;

use crate::protocol::messages::ErrorFields;
use crate::protocol::ProtocolError;

/// Which party a failure came from.
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
    let f = ErrorFields::new(frame.get(5..).unwrap_or_default());
    format!(
        "{} {}: {}",
        f.severity().unwrap_or("ERROR"),
        f.code().unwrap_or("?????"),
        f.message().unwrap_or("(no message)")
    )
}

impl Error {
    /// Which party the failure came from.
    pub fn side(&self) -> Side {
        match self {
            Error::ClientProtocol(_) | Error::ClientIo(_) | Error::ClientAuth { .. } | Error::Refused { .. } => {
                Side::Client
            }
            Error::ServerProtocol(_)
            | Error::ServerIo(_)
            | Error::ServerClosed
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Server(_)
            | Error::ServerAuth(_)
            | Error::ResponseTimeout { .. } => Side::Server,
            Error::PoolTimeout { .. } | Error::Shutdown | Error::NoPrimary { .. } => Side::Pooler,
        }
    }

    /// True when the same request could succeed if simply tried again later
    /// (nothing was sent to a server, or the server never got it).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::PoolTimeout { .. } | Error::NoPrimary { .. }
        )
    }

    /// The server could not be reached, or does not take connections for
    /// now: refused, timed out, or `57P03 cannot_connect_now` (starting up,
    /// shutting down). Nothing was sent, so another node (or this one, later)
    /// may serve the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } => true,
            Error::Server(b) => ErrorFields::new(b.get(5..).unwrap_or_default()).code() == Some("57P03"),
            _ => false,
        }
    }

    /// The SQLSTATE reported to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::ClientProtocol(e) => e.sqlstate(),
            // Whatever the server did wrong, for the client it is a broken link.
            Error::ServerProtocol(_) => "08P01",
            Error::ClientIo(_) => "08006",
            Error::ServerIo(_) | Error::ServerClosed => "08006",
            Error::Connect { .. } | Error::ConnectTimeout { .. } => "08001",
            Error::Server(_) => "XX000",
            Error::ServerAuth(_) => "28000",
            Error::ClientAuth { .. } => "28P01",
            Error::PoolTimeout { .. } => "53300",
            Error::Shutdown => "57P01",
            Error::NoPrimary { .. } => "57P03",
            Error::ResponseTimeout { .. } => "08006",
            Error::Refused { code, .. } => code,
        }
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
}
