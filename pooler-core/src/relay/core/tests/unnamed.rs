//! The cache of unnamed statements (core/unnamed.rs): when it is used, what
//! the server and the client see, and the replay of a stale statement.

use super::*;

fn request(sql: &str) -> Vec<u8> {
    cat(&[parse("", sql), bind(""), execute(), sync()])
}

/// The statement names in the Parse and Bind messages of `sent`.
fn names(sent: &[u8]) -> Vec<String> {
    frames(sent)
        .into_iter()
        .filter_map(|(t, body)| match t {
            b'P' => Some(String::from_utf8_lossy(split_cstr(&body).unwrap().0).into_owned()),
            b'B' => Some(String::from_utf8_lossy(Bind::parse(&body).unwrap().statement).into_owned()),
            _ => None,
        })
        .collect()
}

/// Runs `sql` twice as a request, answered: the next run is cached.
fn warm(s: &mut Session<'_>, sql: &str) {
    for _ in 0..2 {
        let sent = s.client(&request(sql));
        s.serve(&sent);
    }
}

fn stale_error() -> Vec<u8> {
    let mut b = BytesMut::new();
    crate::protocol::write::error_response(&mut b, Severity::Error, "0A000", "cached plan must not change result type");
    b.to_vec()
}

#[test]
fn an_unnamed_statement_seen_before_is_bound_by_a_pooler_name_and_its_parse_answered_by_the_pooler() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    // First sight: sent as it is.
    let sent = s.client(&request("SELECT 1"));
    assert_eq!(names(&sent), ["", ""]);
    assert_eq!(tags(&s.serve(&sent)), "12CZ");
    // Second: prepared under the pooler's name and bound by it.
    let sent = s.client(&request("SELECT 1"));
    assert_eq!(tags(&sent), "PBES");
    let n = names(&sent);
    assert!(n[0].starts_with("_pooler_") && n[1] == n[0], "{n:?}");
    assert_eq!(tags(&s.serve(&sent)), "12CZ");
    // Third: the connection has it; the Parse is answered by the pooler.
    let sent = s.client(&request("SELECT 1"));
    assert_eq!(tags(&sent), "BES", "no Parse reaches the server");
    assert_eq!(names(&sent), [n[0].clone()]);
    assert_eq!(tags(&s.core.cout.split()), "1", "ParseComplete from the pooler");
    assert_eq!(tags(&s.serve(&sent)), "2CZ");
    assert!(s.quiet());
}

#[test]
fn a_statement_made_stale_by_ddl_is_prepared_again_and_the_request_replayed_unseen() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    warm(&mut s, "SELECT * FROM t");
    let name = names(&s.client(&request("SELECT * FROM t")))[0].clone();
    assert_eq!(tags(&s.core.cout.split()), "1");
    // The table changed: the server refuses the Bind, skips to the Sync.
    let to_client = s.server(&cat(&[stale_error(), ready(b'I')]));
    assert_eq!(tags(&to_client), "", "the client sees neither the error nor that ReadyForQuery");
    // The stale statement is closed, prepared again, and the request sent again.
    let again = s.core.sout.split().to_vec();
    assert_eq!(tags(&again), "CPBES");
    assert_eq!(names(&again), [name.clone(), name]);
    assert!(!s.quiet());
    let to_client = s.serve(&again);
    assert_eq!(tags(&to_client), "2CZ", "the request's own answers, once");
    assert!(s.quiet());
    // Stale again at once: that error is the client's (no second replay).
    let sent = s.client(&request("SELECT * FROM t"));
    assert_eq!(tags(&sent), "BES");
    s.core.cout.clear();
    let to_client = s.server(&cat(&[stale_error(), ready(b'I')]));
    assert_eq!(tags(&to_client), "", "the first stale answer is replayed...");
    let again = s.core.sout.split().to_vec();
    let to_client = s.server(&cat(&[frame(b'3', &[]), frame(b'1', &[]), stale_error(), ready(b'I')]));
    assert_eq!(tags(&to_client), "EZ", "...a second one reaches the client: {again:?}");
}

#[test]
fn an_error_other_than_a_stale_plan_reaches_the_client_as_it_is() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    warm(&mut s, "SELECT 1/0");
    s.client(&request("SELECT 1/0"));
    s.core.cout.clear();
    assert_eq!(tags(&s.server(&cat(&[frame(b'2', &[]), error("22012"), ready(b'I')]))), "2EZ");
    assert!(s.core.sout.is_empty(), "nothing is sent again");
    assert!(s.quiet());
}

