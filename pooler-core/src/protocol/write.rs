//! Writers for the messages the pooler itself emits to clients.
//!
//! Messages the pooler sends to servers (startup, password, SASL, query, cancel,
//! terminate) use `postgres_protocol::message::frontend`.

use bytes::{BufMut, BytesMut};

use super::messages::TransactionStatus;

/// Appends a message with tag `tag` whose body `body` writes.
#[inline]
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the string early on the other side; drop it.
    buf.extend(s.iter().copied().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// Severity of an error the pooler reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the connection stays usable.
    Error,
    /// The connection is being closed.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse with severity, SQLSTATE and message (fields S, V, C, M).
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: &str, msg: &str) {
    message(buf, b'E', |b| {
        b.put_u8(b'S');
        cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'V');
        cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'C');
        cstr(b, code.as_bytes());
        b.put_u8(b'M');
        cstr(b, msg.as_bytes());
        b.put_u8(0);
    });
}

/// NoticeResponse (severity NOTICE, SQLSTATE 00000) with `msg`.
pub fn notice(buf: &mut BytesMut, msg: &str) {
    message(buf, b'N', |b| {
        for (field, value) in [(b'S', "NOTICE"), (b'V', "NOTICE"), (b'C', "00000"), (b'M', msg)] {
            b.put_u8(field);
            cstr(b, value.as_bytes());
        }
        b.put_u8(0);
    });
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    message(buf, b'R', |b| b.put_i32(0));
}

/// AuthenticationMD5Password with `salt`.
pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    message(buf, b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

/// AuthenticationSASL; `mechanisms` is the NUL-separated, NUL-terminated list.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(10);
        b.put_slice(mechanisms);
    });
}

/// AuthenticationSASLContinue.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

/// AuthenticationSASLFinal.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    message(buf, b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, b'S', |b| {
        cstr(b, name.as_bytes());
        cstr(b, value.as_bytes());
    });
}

/// BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    message(buf, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

/// ReadyForQuery.
pub fn ready_for_query(buf: &mut BytesMut, status: TransactionStatus) {
    message(buf, b'Z', |b| b.put_u8(status.as_byte()));
}

/// NegotiateProtocolVersion: the newest minor version we speak and the
/// `_pq_.` options we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: u16, unsupported: &[&str]) {
    message(buf, b'v', |b| {
        b.put_u32((3 << 16) | minor as u32);
        b.put_u32(unsupported.len() as u32);
        for o in unsupported {
            cstr(b, o.as_bytes());
        }
    });
}

/// A StartupMessage for protocol 3.`minor` with these parameters (what a
/// client sends first; used by tools and tests that speak as a client).
pub fn startup_message(buf: &mut BytesMut, minor: u16, params: &[(&str, &str)]) {
    let at = buf.len();
    buf.put_u32(0);
    buf.put_u32((3 << 16) | minor as u32);
    for (k, v) in params {
        cstr(buf, k.as_bytes());
        cstr(buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A simple Query message (used for reset and SET statements sent to servers).
pub fn query(buf: &mut BytesMut, sql: &str) {
    message(buf, b'Q', |b| cstr(b, sql.as_bytes()));
}

/// ParseComplete.
pub fn parse_complete(buf: &mut BytesMut) {
    buf.extend_from_slice(&[b'1', 0, 0, 0, 4]);
}

/// CloseComplete.
pub fn close_complete(buf: &mut BytesMut) {
    buf.extend_from_slice(&[b'3', 0, 0, 0, 4]);
}

/// CommandComplete with its command tag (e.g. `DEALLOCATE`).
pub fn command_complete(buf: &mut BytesMut, command: &str) {
    message(buf, b'C', |b| cstr(b, command.as_bytes()));
}

/// Parse (to a server) for statement `name`; `rest` is the body after the name
/// as the client sent it (query text, parameter type count and types).
pub fn parse_named(buf: &mut BytesMut, name: &str, rest: &[u8]) {
    message(buf, b'P', |b| {
        cstr(b, name.as_bytes());
        b.extend_from_slice(rest);
    });
}

/// Bind (to a server) of `portal` to statement `statement`; `rest` is the body
/// after the statement name as the client sent it (formats and parameters).
pub fn bind_named(buf: &mut BytesMut, portal: &[u8], statement: &str, rest: &[u8]) {
    message(buf, b'B', |b| {
        cstr(b, portal);
        cstr(b, statement.as_bytes());
        b.extend_from_slice(rest);
    });
}

/// Describe (`b'S'` statement or `b'P'` portal) or Close, by `tag`, of `name`.
pub fn describe_or_close(buf: &mut BytesMut, tag: u8, kind: u8, name: &str) {
    message(buf, tag, |b| {
        b.put_u8(kind);
        cstr(b, name.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::super::frame::split_frame;
    use super::super::messages::ErrorFields;
    use super::*;

    #[test]
    fn error_response_round_trips_through_the_view() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Fatal, "28P01", "password authentication failed for user \"a\"");
        let f = split_frame(&mut buf, 1024).unwrap().unwrap();
        let e = ErrorFields::new(f.body());
        assert_eq!(e.code(), Some("28P01"));
        assert_eq!(e.severity(), Some("FATAL"));
        assert_eq!(e.message(), Some("password authentication failed for user \"a\""));
    }

    #[test]
    fn lengths_cover_the_body() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, TransactionStatus::Idle);
        assert_eq!(&buf[..], b"Z\0\0\0\x05I");
    }
}
