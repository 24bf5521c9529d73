//! End-to-end: hostile or broken client input gets a PostgreSQL-style error (or,
//! where PostgreSQL sends none, nothing) and a closed connection, and the pooler
//! keeps serving everyone else.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    pooler_core::internals::write::startup_message(&mut buf, 0, params);
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

    // A startup packet claiming 2 GB: closed without a word, as PostgreSQL
    // does (see `startup_packets_postgres_ignores_are_ignored_alike`).
    let mut s = TcpStream::connect(pooler.addr).await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"");

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

/// Connects to `addr`, writes `bytes` (if any), closes the writing side, and
/// returns everything received until the peer closes (a reset counts as a
/// close: a server that closes with unread bytes sends one).
async fn answer_to(addr: std::net::SocketAddr, bytes: impl AsRef<[u8]>, close: bool) -> Vec<u8> {
    let bytes = bytes.as_ref();
    let mut s = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        s.write_all(bytes).await.unwrap();
    }
    if close {
        s.shutdown().await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => panic!("{addr} did not close the connection after {bytes:?}"),
            Ok(Ok(0)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Ok(Err(e)) => panic!("{addr}: {e}"),
        }
    }
}

/// What PostgreSQL 15 closes without answering (it logs the protocol
/// violations), the pooler closes without answering too: byte for byte the
/// same as a raw socket gets from PostgreSQL directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packets_postgres_ignores_are_ignored_alike() {
    let cluster = primary_only().await;
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let postgres: std::net::SocketAddr = format!("127.0.0.1:{}", cluster.primary().port()).parse().unwrap();

    let length = |len: u32| [&len.to_be_bytes()[..], &196_608u32.to_be_bytes()[..]].concat();
    let request = |len: u32, code: u32, rest: &[u8]| [&len.to_be_bytes()[..], &code.to_be_bytes()[..], rest].concat();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("length 4", length(4), false),
        ("length 7", length(7), false),
        ("length 0", length(0), false),
        ("length 10005 (10000 after the length word is PostgreSQL's limit)", length(10_005), false),
        ("length 0x7fffffff", length(0x7fff_ffff), false),
        // 10001 is within PostgreSQL's limit: it waits for the rest, which
        // never comes.
        ("length 10001, then closed", length(10_001), true),
        ("Terminate before the startup packet", b"X\0\0\0\x04".to_vec(), false),
        ("Terminate before the startup packet, then closed", b"X\0\0\0\x04".to_vec(), true),
        ("closed at once", Vec::new(), true),
        ("closed inside the length word", vec![0, 0], true),
        ("CancelRequest of 12 bytes", request(12, 80_877_102, &[0, 0, 0, 1]), false),
        ("CancelRequest matching nothing", request(16, 80_877_102, &[0, 0, 0, 1, 0, 0, 0, 2]), false),
        ("SSLRequest, then closed", request(8, 80_877_103, &[]), true),
        ("SSLRequest with a byte too many, then closed", request(9, 80_877_103, b"x"), true),
    ];
    for (what, bytes, close) in &cases {
        let direct = answer_to(postgres, bytes, *close).await;
        let through = answer_to(pooler.addr, bytes, *close).await;
        let (p, d) = (String::from_utf8_lossy(&through), String::from_utf8_lossy(&direct));
        assert_eq!(through, direct, "{what}: the pooler answered {p:?}, PostgreSQL {d:?}");
    }
    let c = pooler.connect("postgres").await;
    c.simple_query("SELECT 1").await.unwrap();
}

