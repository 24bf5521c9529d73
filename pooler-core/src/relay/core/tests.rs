//! The relay core without sockets: scripted client and server byte
//! sequences in, the bytes it sends each side out (docs/POOLING.md lists
//! the behaviours). A connection is a [`Conn`]: the protocol state a server
//! connection carries (its read buffer, its prepared statements, its
//! reported parameters); "another connection" is another `Conn`.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::*;
use super::{Link, Mode};
use crate::config::{AuthMethod, NodeConfig};
use crate::pool::PoolKey;

/// A Pooler's shared context for one node that is never connected to.
fn shared(mode: PoolMode) -> Arc<Shared> {
    let mut config = crate::Config::with_nodes(vec![NodeConfig::new("127.0.0.1", 1)]);
    config.auth.method = AuthMethod::Trust;
    config.pool.mode = mode;
    crate::Pooler::new(config).expect("valid config").shared()
}

fn login() -> LoginInfo {
    LoginInfo { user: "app".into(), database: "app".into(), secret: None, client_key: None }
}

fn pool(shared: &Shared) -> Arc<Pool> {
    let key = PoolKey { node: 0, user: "app".into(), database: "app".into() };
    shared.pools.get(key, &shared.node(0).unwrap(), login)
}

/// The protocol state of one server connection.
#[derive(Default)]
struct Conn {
    buf: BytesMut,
    statements: ServerStatements,
    params: Vec<(String, String)>,
    params_match: Option<crate::runtime::SharedParams>,
}

impl Conn {
    fn view(&mut self) -> ServerView<'_> {
        ServerView {
            buf: &mut self.buf,
            statements: &mut self.statements,
            params: &mut self.params,
            params_match: &mut self.params_match,
            pid: 4242,
        }
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(parts: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p);
        b.push(0);
    }
    b
}

fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', &cstr(&[sql.as_bytes()]))
}
fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstr(&[name.as_bytes(), sql.as_bytes()]);
    b.extend_from_slice(&0u16.to_be_bytes());
    frame(b'P', &b)
}
fn bind(statement: &str) -> Vec<u8> {
    let mut b = cstr(&[b"", statement.as_bytes()]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    frame(b'B', &b)
}
fn describe_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(&cstr(&[name.as_bytes()]));
    frame(b'D', &b)
}
fn close_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend_from_slice(&cstr(&[name.as_bytes()]));
    frame(b'C', &b)
}
fn execute() -> Vec<u8> {
    frame(b'E', &[0, 0, 0, 0, 0])
}
fn sync() -> Vec<u8> {
    frame(b'S', &[])
}
fn ready(status: u8) -> Vec<u8> {
    frame(b'Z', &[status])
}
fn complete(tag: &str) -> Vec<u8> {
    frame(b'C', &cstr(&[tag.as_bytes()]))
}
fn error(code: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    crate::protocol::write::error_response(&mut b, Severity::Error, code, "scripted");
    b.to_vec()
}
fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The whole frames in `bytes`, as (tag, body).
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push((rest[0], rest[5..1 + len].to_vec()));
        rest = &rest[1 + len..];
    }
    assert!(rest.is_empty(), "a partial frame: {rest:?}");
    out
}

fn tags(bytes: &[u8]) -> String {
    frames(bytes).iter().map(|(t, _)| *t as char).collect()
}

/// What a PostgreSQL server answers to `sent` when every statement works:
/// ParseComplete, BindComplete, NoData for a Describe, a CommandComplete
/// for an Execute, CloseComplete, and ReadyForQuery (idle) for each Sync
/// and Query.
fn answers(sent: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, _) in frames(sent) {
        match t {
            b'P' => out.extend(frame(b'1', &[])),
            b'B' => out.extend(frame(b'2', &[])),
            b'D' => out.extend(cat(&[frame(b't', &[0, 0]), frame(b'n', &[])])),
            b'E' => out.extend(complete("SELECT 1")),
            b'C' => out.extend(frame(b'3', &[])),
            b'S' => out.extend(ready(b'I')),
            b'Q' => out.extend(cat(&[complete("SELECT 1"), ready(b'I')])),
            _ => {}
        }
    }
    out
}

