//! Typed read-only views of the few messages the pooler looks inside.
//!
//! Each view borrows the frame body; nothing is copied or allocated to read it.

use super::startup::take_cstr;
use super::ProtocolError;

/// Backend message tags the pooler inspects.
pub mod tag {
    /// Authentication request family (`R`).
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData (`K`).
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// ErrorResponse (`E`).
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse (`N`).
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// ParameterStatus (`S`).
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery (`Z`).
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// NotificationResponse (`A`).
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// CommandComplete (`C`).
    #[allow(dead_code)] // the set of tags is complete; the relay names its own
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// Frontend Query (`Q`).
    pub const QUERY: u8 = b'Q';
    /// Frontend Parse (`P`).
    pub const PARSE: u8 = b'P';
    /// Frontend Terminate (`X`).
    pub const TERMINATE: u8 = b'X';
    /// Frontend password / SASL response family (`p`).
    pub const PASSWORD: u8 = b'p';
}

/// True for the message types a client may send after login: Query, Parse,
/// Bind, Execute, Describe, Close, Sync, Flush, FunctionCall, Terminate,
/// CopyData, CopyDone, CopyFail (PostgreSQL's `SocketBackend`). Anything else
/// (`p` included: it is only for authentication) PostgreSQL refuses with
/// `FATAL 08P01 invalid frontend message type N`, on the type byte alone.
#[inline]
pub fn is_frontend_message(t: u8) -> bool {
    matches!(t, b'Q' | b'P' | b'B' | b'E' | b'D' | b'C' | b'S' | b'H' | b'F' | b'X' | b'd' | b'c' | b'f')
}

/// Transaction status carried by ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (only ROLLBACK will be accepted).
    Failed,
}

impl TransactionStatus {
    /// Decodes ReadyForQuery's body.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        match body {
            [b'I'] => Ok(TransactionStatus::Idle),
            [b'T'] => Ok(TransactionStatus::InTransaction),
            [b'E'] => Ok(TransactionStatus::Failed),
            _ => Err(ProtocolError::Malformed("bad ReadyForQuery status")),
        }
    }

    /// The status byte as sent on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// ParameterStatus: a run-time parameter the server reports to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// Parameter name, e.g. `client_encoding`.
    pub name: &'a str,
    /// Its current value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Decodes a ParameterStatus body.
    pub fn parse(mut body: &'a [u8]) -> Result<Self, ProtocolError> {
        let name = take_cstr(&mut body)?;
        let value = take_cstr(&mut body)?;
        Ok(ParameterStatus { name, value })
    }
}

/// BackendKeyData: the key that cancels this connection's queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Backend process id.
    pub pid: i32,
    /// Secret key.
    pub secret: i32,
}

impl BackendKeyData {
    /// Decodes a BackendKeyData body (protocol 3.0: two int32).
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        match body {
            [a, b, c, d, e, f, g, h] => Ok(BackendKeyData {
                pid: i32::from_be_bytes([*a, *b, *c, *d]),
                secret: i32::from_be_bytes([*e, *f, *g, *h]),
            }),
            _ => Err(ProtocolError::Malformed("BackendKeyData must be 8 bytes")),
        }
    }
}

/// NotificationResponse: a NOTIFY on a channel the connection listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationResponse<'a> {
    /// Process id of the notifying backend.
    pub pid: i32,
    /// Channel name (raw bytes, in the server's encoding).
    pub channel: &'a [u8],
    /// Payload (raw bytes, in the server's encoding).
    pub payload: &'a [u8],
}

impl<'a> NotificationResponse<'a> {
    /// Decodes a NotificationResponse body: Int32 pid, then the channel and
    /// the payload as NUL-terminated strings.
    pub fn parse(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let (pid, rest) =
            body.split_first_chunk::<4>().ok_or(ProtocolError::Malformed("NotificationResponse too short"))?;
        let (channel, rest) = split_cstr(rest)?;
        let (payload, _) = split_cstr(rest)?;
        Ok(NotificationResponse { pid: i32::from_be_bytes(*pid), channel, payload })
    }
}

