//! The transport over real socket pairs (no network): plaintext, and TLS
//! driven the way the relay drives a stream.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UnixStream;

use super::Stream;

/// A connected pair over a socketpair: a real socket, no network.
fn pair() -> (Stream, Stream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (Stream::from(a), Stream::from(b))
}

/// Reads until `want` bytes arrived (or the peer closed).
async fn read_exactly(s: &mut Stream, want: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    while buf.len() < want {
        if s.read_some(&mut buf).await.expect("read") == 0 {
            break;
        }
    }
    buf
}

#[tokio::test]
async fn bytes_flushed_on_one_side_are_read_whole_on_the_other_and_a_close_reads_as_zero() {
    let (mut a, mut b) = pair();
    assert!(b.is_quiet(), "nothing sent yet");
    let mut out = BytesMut::from(&b"Q\0\0\0\x0dSELECT 1\0"[..]);
    a.flush(&mut out).unwrap();
    assert!(out.is_empty(), "a small write goes out at once");
    let buf = read_exactly(&mut b, 14).await;
    assert_eq!(&buf[..], b"Q\0\0\0\x0dSELECT 1\0");
    drop(a);
    b.readable().await.unwrap();
    let mut rest = BytesMut::new();
    assert_eq!(b.read_ready(&mut rest).unwrap(), Some(0));
}

#[tokio::test]
async fn a_stale_readiness_reads_nothing_instead_of_blocking() {
    let (_a, mut b) = pair();
    let mut buf = BytesMut::new();
    assert_eq!(b.read_ready(&mut buf).unwrap(), None);
}

#[tokio::test]
async fn flush_takes_what_the_socket_takes_and_flush_all_the_rest_once_the_peer_reads() {
    let (mut a, mut b) = pair();
    let big = vec![7u8; 4 << 20];
    let mut out = BytesMut::from(&big[..]);
    a.flush(&mut out).unwrap();
    assert!(!out.is_empty(), "a socket buffer is smaller than 4 MiB");
    let reader = tokio::spawn(async move { read_exactly(&mut b, 4 << 20).await.len() });
    a.flush_all(&mut out).await.unwrap();
    assert_eq!(reader.await.unwrap(), 4 << 20);
}

/// A server and a client TLS configuration trusting one throwaway
/// self-signed certificate for `localhost`, made here.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = made.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn tls_pair() -> (Stream, Stream) {
    let (server, client) = tls_configs();
    let (mut a, mut b) = pair();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    a.accept_tls(server, &[]).expect("server side");
    b.connect_tls(client, name).expect("client side");
    (a, b)
}

/// Echoes what it reads, driven the way the relay drives a stream: one
/// `select!` over readable and writable, `read_ready` and `flush` between,
/// until the peer closes; the bytes it saw.
async fn echo_like_the_relay(mut s: Stream) -> usize {
    let mut inbox = BytesMut::new();
    let mut out = BytesMut::new();
    let mut seen = 0;
    loop {
        s.flush(&mut out).expect("flush");
        let want_write = !out.is_empty() || s.wants_write();
        tokio::select! {
            r = s.readable() => {
                r.expect("readable");
                match s.read_ready(&mut inbox).expect("read") {
                    Some(0) => return seen,
                    Some(n) => {
                        seen += n;
                        out.extend_from_slice(&inbox.split());
                    }
                    None => {}
                }
            }
            r = s.writable(), if want_write => r.expect("writable"),
        }
    }
}

#[tokio::test]
async fn tls_over_the_transport_carries_bytes_both_ways_through_a_relay_style_loop() {
    let (server, mut client) = tls_pair();
    let echo = tokio::spawn(echo_like_the_relay(server));
    // Small messages first (the handshake runs under them), then 1 MiB.
    client.write_all(b"ping").await.unwrap();
    assert_eq!(&read_exactly(&mut client, 4).await[..], b"ping");
    assert!(!client.is_handshaking());
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let (mut rd, wr) = (client, big.clone());
    let mut out = BytesMut::from(&wr[..]);
    // Writing and reading at once, as a pipelining client does.
    let mut got = BytesMut::new();
    while got.len() < big.len() {
        rd.flush(&mut out).unwrap();
        tokio::select! {
            r = rd.readable() => { r.unwrap(); rd.read_ready(&mut got).unwrap(); }
            r = rd.writable(), if !out.is_empty() || rd.wants_write() => r.unwrap(),
        }
    }
    assert!(got[..] == big[..], "every byte came back in order");
    drop(rd);
    assert_eq!(echo.await.unwrap(), 4 + big.len(), "the server saw the close after the data");
}

#[tokio::test]
async fn a_peer_that_does_not_speak_tls_is_an_error_not_a_hang() {
    let (server, _) = tls_configs();
    let (mut s, mut b) = pair();
    s.accept_tls(server, &[]).unwrap();
    b.write_all(b"Q\0\0\0\x0dSELECT 1\0 this is not a TLS record").await.unwrap();
    let mut buf = BytesMut::new();
    let err = loop {
        s.readable().await.unwrap();
        match s.read_ready(&mut buf) {
            Ok(None) => continue,
            Ok(Some(n)) => panic!("plaintext from a non-TLS peer: {n} bytes"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn an_explicit_handshake_finishes_both_sides_and_reports_the_session() {
    let (mut server, mut client) = tls_pair();
    let (a, b) = tokio::join!(server.handshake(), client.handshake());
    a.expect("server handshake");
    b.expect("client handshake");
    assert!(!server.is_handshaking() && !client.is_handshaking());
    let info = server.tls_info().expect("a TLS session");
    assert!(info.version.starts_with("TLSv1."), "{info:?}");
    assert!(!info.cipher.is_empty());
    assert_eq!(info.client_cn, None, "no client certificate was asked for");
    assert!(client.peer_certificate().is_some(), "the client saw the server's certificate");
    // Plaintext after an explicit handshake flows as before.
    client.write_all(b"after").await.unwrap();
    assert_eq!(&read_exactly(&mut server, 5).await[..], b"after");
}

#[tokio::test]
async fn early_handshake_bytes_given_to_accept_tls_are_not_lost() {
    // A direct-TLS client's ClientHello is read before the pooler knows it is
    // TLS: those bytes are handed to accept_tls.
    let (server, client) = tls_configs();
    let (mut a, mut b) = pair();
    b.connect_tls(client, rustls::pki_types::ServerName::try_from("localhost").unwrap()).unwrap();
    let client_task = tokio::spawn(async move {
        b.handshake().await.expect("client handshake");
        b.write_all(b"hello").await.unwrap();
        b
    });
    let mut early = BytesMut::new();
    while early.len() < 5 {
        a.read_some(&mut early).await.unwrap();
    }
    assert_eq!(early[0], 0x16, "a TLS handshake record");
    a.accept_tls(server, &early).unwrap();
    a.handshake().await.expect("server handshake with the early bytes");
    assert_eq!(&read_exactly(&mut a, 5).await[..], b"hello");
    drop(client_task.await.unwrap());
}