/// One client on a core, and the connection lent to it.
struct Session<'a> {
    core: Core<'a>,
    conn: Conn,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, bufs: (&'a mut BytesMut, &'a mut BytesMut)) -> Session<'a> {
        let params = Arc::new(vec![("application_name".to_string(), "t".to_string())]);
        let mode = shared.config().pool.mode;
        Session {
            core: Core::new(
                shared,
                pool(shared),
                mode,
                bufs,
                0,
                login(),
                (params, Vec::new()),
                7,
                crate::transport::Peer::Tcp(([127, 0, 0, 1], 5).into()),
            ),
            conn: Conn::default(),
        }
    }

    /// The client sends `bytes`: what goes to the server.
    fn client(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.core.cbuf.extend_from_slice(bytes);
        self.core.relay_client_messages(&mut self.conn.view()).expect("client messages relay");
        self.core.sout.split().to_vec()
    }

    /// The server sends `bytes`: what goes to the client.
    fn server(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.conn.buf.extend_from_slice(bytes);
        self.core.relay_server_messages(&mut self.conn.view()).expect("server messages relay");
        self.core.cout.split().to_vec()
    }

    /// The server answers everything `sent` as a healthy server does.
    fn serve(&mut self, sent: &[u8]) -> Vec<u8> {
        self.server(&answers(sent))
    }

    fn quiet(&self) -> bool {
        self.core.quiet(self.conn.buf.is_empty())
    }
}

/// Two buffers a [`Session`] borrows for the client side.
fn bufs() -> (BytesMut, BytesMut) {
    (BytesMut::new(), BytesMut::new())
}

#[test]
fn pipelined_extended_batches_reach_the_server_in_order_and_every_answer_reaches_the_client() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let batch = |v: &str| cat(&[parse("", &format!("SELECT {v}")), bind(""), execute(), sync()]);
    let sent = s.client(&cat(&[batch("1"), batch("2"), batch("3")]));
    assert_eq!(tags(&sent), "PBESPBESPBES");
    assert!(!s.quiet(), "three requests in flight");
    let to_client = s.serve(&sent);
    assert_eq!(tags(&to_client), "12CZ12CZ12CZ");
    assert!(s.quiet(), "every answer arrived: the connection may go back");
}

#[test]
fn after_an_error_the_rest_up_to_sync_is_skipped_and_the_connection_is_quiet_at_ready() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[parse("", "SELEC 1"), bind(""), execute(), sync()]));
    assert_eq!(tags(&sent), "PBES");
    let to_client = s.server(&cat(&[error("42601"), ready(b'I')]));
    assert_eq!(tags(&to_client), "EZ", "the server's error, then its ReadyForQuery");
    assert!(s.quiet());
    assert_eq!(s.core.status, TransactionStatus::Idle);
}

#[test]
fn a_connection_is_kept_until_sync_even_when_every_answer_so_far_arrived() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[parse("", "SELECT 1"), bind(""), execute(), frame(b'H', &[])]));
    assert_eq!(tags(&sent), "PBEH");
    assert_eq!(tags(&s.serve(&sent)), "12C");
    assert!(!s.quiet(), "an implicit transaction stays open on the server until Sync");
    let sent = s.client(&sync());
    assert_eq!(tags(&s.serve(&sent)), "Z");
    assert!(s.quiet());
}

#[test]
fn copy_from_stdin_streams_client_data_to_the_server_whole_and_in_order() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&query("COPY t FROM STDIN"));
    assert_eq!(tags(&sent), "Q");
    assert_eq!(tags(&s.server(&frame(b'G', &[0, 0, 0]))), "G");
    let big = frame(b'd', &vec![b'x'; 100_000]);
    let small = frame(b'd', b"1\n");
    let data = cat(&[small.clone(), big.clone(), small.clone(), frame(b'c', &[])]);
    // Cut anywhere: a large CopyData streams through as it arrives.
    let mut out = Vec::new();
    for piece in data.chunks(7_001) {
        out.extend(s.client(piece));
    }
    assert_eq!(out, data, "the data reached the server byte for byte");
    assert!(!s.quiet(), "the server still owes CommandComplete and ReadyForQuery");
    assert_eq!(tags(&s.server(&cat(&[complete("COPY 3"), ready(b'I')]))), "CZ");
    assert!(s.quiet());
}