/// In a NotificationResponse body, replaces the process id `from` with `to`
/// (a notification from another backend is left alone). True when it did.
/// A malformed body is an error, whatever its pid.
pub fn rewrite_notification_pid(body: &mut [u8], from: i32, to: i32) -> Result<bool, ProtocolError> {
    if NotificationResponse::parse(body)?.pid != from || from == to {
        return Ok(false);
    }
    body[..4].copy_from_slice(&to.to_be_bytes());
    Ok(true)
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Clone, Copy, Debug)]
pub struct ErrorFields<'a> {
    body: &'a [u8],
}

impl<'a> ErrorFields<'a> {
    /// Wraps an ErrorResponse/NoticeResponse body.
    pub fn new(body: &'a [u8]) -> Self {
        ErrorFields { body }
    }

    /// The value of field `code` (`b'C'` SQLSTATE, `b'M'` message, `b'S'`
    /// localized severity, `b'V'` severity), if present and well formed.
    pub fn field(&self, code: u8) -> Option<&'a str> {
        let mut rest = self.body;
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                return None;
            }
            rest = tail;
            let value = take_cstr(&mut rest).ok()?;
            if c == code {
                return Some(value);
            }
        }
        None
    }

    /// SQLSTATE code.
    pub fn code(&self) -> Option<&'a str> {
        self.field(b'C')
    }

    /// Primary message.
    pub fn message(&self) -> Option<&'a str> {
        self.field(b'M')
    }

    /// Non-localized severity (`V`), falling back to `S`.
    pub fn severity(&self) -> Option<&'a str> {
        self.field(b'V').or_else(|| self.field(b'S'))
    }

    /// A FATAL or PANIC error: the server closes the connection after it.
    pub fn ends_session(&self) -> bool {
        matches!(self.severity(), Some("FATAL" | "PANIC"))
    }
}

/// An authentication request from a server (`R` message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear text.
    Cleartext,
    /// Send an MD5 hash of the password with this salt.
    Md5 {
        /// Four random bytes.
        salt: [u8; 4],
    },
    /// Start SASL; the body lists mechanism names.
    Sasl(&'a [u8]),
    /// A SASL challenge.
    SaslContinue(&'a [u8]),
    /// The SASL outcome (server signature).
    SaslFinal(&'a [u8]),
    /// Any other method (Kerberos, GSS, SSPI...), which the pooler does not speak.
    Unsupported(i32),
}

impl<'a> AuthRequest<'a> {
    /// Decodes an Authentication* body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ProtocolError> {
        if body.len() < 4 {
            return Err(ProtocolError::Malformed("authentication request too short"));
        }
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let rest = &body[4..];
        Ok(match code {
            0 => AuthRequest::Ok,
            3 => AuthRequest::Cleartext,
            5 => match rest {
                [a, b, c, d] => AuthRequest::Md5 { salt: [*a, *b, *c, *d] },
                _ => return Err(ProtocolError::Malformed("md5 request without a 4-byte salt")),
            },
            10 => AuthRequest::Sasl(rest),
            11 => AuthRequest::SaslContinue(rest),
            12 => AuthRequest::SaslFinal(rest),
            other => AuthRequest::Unsupported(other),
        })
    }

    /// Mechanism names of an [`AuthRequest::Sasl`] body.
    pub fn sasl_mechanisms(list: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        list.split(|&b| b == 0).take_while(|m| !m.is_empty())
    }
}

/// A simple Query: the SQL text, borrowed, without its terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL bytes as sent (not validated as UTF-8).
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    /// Decodes a Query body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ProtocolError> {
        match body.split_last() {
            Some((0, sql)) => Ok(Query { sql }),
            _ => Err(ProtocolError::Malformed("query string not terminated")),
        }
    }
}

/// Parse (extended protocol): statement name and SQL text, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The SQL text.
    pub sql: &'a str,
}

