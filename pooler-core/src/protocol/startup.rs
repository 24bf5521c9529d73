//! The startup phase: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.

use bytes::{Buf, BytesMut};

use super::ProtocolError;

/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH),
/// the 4-byte length word not counted: a packet is at most 10,004 bytes.
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
/// The length is checked as PostgreSQL checks it (at least 8 bytes, at most
/// [`MAX_STARTUP_PACKET`] after the length word) before anything is reserved;
/// a length it refuses is [`ProtocolError::InvalidStartupLength`], which
/// PostgreSQL answers by closing the connection without a word. Protocol
/// versions other than 3.x are refused (the caller answers with an error); 3.x
/// with a minor version above 0 is accepted and the caller negotiates down to
/// 3.0. An SSLRequest or GSSENCRequest with bytes after its code is still one
/// (PostgreSQL ignores them too).
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < 8 || len - 4 > MAX_STARTUP_PACKET {
        return Err(ProtocolError::InvalidStartupLength { len });
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
        SSL_REQUEST_CODE => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST_CODE => Ok(Some(StartupPacket::GssEncRequest)),
        CANCEL_REQUEST_CODE if packet.len() == 8 => Ok(Some(StartupPacket::Cancel(CancelKey {
            pid: i32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]),
            secret: i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        }))),
        CANCEL_REQUEST_CODE => Err(ProtocolError::InvalidStartupLength { len }),
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
        assert!(matches!(split_startup(&mut buf), Err(ProtocolError::InvalidStartupLength { len: 0x7fff_ffff })));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn lengths_are_checked_as_postgresql_checks_them() {
        // PostgreSQL refuses a length below 8, or above 10000 once the length
        // word is taken off; Terminate sent in place of a startup packet reads
        // as the length 0x58000000.
        for len in [0u32, 4, 7, 10_005, 0x7fff_ffff, u32::MAX, 0x5800_0000] {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            buf.extend_from_slice(&196_608u32.to_be_bytes());
            let got = split_startup(&mut buf);
            assert_eq!(got, Err(ProtocolError::InvalidStartupLength { len: len as usize }), "{len}");
        }
        // 10004 bytes in all is the largest packet PostgreSQL reads.
        let value = "v".repeat(10_004 - 8 - "application_name".len() - 2 - "user\0u\0".len() - 1);
        let raw = startup(196_608, &[("user", "u"), ("application_name", &value)]);
        assert_eq!(raw.len(), 10_004);
        let mut buf = BytesMut::from(&raw[..]);
        assert!(matches!(split_startup(&mut buf), Ok(Some(StartupPacket::Startup(_)))));
        let mut buf = BytesMut::from(&raw[..8]);
        assert_eq!(split_startup(&mut buf), Ok(None));
        // A CancelRequest must be 16 bytes; PostgreSQL calls anything else an
        // invalid length too.
        let mut buf = BytesMut::from(&12u32.to_be_bytes()[..]);
        buf.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(split_startup(&mut buf), Err(ProtocolError::InvalidStartupLength { len: 12 }));
        // An SSLRequest with a byte too many is still answered, as PostgreSQL does.
        let mut buf = BytesMut::from(&9u32.to_be_bytes()[..]);
        buf.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        buf.extend_from_slice(b"x");
        assert_eq!(split_startup(&mut buf), Ok(Some(StartupPacket::SslRequest)));
        assert!(buf.is_empty());
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