#[test]
fn copy_to_stdout_streams_server_data_to_the_client_whole_and_in_order() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    s.client(&query("COPY t TO STDOUT"));
    let answer = cat(&[
        frame(b'H', &[0, 0, 0]),
        frame(b'd', b"1\n"),
        frame(b'd', &vec![b'y'; 50_000]),
        frame(b'c', &[]),
        complete("COPY 2"),
        ready(b'I'),
    ]);
    let mut to_client = Vec::new();
    for piece in answer.chunks(4_099) {
        to_client.extend(s.server(piece));
    }
    assert_eq!(to_client, answer);
    assert!(s.quiet());
}

#[test]
fn a_prepared_statement_is_prepared_again_on_another_connection_with_its_answer_hidden() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[parse("q1", "SELECT $1::int"), sync()]));
    let server_name = match frames(&sent).first() {
        Some((b'P', body)) => String::from_utf8_lossy(&body[..body.iter().position(|&b| b == 0).unwrap()]).into_owned(),
        other => panic!("expected a Parse first: {other:?}"),
    };
    assert!(server_name.starts_with("_pooler_"), "named under the pooler's namespace: {server_name}");
    assert_eq!(tags(&s.serve(&sent)), "1Z");
    // Another connection that has never seen the statement.
    s.conn = Conn::default();
    let sent = s.client(&cat(&[bind("q1"), execute(), sync()]));
    assert_eq!(tags(&sent), "PBES", "the statement is prepared there first");
    let (_, bind_body) = &frames(&sent)[1];
    assert!(
        bind_body.windows(server_name.len()).any(|w| w == server_name.as_bytes()),
        "Bind names the server's statement"
    );
    assert_eq!(tags(&s.serve(&sent)), "2CZ", "the pooler's own ParseComplete is not the client's");
    // A third use on the same connection sends no Parse.
    let sent = s.client(&cat(&[bind("q1"), execute(), sync()]));
    assert_eq!(tags(&sent), "BES");
}

#[test]
fn close_and_deallocate_of_a_pooled_statement_are_answered_by_the_pooler_and_discard_all_forgets_everything() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[parse("a", "SELECT 1"), parse("b", "SELECT 2"), sync()]));
    s.serve(&sent);
    // Close: the server keeps the statement for other clients.
    let sent = s.client(&cat(&[close_statement("a"), sync()]));
    assert_eq!(tags(&sent), "S");
    assert_eq!(tags(&s.serve(&sent)), "3Z");
    // DEALLOCATE by SQL of a statement the client prepared with Parse.
    let sent = s.client(&query("DEALLOCATE b"));
    assert!(sent.is_empty(), "nothing goes to the server");
    assert_eq!(frames(&s.core.cout.split())[..].iter().map(|(t, _)| *t as char).collect::<String>(), "CZ");
    assert!(!s.core.statements.contains(b"b"));
    // DISCARD ALL goes to the server, and every name is gone on both sides.
    let sent = s.client(&cat(&[parse("c", "SELECT 3"), sync()]));
    s.serve(&sent);
    let sent = s.client(&query("DISCARD ALL"));
    assert_eq!(tags(&sent), "Q");
    assert!(!s.core.statements.contains(b"c"));
    assert!(s.conn.statements.unsure, "the connection's statements are cleaned before it is lent again");
}

#[test]
fn each_session_feature_pins_the_connection_to_its_client() {
    for (sql, reason) in [
        ("LISTEN chan", "LISTEN"),
        ("PREPARE q AS SELECT 1", "SQL PREPARE"),
        ("SELECT pg_advisory_lock(1)", "session-level advisory lock"),
        ("CREATE TEMP TABLE t (a int)", "temporary table"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD cursor"),
        ("SET ROLE admin", "SET ROLE"),
    ] {
        let shared = shared(PoolMode::Transaction);
        let (mut c, mut o) = bufs();
        let mut s = Session::new(&shared, (&mut c, &mut o));
        let sent = s.client(&query(sql));
        assert_eq!(tags(&sent), "Q", "{sql} is forwarded");
        assert_eq!(s.core.link, Link::Pinned(reason), "{sql}");
    }
}

#[test]
fn parameters_the_client_sets_are_tracked_for_the_next_connection() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    // A reported parameter: the server says the new value.
    let sent = s.client(&query("SET application_name = 'batch'"));
    let mut status = BytesMut::new();
    crate::protocol::write::parameter_status(&mut status, "application_name", "batch");
    let to_client = s.server(&cat(&[status.to_vec(), complete("SET"), ready(b'I')]));
    assert_eq!(tags(&sent), "Q");
    assert_eq!(tags(&to_client), "SCZ");
    assert!(s.core.params.iter().any(|(k, v)| k == "application_name" && v == "batch"));
    assert!(s.conn.params.iter().any(|(k, v)| k == "application_name" && v == "batch"));
    // An unreported one: its value is read before the connection goes back.
    s.client(&query("SET statement_timeout = '5s'"));
    assert_eq!(s.core.dirty, vec!["statement_timeout".to_string()]);
}