/// A client that sends no startup packet, or does not answer the password
/// request, in time: PostgreSQL (`authentication_timeout`) closes without an
/// answer, and so does the pooler (`client_login_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeouts_close_without_an_answer_as_postgres_does() {
    let cluster = tokio::task::spawn_blocking(|| {
        pooler_testkit::Cluster::builder()
            .setting("authentication_timeout", "1s")
            .hba_line("host all scram_user 127.0.0.1/32 scram-sha-256")
            .init_sql("CREATE ROLE scram_user LOGIN PASSWORD 'pw'")
            .start()
    })
    .await
    .unwrap()
    .expect("start PostgreSQL");
    let mut config = trust_config(&cluster);
    config.auth.method = pooler_core::config::AuthMethod::ScramSha256;
    config.server.client_login_timeout = Duration::from_secs(1);
    let passwords = pooler_core::PasswordFile::parse("scram_user:pw\n").unwrap();
    let pooler = TestPooler::start(config, Some(passwords)).await;
    let postgres: std::net::SocketAddr = format!("127.0.0.1:{}", cluster.primary().port()).parse().unwrap();

    let login = startup(&[("user", "scram_user"), ("database", "postgres")]);
    let cases: [(&str, &[u8]); 2] = [("no startup packet", b""), ("no answer to the SCRAM request", &login)];
    // All four wait out their timeouts at the same time.
    let waits: Vec<_> = cases
        .iter()
        .flat_map(|(_, bytes)| [postgres, pooler.addr].map(|addr| tokio::spawn(answer_to(addr, bytes.to_vec(), false))))
        .collect();
    let mut answers = Vec::new();
    for w in waits {
        answers.push(w.await.unwrap());
    }
    for ((what, _), pair) in cases.iter().zip(answers.chunks(2)) {
        let (direct, through) = (&pair[0], &pair[1]);
        let (p, d) = (String::from_utf8_lossy(through), String::from_utf8_lossy(direct));
        assert_eq!(through, direct, "{what}: the pooler answered {p:?}, PostgreSQL {d:?}");
    }
    // The SCRAM request itself is the same from both.
    assert!(answers[2].starts_with(b"R"), "{:?}", answers[2]);
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

    // An unknown message type: the pooler answers 08P01 as PostgreSQL would
    // (see `unknown_message_types_get_postgres_answer_from_the_pooler_itself`).
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
        let mut s =
            if round % 2 == 0 { TcpStream::connect(pooler.addr).await.unwrap() } else { raw_login(pooler.addr).await };
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

