//! The PostgreSQL v3 wire protocol: zero-copy framing, startup packets, typed
//! views of inspected messages and writers for what the pooler emits.
//!
//! This module does no I/O and knows nothing of pools, sessions or routing.

pub mod frame;
pub mod messages;
pub mod startup;
pub mod write;

pub use frame::{peek_header, split_frame, Frame, HEADER_LEN};
pub use messages::TransactionStatus;
pub use startup::{split_startup, CancelKey, StartupMessage, StartupPacket, MAX_STARTUP_PACKET};

/// A violation of the wire protocol by a client or a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message declares a length above the configured limit.
    #[error("message of type '{}' is {len} bytes, over the limit of {max}", char::from(*tag))]
    MessageTooLarge {
        /// Message type byte.
        tag: u8,
        /// Declared length (header included).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A message length field below 4.
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    InvalidLength {
        /// Message type byte.
        tag: u8,
        /// The length field.
        len: usize,
    },
    /// A startup packet whose length PostgreSQL refuses (below 8 bytes, above
    /// [`MAX_STARTUP_PACKET`] after the length word, or a CancelRequest not 16
    /// bytes long). PostgreSQL logs it and closes without an answer.
    #[error("invalid length of startup packet ({len} bytes)")]
    InvalidStartupLength {
        /// Declared length (the length word included).
        len: usize,
    },
    /// A protocol version other than 3.x.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },
    /// A message whose body does not match its type.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A string that must be UTF-8 is not.
    #[error("invalid UTF-8 in a protocol string")]
    InvalidUtf8,
    /// A message type a client may never send after login (PostgreSQL
    /// answers `FATAL 08P01` with this text, giving the type as a number).
    #[error("invalid frontend message type {tag}")]
    InvalidMessageType {
        /// Message type byte.
        tag: u8,
    },
    /// A message of a type not allowed at this point.
    #[error("unexpected message type '{}' {context}", char::from(*tag))]
    Unexpected {
        /// Message type byte.
        tag: u8,
        /// Where it arrived.
        context: &'static str,
    },
}

impl ProtocolError {
    /// The SQLSTATE PostgreSQL uses for this kind of violation.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ProtocolError::UnsupportedProtocol { .. } => "0A000",
            ProtocolError::MessageTooLarge { .. } => "54000",
            ProtocolError::InvalidUtf8 => "22021",
            _ => "08P01",
        }
    }
}