#[test]
fn a_prepared_set_changes_the_settings_when_it_runs_not_only_when_it_is_parsed() {
    // psycopg with prepare_threshold = 0: Parse and Sync first, Bind and
    // Execute later. The value is read back after the Bind that runs it.
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[parse("_pg3_0", "SET search_path = s1"), sync()]));
    s.serve(&sent);
    s.core.dirty.clear();
    s.client(&cat(&[bind("_pg3_0"), execute(), sync()]));
    assert_eq!(s.core.dirty, vec!["search_path".to_string()], "executing it sets search_path");
    // A statement that sets nothing marks nothing.
    let sent = s.client(&cat(&[parse("q", "SELECT 1"), sync()]));
    s.serve(&sent);
    s.core.dirty.clear();
    s.client(&cat(&[bind("q"), execute(), sync()]));
    assert!(s.core.dirty.is_empty());
}

#[test]
fn a_name_in_the_poolers_namespace_is_refused_without_reaching_the_server() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[bind("_pooler_9"), execute(), sync()]));
    assert_eq!(tags(&sent), "S", "only the Sync goes on, for the ReadyForQuery");
    let to_client = s.core.cout.split().to_vec();
    assert_eq!(tags(&to_client), "E");
    assert!(String::from_utf8_lossy(&to_client).contains("26000"));
    assert_eq!(tags(&s.serve(&sent)), "Z");
    let sent = s.client(&query("EXECUTE _pooler_1"));
    assert!(sent.is_empty());
    let to_client = s.core.cout.split().to_vec();
    assert_eq!(tags(&to_client), "EZ");
    assert!(String::from_utf8_lossy(&to_client).contains("42501"));
}

/// One valid client message for the property test.
fn message(kind: u8, n: u8) -> Vec<u8> {
    let name = format!("s{}", n % 3);
    match kind % 7 {
        0 => query(&format!("SELECT {n}")),
        1 => cat(&[parse(&name, &format!("SELECT {n} + $1::int")), sync()]),
        2 => cat(&[parse("", "SELECT 1"), bind(""), execute(), sync()]),
        3 => cat(&[bind(&name), execute(), sync()]),
        4 => cat(&[describe_statement(&name), sync()]),
        5 => cat(&[close_statement(&name), sync()]),
        _ => frame(b'H', &[]),
    }
}

/// Runs `stream` through a core fed in `cuts`-sized pieces, the server
/// answering each piece's messages (also in pieces): everything sent to
/// the server and to the client.
fn run_cut(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts.get(i).copied().unwrap_or(rest.len()).clamp(1, rest.len());
        i += 1;
        let sent = s.client(&rest[..n]);
        rest = &rest[n..];
        let reply = answers(&sent);
        for piece in reply.chunks(cuts.get(i).copied().unwrap_or(3).max(1)) {
            to_client.extend(s.server(piece));
        }
        to_server.extend(sent);
    }
    (to_server, to_client)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_from_either_side_end_in_relayed_bytes_or_an_error_never_a_panic(
        mode in 0u8..3,
        client in proptest::collection::vec(any::<u8>(), 0..600),
        server in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..50,
    ) {
        // Valid-looking frames too: a tag byte and a small length up front.
        let mut framed = vec![b'Q', 0, 0, 0, 12];
        framed.extend_from_slice(&client);
        super::super::fuzz(mode, &client, &server, chunk);
        super::super::fuzz(mode, &framed, &server, chunk);
    }

    #[test]
    fn any_cut_of_valid_client_messages_sends_and_answers_exactly_what_the_uncut_stream_does(
        msgs in proptest::collection::vec((0u8..7, 0u8..9), 1..24),
        cuts in proptest::collection::vec(1usize..40, 0..64),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|&(k, n)| message(k, n)).collect();
        let whole = run_cut(&stream, &[stream.len()]);
        let cut = run_cut(&stream, &cuts);
        prop_assert_eq!(&cut.0, &whole.0, "server-bound bytes");
        prop_assert_eq!(&cut.1, &whole.1, "client-bound bytes");
    }
}