/// A fake "PostgreSQL" that logs anyone in, then answers the first query with
/// `reply`, and the cases a broken or hostile server can produce.
async fn fake_server(reply: Vec<u8>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                // Startup packet (after declining TLS, as PostgreSQL with
                // ssl = off does: the pooler asks first under sslmode prefer).
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                if buf[..n] == [0, 0, 0, 8, 4, 210, 22, 47] {
                    let _ = s.write_all(b"N").await;
                    if s.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
                let mut hello = bytes::BytesMut::new();
                hello.extend_from_slice(b"R\0\0\0\x08\0\0\0\0");
                pooler_core::internals::write::parameter_status(&mut hello, "server_version", "15.0");
                pooler_core::internals::write::backend_key_data(&mut hello, 1, 2);
                hello.extend_from_slice(b"Z\0\0\0\x05I");
                let _ = s.write_all(&hello).await;
                // Anything that looks like a query gets the bad reply.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].contains(&b'Q') {
                        let _ = s.write_all(&reply).await;
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_server_replies_end_the_session_with_an_error_not_a_panic() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid ReadyForQuery status", b"Z\0\0\0\x05Q".to_vec()),
        ("ParameterStatus declaring 2 GB", b"S\x7f\xff\xff\xff".to_vec()),
        ("length below four", b"C\0\0\0\x01".to_vec()),
        ("ParameterStatus without terminators", b"S\0\0\0\x08abcd".to_vec()),
        ("server closes mid-row", b"D\0\0\x10\0partial".to_vec()),
    ];
    for (what, reply) in cases {
        let (port, fake) = fake_server(reply).await;
        let node = pooler_core::config::NodeConfig::new("127.0.0.1", port);
        let mut config = pooler_core::Config::with_nodes(vec![node]);
        config.auth.method = pooler_core::config::AuthMethod::Trust;
        config.server.max_message_size = 64 * 1024;
        let pooler = TestPooler::start(config, None).await;
        let mut s = raw_login(pooler.addr).await;
        let mut q = bytes::BytesMut::new();
        pooler_core::internals::write::query(&mut q, "SELECT 1");
        s.write_all(&q).await.unwrap();
        if what == "server closes mid-row" {
            // The fake keeps the socket open; the client gives up instead, and
            // the pooler must not hang on to anything.
            let mut got = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got)).await.unwrap().unwrap();
            assert!(n > 0, "{what}: the partial row is relayed");
            drop(s);
        } else {
            let got = read_to_close(&mut s).await;
            assert_eq!(first_error_code(&got).as_deref(), Some("08P01"), "{what}: {got:?}");
        }
        fake.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_postgres_server_is_reported_not_trusted() {
    // Something else listens where PostgreSQL should be (an HTTP server, say).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let node = pooler_core::config::NodeConfig::new("127.0.0.1", port);
    let mut config = pooler_core::Config::with_nodes(vec![node]);
    config.auth.method = pooler_core::config::AuthMethod::Trust;
    let pooler = TestPooler::start(config, None).await;
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{e}");
    assert!(message(&e).contains("server protocol violation"), "{e}");
    fake.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_refuses_malformed_messages_and_keeps_serving() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    config.pool.size = 2;
    config.server.max_message_size = 64 * 1024;
    let pooler = TestPooler::start(config, None).await;

    // Oversized, then malformed messages the transaction relay must look into.
    let cases: [(&[u8], &str); 5] = [
        (&[b'Q', 0x40, 0, 0, 0], "54000"),
        (&[b'B', 0, 0, 0, 7, b'p', 0, b's'], "08P01"),
        (&[b'D', 0, 0, 0, 7, b'X', b'a', 0], "08P01"),
        (&[b'C', 0, 0, 0, 5, b'S'], "08P01"),
        (&[b'P', 0, 0, 0, 8, b'n', 0, b'x', b'y'], "08P01"),
    ];
    for (bytes, code) in cases {
        let mut s = raw_login(pooler.addr).await;
        s.write_all(bytes).await.unwrap();
        let got = read_to_close(&mut s).await;
        assert_eq!(first_error_code(&got).as_deref(), Some(code), "{bytes:?}");
    }
    // Random bytes after login, in transaction mode.
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..30 {
        let mut s = raw_login(pooler.addr).await;
        let len = (seed % 200) as usize + 1;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
    }
    // Nothing leaked: both pool connections still serve.
    let a = pooler.connect("postgres").await;
    let b = pooler.connect("postgres").await;
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(b.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    a.batch_execute("COMMIT").await.unwrap();
}

/// Logs in at `addr`, sends `bytes`, and returns every message until the close.
async fn answer_after_login(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut s = raw_login(addr).await;
    s.write_all(bytes).await.unwrap();
    read_until_closed(&mut s, &mut Vec::new()).await
}

/// The pid of the server connection a pool of one lends, asked through `pooler`.
async fn pooled_backend(pooler: &TestPooler) -> i32 {
    let c = pooler.connect("postgres").await;
    c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

/// A message type no client may send after login ('@', 0x00, 'p' which is
/// for authentication only, ...): PostgreSQL 15 answers `FATAL 08P01 invalid
/// frontend message type N` on the type byte alone, after answering what
/// came before it, and closes. The pooler gives the same answer itself, in
/// session and transaction mode, and forwards none of it: the server
/// connection is kept (before, it was forwarded, the server dropped its
/// backend, and a transaction-mode client got no answer at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_get_postgres_answer_from_the_pooler_itself() {
    let cluster = primary_only().await;
    let postgres: std::net::SocketAddr = format!("127.0.0.1:{}", cluster.primary().port()).parse().unwrap();
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    let session = TestPooler::start(config.clone(), None).await;
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    let transaction = TestPooler::start(config, None).await;
    let before = [pooled_backend(&session).await, pooled_backend(&transaction).await];

    let query = |sql: &str| message_bytes(b'Q', format!("{sql}\0").as_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("'@'", message_bytes(b'@', b"")),
        ("0x00", message_bytes(0, b"")),
        ("'p' (a password message) after login", message_bytes(b'p', b"secret\0")),
        ("'!', only the type byte", b"!".to_vec()),
        ("'@' declaring 1 GB", vec![b'@', 0x40, 0, 0, 0]),
        ("SELECT 1, then '@' in the same write", [query("SELECT 1"), message_bytes(b'@', b"")].concat()),
        ("BEGIN, then '@'", [query("BEGIN"), message_bytes(b'@', b"")].concat()),
        ("SELECT pg_sleep(0.3), then '@'", [query("SELECT pg_sleep(0.3)"), message_bytes(b'@', b"")].concat()),
    ];
    for (what, bytes) in &cases {
        let direct = answer_after_login(postgres, bytes).await;
        let error = describe(&direct).pop().unwrap_or_default();
        assert!(error.starts_with("E FATAL 08P01 invalid frontend message type "), "{what}: PostgreSQL said {error}");
        for (mode, pooler) in [("session", &session), ("transaction", &transaction)] {
            let through = answer_after_login(pooler.addr, bytes).await;
            // The same messages; the error's fields but for PostgreSQL's
            // source location (file, line, routine) the same too.
            assert_eq!(describe(&through), describe(&direct), "{what}, {mode} mode");
            let others = |m: &[(u8, Vec<u8>)]| m.iter().filter(|(t, _)| *t != b'E').cloned().collect::<Vec<_>>();
            assert_eq!(others(&through), others(&direct), "{what}, {mode} mode");
        }
    }
    // Nothing reached the server: each pool's one connection still serves.
    let after = [pooled_backend(&session).await, pooled_backend(&transaction).await];
    assert_eq!(after, before, "the server connections were kept");
}

/// `server.max_message_size` bounds only what the pooler gathers whole. In
/// session mode a Bind streams through at any size, as PostgreSQL takes it;
/// transaction mode rewrites the statement name in it, so gathers it whole,
/// and one over the limit gets FATAL 54000 naming the setting and a close,
/// with nothing forwarded and the server connection kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_over_max_message_size_streams_in_session_mode_and_is_refused_in_transaction_mode() {
    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    config.server.max_message_size = 64 * 1024;
    let session = TestPooler::start(config.clone(), None).await;
    config.pool.mode = pooler_core::config::PoolMode::Transaction;
    let transaction = TestPooler::start(config, None).await;

    let value = vec![b'x'; 200_000];
    let mut bind = b"\0s\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
    bind.extend_from_slice(&value);
    bind.extend_from_slice(b"\0\0");
    let parse = [message_bytes(b'P', b"s\0SELECT length($1::text)\0\0\0"), message_bytes(b'S', b"")].concat();
    let execute = [message_bytes(b'B', &bind), message_bytes(b'E', b"\0\0\0\0\0"), message_bytes(b'S', b"")].concat();
    assert!(bind.len() > 3 * 64 * 1024);

    let mut s = raw_login(session.addr).await;
    let mut pending = Vec::new();
    s.write_all(&parse).await.unwrap();
    read_to_ready(&mut s, &mut pending).await;
    s.write_all(&execute).await.unwrap();
    let got = read_to_ready(&mut s, &mut pending).await;
    assert_eq!(first_value(&got).as_deref(), Some("200000"), "{:?}", describe(&got));

    let before = pooled_backend(&transaction).await;
    let mut s = raw_login(transaction.addr).await;
    let mut pending = Vec::new();
    s.write_all(&parse).await.unwrap();
    read_to_ready(&mut s, &mut pending).await;
    s.write_all(&execute).await.unwrap();
    let got = read_until_closed(&mut s, &mut pending).await;
    let limit = format!("E FATAL 54000 client protocol violation: message of type 'B' is {} bytes, over the limit of 65536 (server.max_message_size)", bind.len() + 5);
    assert_eq!(describe(&got), [limit]);
    assert_eq!(pooled_backend(&transaction).await, before, "the server connection was kept");
}
