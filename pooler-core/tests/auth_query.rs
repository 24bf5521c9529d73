//! End-to-end: users missing from the password file are looked up on the
//! server with auth_query (as auth_user), logging in with SCRAM and md5
//! through the pass-through; wrong passwords, unknown users and users
//! without a password get the same answer; a failed or slow lookup refuses
//! the login clearly; a changed password is picked up after the TTL; no
//! secret ever reaches the logs.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use pooler_core::config::AuthMethod;
use pooler_core::PasswordFile;
use pooler_testkit::Cluster;

/// Everything the pooler logs in this test binary, as text.
fn logs() -> &'static Arc<Mutex<String>> {
    static LOGS: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(String::new()));
        let _ = tracing::subscriber::set_global_default(Capture(buf.clone()));
        buf
    })
}

/// A subscriber that writes every event's fields into a string.
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut s = String::new();
        span.record(&mut Fields(&mut s));
        if let Ok(mut l) = self.0.lock() {
            l.push_str(&s);
            l.push('\n');
        }
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut s = String::new();
        values.record(&mut Fields(&mut s));
        if let Ok(mut l) = self.0.lock() {
            l.push_str(&s);
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut s = format!("{} {}:", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut s));
        if let Ok(mut l) = self.0.lock() {
            l.push_str(&s);
            l.push('\n');
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const AUTH_PW: &str = "auth-user-secret-pw";
const SCRAM_PW: &str = "scram-user-secret-pw";
const MD5_PW: &str = "md5-user-secret-pw";

/// Roles that log in with passwords the server checks: the auth_user
/// (superuser, so the default query may read pg_authid), a SCRAM user, an
/// md5 user, a user without a password, and a lookup function for a
/// non-superuser auth_user.
async fn cluster() -> Cluster {
    tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .hba_line("host all pooler_auth 127.0.0.1/32 scram-sha-256")
            .hba_line("host all lookup_only 127.0.0.1/32 scram-sha-256")
            .hba_line("host all aq_scram 127.0.0.1/32 scram-sha-256")
            .hba_line("host all aq_md5 127.0.0.1/32 md5")
            .init_sql(&format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE pooler_auth LOGIN SUPERUSER PASSWORD '{AUTH_PW}'; \
                 CREATE ROLE lookup_only LOGIN PASSWORD '{AUTH_PW}'; \
                 CREATE ROLE aq_scram LOGIN PASSWORD '{SCRAM_PW}'; \
                 SET password_encryption = 'md5'; CREATE ROLE aq_md5 LOGIN PASSWORD '{MD5_PW}'; \
                 CREATE ROLE aq_nopw LOGIN; \
                 CREATE FUNCTION public.lookup(name) RETURNS TABLE (u name, p text) LANGUAGE sql \
                   SECURITY DEFINER SET search_path = pg_catalog AS \
                   'SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1 AND rolcanlogin'; \
                 REVOKE ALL ON FUNCTION public.lookup(name) FROM PUBLIC; \
                 GRANT EXECUTE ON FUNCTION public.lookup(name) TO lookup_only;"
            ))
            .start()
            .expect("start PostgreSQL")
    })
    .await
    .expect("cluster task")
}

/// A configuration where only the auth_user is in the password file.
fn config(cluster: &Cluster, method: AuthMethod) -> pooler_core::Config {
    let mut c = trust_config(cluster);
    c.auth.method = method;
    c.auth.auth_user = Some("pooler_auth".into());
    c.server.log_connections = true;
    c
}

fn auth_file(user: &str, pw: &str) -> PasswordFile {
    PasswordFile::parse(&format!("\"{user}\" \"{pw}\"\n")).expect("password file")
}

async fn login(pooler: &TestPooler, user: &str, pw: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = pooler.pg_config(user, "postgres");
    cfg.password(pw);
    connect_with(cfg).await
}

async fn whoami(c: &tokio_postgres::Client) -> String {
    c.query_one("SELECT current_user::text", &[]).await.expect("query").get(0)
}

fn assert_bad_password(e: &tokio_postgres::Error, user: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("28P01"), "{e}");
    assert_eq!(message(e), format!("password authentication failed for user \"{user}\""));
}