#[test]
fn inside_a_transaction_block_or_behind_another_request_unnamed_statements_go_as_sent() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    warm(&mut s, "SELECT 1");
    // In a transaction block: a stale plan there could not be replayed.
    let sent = s.client(&query("BEGIN"));
    s.server(&cat(&[complete("BEGIN"), ready(b'T')]));
    drop(sent);
    assert_eq!(names(&s.client(&request("SELECT 1"))), ["", ""]);
    s.server(&cat(&[frame(b'1', &[]), frame(b'2', &[]), complete("SELECT 1"), ready(b'T')]));
    s.client(&query("COMMIT"));
    s.server(&cat(&[complete("COMMIT"), ready(b'I')]));
    // Pipelined behind another request: the replay would overtake it.
    let sent = s.client(&cat(&[request("SELECT 1"), request("SELECT 1")]));
    assert_eq!(names(&sent), ["", "", "", ""]);
    assert_eq!(tags(&s.serve(&sent)), "12CZ12CZ");
}

#[test]
fn the_cache_keys_by_search_path_and_can_be_turned_off() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    let (mut c2, mut o2) = bufs();
    let mut other = Session::new(&shared, (&mut c2, &mut o2));
    other.core.extra.push(("search_path".into(), "s2".into()));
    let name = |s: &mut Session<'_>| {
        warm(s, "SELECT x FROM t");
        let sent = s.client(&request("SELECT x FROM t"));
        let n = names(&sent);
        s.serve(&sent);
        n
    };
    let (a, b) = (name(&mut s), name(&mut other));
    assert!(a[0].starts_with("_pooler_") && b[0].starts_with("_pooler_"));
    assert_ne!(a, b, "another search_path, another statement");
    // Off: every Parse goes as sent.
    let mut pool = (*s.core.settings).clone();
    pool.unnamed_statement_cache = false;
    s.core.settings = Arc::new(pool);
    let sent = s.client(&request("SELECT x FROM t"));
    assert_eq!(names(&sent), ["", ""]);
}

#[test]
fn a_simple_query_destroys_the_unnamed_statement_and_a_later_bind_of_it_goes_as_sent() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    for _ in 0..3 {
        let sent = s.client(&request("SELECT 1"));
        s.serve(&sent);
    }
    let sent = s.client(&query("SELECT 2"));
    s.serve(&sent);
    let sent = s.client(&cat(&[bind(""), execute(), sync()]));
    assert_eq!(names(&sent), [""], "the server answers as PostgreSQL would");
}

#[test]
fn a_request_sent_behind_a_replayable_one_waits_for_its_answer_and_the_client_is_not_cached_again() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    warm(&mut s, "SELECT 1");
    let first = s.client(&request("SELECT 1"));
    assert_eq!(tags(&first), "BES", "cached, replayable");
    // The next request arrives before the answer: it waits, so that a
    // replay of the first could not be overtaken by it.
    assert!(s.client(&request("SELECT 1")).is_empty());
    s.core.cout.clear();
    assert_eq!(tags(&s.serve(&first)), "2CZ");
    let second = s.client(&[]);
    assert_eq!(names(&second), ["", ""], "sent as it is: the client pipelines");
    assert_eq!(tags(&s.serve(&second)), "12CZ");
}

#[test]
fn the_poolers_parse_complete_waits_to_go_out_with_the_servers_answers() {
    let shared = shared(PoolMode::Transaction);
    let (mut c, mut o) = bufs();
    let mut s = Session::new(&shared, (&mut c, &mut o));
    warm(&mut s, "SELECT 1");
    s.client(&request("SELECT 1"));
    assert!(s.core.output_can_wait(), "ParseComplete alone, a Sync sent: it can wait");
    // Without a Sync (the client flushes and waits), it cannot.
    let (mut c2, mut o2) = bufs();
    let mut t = Session::new(&shared, (&mut c2, &mut o2));
    warm(&mut t, "SELECT 1");
    t.client(&cat(&[parse("", "SELECT 1"), bind(""), execute(), frame(b'H', &[])]));
    assert!(!t.core.output_can_wait());
}