#[test]
fn the_server_answers_of_a_framing_helper_are_whole_frames() {
    let mut b = BytesMut::new();
    b.put_slice(&answers(&cat(&[parse("", "x"), bind(""), describe_statement(""), execute(), sync()])));
    assert_eq!(tags(&b), "12tnCZ");
}

#[test]
fn the_core_asks_for_a_connection_only_for_a_whole_message_and_gives_it_back_when_quiet() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let q = query("SELECT 1");
    s.core.cbuf.extend_from_slice(&q[..6]);
    assert!(matches!(s.core.next(false, true), Next::Wait), "half a message holds no connection");
    s.core.cbuf.extend_from_slice(&q[6..]);
    assert!(matches!(s.core.next(false, true), Next::Attach));
    s.core.attached(0);
    assert_eq!(s.core.link, Link::Attached);
    let sent = s.client(&[]);
    assert!(matches!(s.core.next(true, true), Next::Wait), "the answer is owed");
    s.serve(&sent);
    assert!(matches!(s.core.next(true, true), Next::Release));
    s.core.released();
    assert_eq!(s.core.link, Link::Idle);
    // A pinned link is never released.
    s.core.attached(0);
    let sent = s.client(&query("LISTEN chan"));
    s.serve(&sent);
    assert!(matches!(s.core.next(true, true), Next::Wait));
    s.core.released();
    assert_eq!(s.core.link, Link::Pinned("LISTEN"));
}

#[test]
fn a_message_type_postgresql_refuses_closes_the_session_once_earlier_requests_are_answered() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let sent = s.client(&cat(&[query("SELECT 1"), frame(b'x', &[])]));
    assert_eq!(tags(&sent), "Q", "the refused message is never forwarded");
    assert!(matches!(s.core.next(true, true), Next::Wait), "the Query is answered first");
    s.serve(&sent);
    match s.core.next(true, true) {
        Next::Close(Error::ClientProtocol(ProtocolError::InvalidMessageType { tag: b'x' })) => {}
        other => panic!("expected the session to close: {other:?}"),
    }
}

#[test]
fn statement_mode_closes_the_session_when_a_transaction_block_opens() {
    let shared = shared(PoolMode::Statement);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    s.client(&query("BEGIN"));
    let to_client = s.server(&cat(&[complete("BEGIN"), ready(b'T')]));
    assert_eq!(tags(&to_client), "C", "the client does not see its transaction open");
    assert!(matches!(s.core.next(true, true), Next::Close(Error::Refused { code: "0A000", .. })));
}

#[test]
fn session_mode_passes_statement_names_through_and_streams_what_it_need_not_see() {
    let mut config = crate::Config::with_nodes(vec![NodeConfig::new("127.0.0.1", 1)]);
    config.auth.method = AuthMethod::Trust;
    config.pool.mode = PoolMode::Session;
    let shared = crate::Pooler::new(config).expect("valid config").shared();
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    assert_eq!(s.core.mode, Mode::Session);
    // The client's names reach the server unchanged; nothing is answered
    // in the server's place.
    let msgs = cat(&[parse("q1", "SELECT 1"), bind("q1"), execute(), close_statement("q1"), sync()]);
    let sent = s.client(&msgs);
    assert_eq!(sent, msgs);
    assert!(!s.quiet());
    assert_eq!(tags(&s.serve(&sent)), "12C3Z");
    assert!(s.quiet());
    // A row arriving in pieces is relayed as it arrives, not gathered.
    s.client(&query("SELECT repeat('x', 100)"));
    let row = frame(b'D', &[b'x'; 100]);
    assert_eq!(s.server(&row[..40]), row[..40].to_vec());
    assert_eq!(s.server(&row[40..]), row[40..].to_vec());
    assert_eq!(tags(&s.server(&cat(&[complete("SELECT 1"), ready(b'I')]))), "CZ");
    assert!(s.quiet());
}

mod unnamed;
