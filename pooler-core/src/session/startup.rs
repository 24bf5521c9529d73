//! The startup phase of a client connection: the first packets until a
//! StartupMessage, answering SSLRequest (TLS when `[client_tls]` offers it,
//! PostgreSQL 17's direct TLS too) and GSSENCRequest, forwarding a
//! CancelRequest, and the connections PostgreSQL closes without a word.

use crate::error::Error;
use crate::protocol::messages::tag;
use crate::protocol::write as w;
use crate::protocol::{split_startup, ProtocolError, StartupMessage, StartupPacket};
use crate::runtime::Shared;
use crate::transport::Peer;

use super::Client;

/// What the startup phase came to.
pub(super) enum Startup {
    /// A StartupMessage: the client logs in.
    Message(StartupMessage),
    /// The connection ends with no answer, as PostgreSQL ends it.
    Silent(Silent),
}

/// Why a connection ends before a StartupMessage without an answer: the
/// cases PostgreSQL closes without sending anything (it logs the protocol
/// violations, not the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Silent {
    /// The TLS handshake failed (the client got a TLS alert, if anything):
    /// a wrong CA, no certificate where one is required, direct TLS without
    /// the `postgresql` ALPN protocol.
    Tls(String),
    /// A CancelRequest (forwarded, or matching no session).
    Cancel,
    /// Closed without a byte (health checks and port scanners do this; so
    /// does a client that did not like the answer to its SSLRequest).
    Closed,
    /// Closed in the middle of a packet.
    Incomplete,
    /// Terminate sent in place of a startup packet (a driver giving up at
    /// once; to PostgreSQL an invalid length).
    Terminate,
    /// A length PostgreSQL refuses: below 8 bytes, above 10,004 or a
    /// CancelRequest not 16 bytes long.
    InvalidLength(usize),
}

impl Silent {
    pub(super) fn log(self, peer: Peer) {
        match self {
            Silent::Cancel => tracing::debug!(client = %peer, "cancel request handled"),
            Silent::Closed => tracing::debug!(client = %peer, "client closed the connection before a startup packet"),
            Silent::Terminate => tracing::debug!(client = %peer, "client sent Terminate instead of a startup packet"),
            Silent::Incomplete => tracing::info!(client = %peer, "incomplete startup packet"),
            Silent::InvalidLength(len) => tracing::info!(client = %peer, len, "invalid length of startup packet"),
            Silent::Tls(why) => {
                tracing::info!(client = %peer, reason = why.as_str(), "could not accept TLS connection")
            }
        }
    }
}

/// Reads the startup packet, answering SSL and GSS requests with `N` and
/// handling a cancel request.
pub(super) async fn read_startup(client: &mut Client, shared: &Shared) -> Result<Startup, Error> {
    let mut negotiations = 0;
    loop {
        // PostgreSQL 17's direct TLS: a TLS handshake record where a startup
        // packet's length would be (whose first byte is always 0).
        if client.buf.first() == Some(&TLS_HANDSHAKE) && !client.stream.is_tls() {
            if let Some(acceptor) = shared.tls.clients.load_full() {
                let early = client.buf.split();
                if let Err(why) = start_tls(client, &acceptor, &early).await {
                    return Ok(Startup::Silent(Silent::Tls(why)));
                }
                if client.stream.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
                    let why = "direct TLS connection without the \"postgresql\" ALPN protocol";
                    return Ok(Startup::Silent(Silent::Tls(why.into())));
                }
                continue;
            }
        }
        let packet = match split_startup(&mut client.buf) {
            Ok(p) => p,
            Err(ProtocolError::InvalidStartupLength { len }) => {
                let terminate = client.buf.starts_with(&[tag::TERMINATE, 0, 0, 0, 4]);
                return Ok(Startup::Silent(if terminate { Silent::Terminate } else { Silent::InvalidLength(len) }));
            }
            Err(e) => return Err(Error::ClientProtocol(e)),
        };
        match packet {
            Some(request @ (StartupPacket::SslRequest | StartupPacket::GssEncRequest)) => {
                negotiations += 1;
                if negotiations > 2 {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed("too many encryption requests")));
                }
                if client.stream.is_tls() {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed(
                        "encryption requested on an encrypted connection",
                    )));
                }
                let acceptor = match request {
                    StartupPacket::SslRequest => shared.tls.clients.load_full(),
                    // GSSAPI encryption is not offered.
                    _ => None,
                };
                let Some(acceptor) = acceptor else {
                    // The client goes on in plain text or gives up, as it chooses.
                    client.stream.write_all(b"N").await.map_err(Error::ClientIo)?;
                    continue;
                };
                // Bytes sent after SSLRequest and before the handshake would be
                // taken as if encrypted (CVE-2021-23214): refused.
                if !client.buf.is_empty() {
                    return Err(Error::ClientProtocol(ProtocolError::Malformed(
                        "received unencrypted data after SSL request",
                    )));
                }
                client.stream.write_all(b"S").await.map_err(Error::ClientIo)?;
                if let Err(why) = start_tls(client, &acceptor, &[]).await {
                    return Ok(Startup::Silent(Silent::Tls(why)));
                }
            }
            Some(StartupPacket::Cancel(key)) => {
                shared.forward_cancel(key).await;
                return Ok(Startup::Silent(Silent::Cancel));
            }
            Some(StartupPacket::Startup(msg)) => {
                negotiate_version(client, &msg);
                if let Some(r) = msg.param("replication") {
                    if !matches!(r.to_ascii_lowercase().as_str(), "false" | "off" | "no" | "0") {
                        return Err(Error::Refused {
                            code: "08P01",
                            message: "replication connections are not supported by the pooler; connect to the server directly".into(),
                        });
                    }
                }
                return Ok(Startup::Message(msg));
            }
            None => {
                if client.fill().await? == 0 {
                    let why = if client.buf.is_empty() { Silent::Closed } else { Silent::Incomplete };
                    return Ok(Startup::Silent(why));
                }
            }
        }
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Runs the server side of a TLS handshake with `client`; `early`: handshake
/// bytes already read. The error is the reason, for the log.
async fn start_tls(client: &mut Client, acceptor: &crate::tls::Acceptor, early: &[u8]) -> Result<(), String> {
    client.stream.accept_tls(acceptor.config.clone(), early).map_err(|e| e.to_string())?;
    client.stream.handshake().await.map_err(|e| e.to_string())?;
    client.channel_binding = acceptor.end_point.clone();
    Ok(())
}

/// Queues NegotiateProtocolVersion when the client asked for a newer minor
/// version or for protocol options (`_pq_.*`) the pooler does not know.
fn negotiate_version(client: &mut Client, msg: &StartupMessage) {
    let unknown: Vec<&str> = msg.params.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("_pq_.")).collect();
    if msg.minor > 0 || !unknown.is_empty() {
        w::negotiate_protocol_version(&mut client.out, 0, &unknown);
    }
}