impl<'a> Parse<'a> {
    #[allow(clippy::self_named_constructors)] // `parse` decodes, as on every view here
    /// Decodes the name and query of a Parse body (parameter types are skipped).
    pub fn parse(mut body: &'a [u8]) -> Result<Self, ProtocolError> {
        let name = take_cstr(&mut body)?;
        let sql = take_cstr(&mut body)?;
        Ok(Parse { name, sql })
    }
}

/// Splits a NUL-terminated name off the front of `body`: the name (raw bytes)
/// and what follows it.
pub fn split_cstr(body: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let end = body.iter().position(|&b| b == 0).ok_or(ProtocolError::Malformed("string not terminated"))?;
    Ok((&body[..end], &body[end + 1..]))
}

/// Bind: portal and statement names, and the rest of the body (formats,
/// parameters, result formats) untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal name (raw bytes).
    pub portal: &'a [u8],
    /// Source statement name (raw bytes).
    pub statement: &'a [u8],
    /// Everything after the statement name.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Decodes the names at the front of a Bind body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let (portal, body) = split_cstr(body)?;
        let (statement, rest) = split_cstr(body)?;
        Ok(Bind { portal, statement, rest })
    }
}

/// Describe or Close: what is meant (`b'S'` statement, `b'P'` portal) and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// `b'S'` or `b'P'`.
    pub kind: u8,
    /// The name (raw bytes).
    pub name: &'a [u8],
}

impl<'a> Target<'a> {
    /// Decodes a Describe or Close body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let (&kind, rest) = body.split_first().ok_or(ProtocolError::Malformed("empty Describe or Close"))?;
        if kind != b'S' && kind != b'P' {
            return Err(ProtocolError::Malformed("Describe or Close of neither statement nor portal"));
        }
        let (name, rest) = split_cstr(rest)?;
        if !rest.is_empty() {
            return Err(ProtocolError::Malformed("trailing bytes after Describe or Close"));
        }
        Ok(Target { kind, name })
    }
}

/// The body of a client's `p` message during SASL: SASLInitialResponse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// Chosen mechanism.
    pub mechanism: &'a str,
    /// Client-first-message (empty when the client sent length -1).
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    /// Decodes SASLInitialResponse.
    pub fn parse(mut body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mechanism = take_cstr(&mut body)?;
        if body.len() < 4 {
            return Err(ProtocolError::Malformed("SASLInitialResponse too short"));
        }
        let len = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let data = &body[4..];
        if len == -1 && data.is_empty() {
            return Ok(SaslInitialResponse { mechanism, data });
        }
        if len < 0 || len as usize != data.len() {
            return Err(ProtocolError::Malformed("SASLInitialResponse length mismatch"));
        }
        Ok(SaslInitialResponse { mechanism, data })
    }
}

