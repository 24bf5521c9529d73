//! End-to-end: hostile or broken client input gets a PostgreSQL-style error and
//! a closed connection, and the pooler keeps serving everyone else.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    pooler_core::protocol::write::startup_message(&mut buf, 0, params);
    buf.to_vec()
}

/// Reads until the server closes; returns everything received.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the pooler closes the connection");
    out
}

/// The SQLSTATE of the first ErrorResponse in `bytes`.
fn first_error_code(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[i + 1], bytes[i + 2], bytes[i + 3], bytes[i + 4]]) as usize;
        let end = (i + 1 + len).min(bytes.len());
        if bytes[i] == b'E' {
            let body = &bytes[i + 5..end];
            let mut j = 0;
            while j < body.len() && body[j] != 0 {
                let code = body[j];
                let start = j + 1;
                let stop = start + body[start..].iter().position(|&b| b == 0)?;
                if code == b'C' {
                    return Some(String::from_utf8_lossy(&body[start..stop]).into_owned());
                }
                j = stop + 1;
            }
        }
        i = end;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_startup_packets_get_errors_and_closed_sockets() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;

    // A startup packet claiming 2 GB.
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("08P01"));

    // Protocol 2.0.
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    let mut p = startup(&[("user", "postgres")]);
    p[4..8].copy_from_slice(&(2u32 << 16).to_be_bytes());
    s.write_all(&p).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("0A000"));

    // No user name.
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    s.write_all(&startup(&[("database", "postgres")])).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("28000"));

    // Garbage.
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let _ = read_to_close(&mut s).await;

    // SSLRequest is answered 'N'.
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"N");

    // Everyone else is still served.
    let c = pooler.connect("postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_invalid_messages_after_login_close_the_session_cleanly() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.server.max_message_size = 64 * 1024;
    let pooler = TestPooler::start(config, None).await;

    // A Query declaring 1 GB: refused before anything is allocated for it.
    let mut s = raw_login(pooler.addr).await;
    s.write_all(&[b'Q', 0x40, 0, 0, 0]).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("54000"));

    // A length below 4.
    let mut s = raw_login(pooler.addr).await;
    s.write_all(&[b'Q', 0, 0, 0, 2]).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("08P01"));

    // An unknown message type reaches PostgreSQL, which answers 08P01 and closes.
    let mut s = raw_login(pooler.addr).await;
    s.write_all(&[b'!', 0, 0, 0, 4]).await.unwrap();
    assert_eq!(first_error_code(&read_to_close(&mut s).await).as_deref(), Some("08P01"));

    let c = pooler.connect("postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_pooler_down() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let mut s = if round % 2 == 0 { TcpStream::connect(pooler.addr).await.unwrap() } else { raw_login(pooler.addr).await };
        let len = (next() % 300) as usize;
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    }
    let c = pooler.connect("postgres").await;
    assert_eq!(c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
}
