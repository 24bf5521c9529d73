//! The startup phase: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.

use bytes::{Buf, BytesMut};

use super::ProtocolError;

/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Request code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Request code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Request code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// The first packet of a connection, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS; answer one byte (`S` or `N`) and read again.
    SslRequest,
    /// The client asks for GSSAPI encryption; answer `N` and read again.
    GssEncRequest,
    /// A cancel request for the session that was given this key.
    Cancel(CancelKey),
    /// A regular StartupMessage.
    Startup(StartupMessage),
}

/// The key a client uses to cancel its running query (BackendKeyData).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// Process id (or, for the pooler, a session id) from BackendKeyData.
    pub pid: i32,
    /// Secret key from BackendKeyData.
    pub secret: i32,
}

/// A decoded StartupMessage: protocol version and the parameter pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupMessage {
    /// Major protocol version (3).
    pub major: u16,
    /// Minor protocol version the client asked for.
    pub minor: u16,
    /// Parameters in the order sent (`user`, `database`, `options`, GUCs, ...).
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// The value of one startup parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Splits one startup-phase packet off `buf`. `Ok(None)` means read more.
///
/// The length is checked against [`MAX_STARTUP_PACKET`] before anything is
/// reserved. Protocol versions other than 3.x are refused (the caller answers
/// with an error); 3.x with a minor version above 0 is accepted and the caller
/// negotiates down to 3.0.
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < 8 {
        return Err(ProtocolError::Malformed("startup packet shorter than 8 bytes"));
    }
    if len > MAX_STARTUP_PACKET {
        return Err(ProtocolError::StartupTooLarge { len });
    }
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_u32();
    let packet = &packet[..];
    match code {
        SSL_REQUEST_CODE if packet.is_empty() => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST_CODE if packet.is_empty() => Ok(Some(StartupPacket::GssEncRequest)),
        CANCEL_REQUEST_CODE if packet.len() == 8 => Ok(Some(StartupPacket::Cancel(CancelKey {
            pid: i32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]),
            secret: i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        }))),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(ProtocolError::Malformed("request packet has the wrong length"))
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let params = parse_params(packet)?;
            Ok(Some(StartupPacket::Startup(StartupMessage { major, minor, params })))
        }
    }
}

/// Parses `name\0value\0 ... \0`.
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut body)?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body)?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if !body.is_empty() {
        return Err(ProtocolError::Malformed("bytes after the startup parameters' terminator"));
    }
    Ok(params)
}

/// Takes one NUL-terminated UTF-8 string off the front of `body`.
pub(crate) fn take_cstr<'a>(body: &mut &'a [u8]) -> Result<&'a str, ProtocolError> {
    let nul = body.iter().position(|&b| b == 0).ok_or(ProtocolError::Malformed("missing string terminator"))?;
    let s = std::str::from_utf8(&body[..nul]).map_err(|_| ProtocolError::InvalidUtf8)?;
    *body = &body[nul + 1..];
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        super::super::write::startup_message(&mut buf, (version & 0xffff) as u16, params);
        // Tests of other major versions patch the version field.
        buf[4..8].copy_from_slice(&version.to_be_bytes());
        buf.to_vec()
    }

    #[test]
    fn startup_message_params_are_decoded_in_order() {
        let mut buf = BytesMut::from(&startup(196608, &[("user", "alice"), ("database", "db")])[..]);
        let Some(StartupPacket::Startup(m)) = split_startup(&mut buf).unwrap() else { panic!() };
        assert_eq!((m.major, m.minor), (3, 0));
        assert_eq!(m.param("user"), Some("alice"));
        assert_eq!(m.param("database"), Some("db"));
        assert!(buf.is_empty());
    }

    #[test]
    fn ssl_gss_and_cancel_requests_are_recognised() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&8u32.to_be_bytes());
        buf.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(&8u32.to_be_bytes());
        buf.extend_from_slice(&GSSENC_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(&16u32.to_be_bytes());
        buf.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(&42i32.to_be_bytes());
        buf.extend_from_slice(&(-7i32).to_be_bytes());
        assert_eq!(split_startup(&mut buf).unwrap(), Some(StartupPacket::SslRequest));
        assert_eq!(split_startup(&mut buf).unwrap(), Some(StartupPacket::GssEncRequest));
        assert_eq!(split_startup(&mut buf).unwrap(), Some(StartupPacket::Cancel(CancelKey { pid: 42, secret: -7 })));
    }

    #[test]
    fn oversized_startup_packet_is_refused_without_allocating() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0][..]);
        assert!(matches!(split_startup(&mut buf), Err(ProtocolError::StartupTooLarge { .. })));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn protocol_2_is_refused() {
        let mut buf = BytesMut::from(&startup(2 << 16, &[("user", "a")])[..]);
        assert!(matches!(split_startup(&mut buf), Err(ProtocolError::UnsupportedProtocol { major: 2, minor: 0 })));
    }

    #[test]
    fn unterminated_parameter_is_malformed() {
        let mut raw = startup(196608, &[("user", "a")]);
        raw.pop();
        raw.pop();
        let len = raw.len() as u32;
        raw[..4].copy_from_slice(&len.to_be_bytes());
        let mut buf = BytesMut::from(&raw[..]);
        assert!(split_startup(&mut buf).is_err());
    }
}