/// A PasswordMessage body: the password (or md5 hash) without its terminator.
pub fn password_message(body: &[u8]) -> Result<&[u8], ProtocolError> {
    match body.split_last() {
        Some((0, pw)) if !pw.contains(&0) => Ok(pw),
        _ => Err(ProtocolError::Malformed("password not terminated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_found_by_code() {
        let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0";
        let f = ErrorFields::new(body);
        assert_eq!(f.code(), Some("42P01"));
        assert_eq!(f.severity(), Some("ERROR"));
        assert_eq!(f.message(), Some("relation \"x\" does not exist"));
        assert_eq!(f.field(b'D'), None);
    }

    #[test]
    fn truncated_error_fields_do_not_panic() {
        let f = ErrorFields::new(b"SERR");
        assert_eq!(f.code(), None);
    }

    #[test]
    fn auth_requests_decode() {
        assert_eq!(AuthRequest::parse(&[0, 0, 0, 0]).unwrap(), AuthRequest::Ok);
        assert_eq!(AuthRequest::parse(&[0, 0, 0, 5, 1, 2, 3, 4]).unwrap(), AuthRequest::Md5 { salt: [1, 2, 3, 4] });
        let sasl = b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        let AuthRequest::Sasl(list) = AuthRequest::parse(sasl).unwrap() else { panic!() };
        let mechs: Vec<_> = AuthRequest::sasl_mechanisms(list).collect();
        assert_eq!(mechs, vec![&b"SCRAM-SHA-256-PLUS"[..], &b"SCRAM-SHA-256"[..]]);
        assert!(AuthRequest::parse(&[0, 0]).is_err());
    }

    #[test]
    fn ready_for_query_status_decodes() {
        assert_eq!(TransactionStatus::parse(b"T").unwrap(), TransactionStatus::InTransaction);
        assert!(TransactionStatus::parse(b"").is_err());
        assert!(TransactionStatus::parse(b"X").is_err());
    }

    #[test]
    fn bind_and_target_views_decode_names() {
        let b = Bind::parse(b"p1\0s1\0\0\0\0\0\0\0").unwrap();
        assert_eq!((b.portal, b.statement, b.rest), (&b"p1"[..], &b"s1"[..], &[0u8; 6][..]));
        assert!(Bind::parse(b"p1\0s1").is_err());
        assert_eq!(Target::parse(b"Sname\0").unwrap(), Target { kind: b'S', name: b"name" });
        assert!(Target::parse(b"Xname\0").is_err());
        assert!(Target::parse(b"").is_err());
        assert!(Target::parse(b"Sname\0junk").is_err());
    }

    fn notification_body(pid: i32, channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut body = pid.to_be_bytes().to_vec();
        body.extend_from_slice(channel);
        body.push(0);
        body.extend_from_slice(payload);
        body.push(0);
        body
    }

    #[test]
    fn notification_response_decodes() {
        let body = notification_body(4321, b"chan", b"hello \xe9");
        let n = NotificationResponse::parse(&body).unwrap();
        assert_eq!(n, NotificationResponse { pid: 4321, channel: b"chan", payload: b"hello \xe9" });
        // An empty payload (NOTIFY chan) and bytes in a non-UTF-8 encoding.
        let body = notification_body(-1, b"c\xff", b"");
        let n = NotificationResponse::parse(&body).unwrap();
        assert_eq!((n.pid, n.channel, n.payload), (-1, &b"c\xff"[..], &b""[..]));
        for bad in [&b""[..], b"\0\0\0", b"\0\0\0\x01", b"\0\0\0\x01chan", b"\0\0\0\x01chan\0payload"] {
            assert!(NotificationResponse::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notification_pid_is_rewritten_only_when_it_is_the_connections_own() {
        // The client's own NOTIFY on its pinned connection (pid 4321): the
        // client sees the pid it was given.
        let mut own = notification_body(4321, b"chan", b"self");
        assert_eq!(rewrite_notification_pid(&mut own, 4321, 90_000_001), Ok(true));
        assert_eq!(own, notification_body(90_000_001, b"chan", b"self"));
        // Another session's keeps its real pid; nothing else changes.
        let mut other = notification_body(777, b"chan", b"other");
        assert_eq!(rewrite_notification_pid(&mut other, 4321, 90_000_001), Ok(false));
        assert_eq!(other, notification_body(777, b"chan", b"other"));
        // Already the pid given (session mode): nothing to do.
        let mut same = notification_body(4321, b"chan", b"x");
        assert_eq!(rewrite_notification_pid(&mut same, 4321, 4321), Ok(false));
        assert_eq!(same, notification_body(4321, b"chan", b"x"));
    }

    #[test]
    fn malformed_notifications_are_errors_not_panics() {
        for bad in [&b""[..], b"\0\0", b"\0\0\x10\xe1", b"\0\0\x10\xe1chan\0no-end"] {
            let mut body = bad.to_vec();
            assert!(rewrite_notification_pid(&mut body, 4321, 1).is_err(), "{bad:?}");
            assert_eq!(body, bad, "left untouched");
        }
    }

    #[test]
    fn sasl_initial_response_checks_length() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&5i32.to_be_bytes());
        body.extend_from_slice(b"n,,ab");
        let r = SaslInitialResponse::parse(&body).unwrap();
        assert_eq!(r.mechanism, "SCRAM-SHA-256");
        assert_eq!(r.data, b"n,,ab");
        body.push(b'x');
        assert!(SaslInitialResponse::parse(&body).is_err());
    }
}