/// No password, md5 hash or SCRAM verifier of any test role in the logs.
fn assert_no_secret_logged(cluster: &Cluster) {
    let verifiers: Vec<String> = ["pooler_auth", "aq_scram", "aq_md5"]
        .iter()
        .map(|r| {
            cluster.primary().query_one(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{r}'")).unwrap()
        })
        .collect();
    let text = logs().lock().unwrap().clone();
    assert!(text.contains("client connected"), "the logs were captured: {text}");
    for secret in [AUTH_PW, SCRAM_PW, MD5_PW, "new-md5-pw"].iter().map(|s| s.to_string()).chain(verifiers) {
        let key = secret.get(..20).unwrap_or(&secret).to_owned();
        assert!(!text.contains(&key), "a secret reached the logs: {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_query_users_log_in_with_scram_and_md5_and_fail_like_wrong_passwords() {
    logs();
    let cluster = cluster().await;
    let scram =
        TestPooler::start(config(&cluster, AuthMethod::ScramSha256), Some(auth_file("pooler_auth", AUTH_PW))).await;
    // The SCRAM verifier from pg_authid checks the client, and the client's
    // proof logs the pooler in to the server (which demands SCRAM).
    let c = login(&scram, "aq_scram", SCRAM_PW).await.expect("SCRAM login via auth_query");
    assert_eq!(whoami(&c).await, "aq_scram");
    assert_bad_password(&login(&scram, "aq_scram", "wrong").await.unwrap_err(), "aq_scram");
    // Unknown users and users without a password get the same answer.
    assert_bad_password(&login(&scram, "no_such_role", "x").await.unwrap_err(), "no_such_role");
    assert_bad_password(&login(&scram, "aq_nopw", "x").await.unwrap_err(), "aq_nopw");

    let md5 = TestPooler::start(config(&cluster, AuthMethod::Md5), Some(auth_file("pooler_auth", AUTH_PW))).await;
    // The md5 hash from pg_authid checks the client and answers the server's md5 challenge.
    let c = login(&md5, "aq_md5", MD5_PW).await.expect("md5 login via auth_query");
    assert_eq!(whoami(&c).await, "aq_md5");
    assert_bad_password(&login(&md5, "aq_md5", "wrong").await.unwrap_err(), "aq_md5");
    assert_bad_password(&login(&md5, "no_such_role", "x").await.unwrap_err(), "no_such_role");
    // Under md5, a SCRAM-only user is asked for SCRAM, as PostgreSQL does.
    let c = login(&md5, "aq_scram", SCRAM_PW).await.expect("SCRAM user under md5");
    assert_eq!(whoami(&c).await, "aq_scram");
    // A real libpq client.
    let out = std::process::Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &md5.port().to_string(), "-U", "aq_md5", "-d", "postgres"])
        .args(["-c", "SELECT current_user"])
        .env("PGPASSWORD", MD5_PW)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aq_md5");
    assert_no_secret_logged(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_function_for_a_non_superuser_works() {
    logs();
    let cluster = cluster().await;
    let mut c = config(&cluster, AuthMethod::ScramSha256);
    c.auth.auth_user = Some("lookup_only".into());
    c.auth.auth_query = "SELECT u, p FROM public.lookup($1)".into();
    c.auth.auth_dbname = Some("postgres".into());
    let pooler = TestPooler::start(c, Some(auth_file("lookup_only", AUTH_PW))).await;
    let client = login(&pooler, "aq_scram", SCRAM_PW).await.expect("login through the lookup function");
    assert_eq!(whoami(&client).await, "aq_scram");
    // A name that would break string-spliced SQL is only ever a parameter.
    assert_bad_password(&login(&pooler, "x' OR '1'='1", "x").await.unwrap_err(), "x' OR '1'='1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_slow_lookup_refuses_the_login_clearly() {
    logs();
    let cluster = cluster().await;
    // The auth_user's own password is wrong: the lookup cannot log in.
    let pooler =
        TestPooler::start(config(&cluster, AuthMethod::ScramSha256), Some(auth_file("pooler_auth", "nope"))).await;
    let e = login(&pooler, "aq_scram", SCRAM_PW).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    assert_eq!(
        message(&e),
        "could not look up the password of user \"aq_scram\": the pooler could not log in to look it up"
    );
    assert!(logs().lock().unwrap().contains("auth_query lookup failed"));

    // The query is slower than auth_query_timeout.
    let mut c = config(&cluster, AuthMethod::ScramSha256);
    c.auth.auth_query = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(5) WHERE rolname = $1".into();
    c.auth.auth_query_timeout = Duration::from_millis(500);
    let pooler = TestPooler::start(c, Some(auth_file("pooler_auth", AUTH_PW))).await;
    let started = std::time::Instant::now();
    let e = login(&pooler, "aq_scram", SCRAM_PW).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(message(&e), "could not look up the password of user \"aq_scram\": the lookup timed out");

    // A query that fails on the server.
    let mut c = config(&cluster, AuthMethod::ScramSha256);
    c.auth.auth_query = "SELECT no_such_column FROM pg_authid WHERE rolname = $1".into();
    let pooler = TestPooler::start(c, Some(auth_file("pooler_auth", AUTH_PW))).await;
    let e = login(&pooler, "aq_scram", SCRAM_PW).await.unwrap_err();
    assert_eq!(message(&e), "could not look up the password of user \"aq_scram\": the lookup query failed");
    assert_no_secret_logged(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_is_picked_up_after_the_ttl() {
    logs();
    let cluster = cluster().await;
    let mut c = config(&cluster, AuthMethod::Md5);
    c.auth.auth_query_ttl = Duration::from_secs(2);
    c.pool.mode = pooler_core::config::PoolMode::Session;
    let pooler = TestPooler::start(c, Some(auth_file("pooler_auth", AUTH_PW))).await;
    let first = login(&pooler, "aq_md5", MD5_PW).await.expect("login");
    assert_eq!(whoami(&first).await, "aq_md5");
    cluster
        .primary()
        .psql("postgres", "SET password_encryption = 'md5'; ALTER ROLE aq_md5 PASSWORD 'new-md5-pw'")
        .expect("change password");
    // Within the TTL the cached secret still checks clients, but a new
    // server connection with it is refused by the server: a window the TTL
    // bounds (docs/ACCESS.md).
    // After it, the new password works (for the client and for new server
    // connections) and the old one does not.
    let picked_up =
        eventually_async(Duration::from_secs(10), || async { login(&pooler, "aq_md5", "new-md5-pw").await.is_ok() })
            .await;
    assert!(picked_up, "the new password was not picked up");
    assert_bad_password(&login(&pooler, "aq_md5", MD5_PW).await.unwrap_err(), "aq_md5");
    // Several clients at once need several server connections: the new
    // ones log in with the new secret.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = login(&pooler, "aq_md5", "new-md5-pw").await.expect("login with the new password");
        assert_eq!(whoami(&c).await, "aq_md5");
        clients.push(c);
    }
    assert_eq!(whoami(&first).await, "aq_md5", "a client from before the change is still served");
    assert_no_secret_logged(&cluster);
}
