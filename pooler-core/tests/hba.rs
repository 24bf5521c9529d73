//! End-to-end: the pooler's hba file chooses each client's method (trust,
//! md5, scram-sha-256 by address, user and database; first match wins),
//! refuses `reject` and unmatched clients with PostgreSQL's 28000 words,
//! tells TLS from plain text (`hostssl`, `hostnossl`, `cert`, `clientcert=`)
//! and Unix-socket clients (`local`), reads `@file` includes, asks the
//! server about `+role` membership, names file and line in its errors, and
//! takes a reloaded file for new logins.

mod common;

use std::path::PathBuf;

use common::tls::Certs;
use common::*;
use pooler_core::config::{AuthMethod, ClientTlsMode};
use pooler_core::{Listeners, PasswordFile, Pooler};
use pooler_testkit::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A primary with a database `trustdb` and roles: `ops` (a group),
/// `opsmember` (in it), `nested` (in opsmember), `md5user`, `scramuser`, `blocked`, `stranger`.
async fn cluster() -> Cluster {
    tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .init_sql("CREATE DATABASE trustdb")
            .init_sql(
                "CREATE ROLE ops; CREATE ROLE opsmember LOGIN IN ROLE ops; CREATE ROLE nested LOGIN IN ROLE opsmember; \
                 CREATE ROLE md5user LOGIN; CREATE ROLE scramuser LOGIN; CREATE ROLE blocked LOGIN; \
                 CREATE ROLE stranger LOGIN;",
            )
            .start()
            .expect("start PostgreSQL")
    })
    .await
    .expect("cluster task")
}

fn passwords() -> PasswordFile {
    PasswordFile::parse("md5user:pw_md5\nscramuser:scrampw\nblocked:blockedpw\nstranger:strangerpw\nopsmember:opspw\n")
        .expect("password file")
}

/// A directory for this test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("pooler-hba-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RULES: &str = "\
# first match wins: blocked is rejected even for trustdb
host    all       blocked      127.0.0.1/32  reject
host    trustdb   all          127.0.0.1/32  trust
host    all       md5user      127.0.0.1 255.255.255.255 md5
host    all       @scram.list  127.0.0.0/8   scram-sha-256
host    all       +ops         127.0.0.1/32  trust
host    all       all          ::1/128       trust
";

/// The authentication request the pooler answers a startup packet with:
/// 0 (AuthenticationOk: trust), 5 (md5), 10 (SASL), or the ErrorResponse.
async fn first_answer(pooler: &TestPooler, user: &str, database: &str) -> Result<u32, String> {
    let mut s = tokio::net::TcpStream::connect(pooler.addr).await.expect("connect");
    let mut startup = bytes::BytesMut::new();
    pooler_core::internals::write::startup_message(&mut startup, 0, &[("user", user), ("database", database)]);
    s.write_all(&startup).await.expect("send startup");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if got.len() >= 5 {
            let len = u32::from_be_bytes([got[1], got[2], got[3], got[4]]) as usize;
            if got.len() > len {
                let body = &got[5..1 + len];
                return match got[0] {
                    b'R' => Ok(u32::from_be_bytes([body[0], body[1], body[2], body[3]])),
                    _ => Err(String::from_utf8_lossy(body).into_owned()),
                };
            }
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
}

async fn login(
    pooler: &TestPooler,
    user: &str,
    db: &str,
    pw: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = pooler.pg_config(user, db);
    cfg.password(pw);
    connect_with(cfg).await
}

fn assert_refused(e: &tokio_postgres::Error, message: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("28000"), "{e}");
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.severity(), "FATAL");
    assert_eq!(db.message(), message);
}

fn config_with_hba(cluster: &Cluster, hba: PathBuf) -> pooler_core::Config {
    let mut config = trust_config(cluster);
    config.auth.method = AuthMethod::Md5;
    config.auth.hba_file = Some(hba);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_lines_choose_the_method_and_refuse_like_postgresql() {
    let cluster = cluster().await;
    let dir = Dir::new("methods");
    dir.write("scram.list", "# users asked for SCRAM\nscramuser, nobody\n");
    let mut config = config_with_hba(&cluster, dir.write("hba.conf", RULES));
    config.auth.auth_user = Some("postgres".into());
    let pooler = TestPooler::start(config, Some(passwords())).await;

    // The method each line asks for, seen on the wire.
    assert_eq!(first_answer(&pooler, "md5user", "postgres").await, Ok(5));
    assert_eq!(first_answer(&pooler, "scramuser", "postgres").await, Ok(10), "from the @file include");
    assert_eq!(first_answer(&pooler, "stranger", "trustdb").await, Ok(0), "trust by database");
    assert_eq!(first_answer(&pooler, "opsmember", "postgres").await, Ok(0), "+ops, asked of the server");
    assert_eq!(first_answer(&pooler, "nested", "postgres").await, Ok(0), "+ops through opsmember");

    // And real logins.
    let c = login(&pooler, "md5user", "postgres", "pw_md5").await.expect("md5 login");
    assert_eq!(c.query_one("SELECT current_user::text", &[]).await.unwrap().get::<_, String>(0), "md5user");
    login(&pooler, "scramuser", "postgres", "scrampw").await.expect("scram login");
    let e = login(&pooler, "scramuser", "postgres", "wrong").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    let c = connect_with(pooler.pg_config("stranger", "trustdb")).await.expect("trust line");
    assert_eq!(c.query_one("SELECT current_database()::text", &[]).await.unwrap().get::<_, String>(0), "trustdb");

    // reject: first match wins over the trust line for trustdb.
    let e = login(&pooler, "blocked", "trustdb", "blockedpw").await.unwrap_err();
    assert_refused(
        &e,
        "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"blocked\", database \"trustdb\", no encryption",
    );
    // A superuser is no member of ops (PostgreSQL's hba ignores superuserness).
    let e = connect_with(pooler.pg_config("postgres", "postgres")).await.unwrap_err();
    assert_refused(
        &e,
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption",
    );
    // No line for stranger at 127.0.0.1 outside trustdb.
    let e = login(&pooler, "stranger", "postgres", "strangerpw").await.unwrap_err();
    assert_refused(
        &e,
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"stranger\", database \"postgres\", no encryption",
    );
    // psql shows PostgreSQL's own words.
    let out = run_client(
        &cluster,
        "psql",
        &[
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &pooler.port().to_string(),
            "-U",
            "blocked",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FATAL:  pg_hba.conf rejects connection for host \"127.0.0.1\", user \"blocked\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lines_without_a_way_to_ask_the_server_refuse_rather_than_guess() {
    let cluster = cluster().await;
    let dir = Dir::new("groups");
    let hba = dir.write("hba.conf", "host all +ops 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n");
    let pooler = TestPooler::start(config_with_hba(&cluster, hba), Some(passwords())).await;
    // ops itself is a member of ops: rejected without asking anyone.
    let e = connect_with(pooler.pg_config("ops", "postgres")).await.unwrap_err();
    assert!(message(&e).starts_with("pg_hba.conf rejects connection"), "{e}");
    // Anyone else might be in ops: without auth.auth_user the pooler cannot
    // tell, and does not fall through to the trust line.
    let e = connect_with(pooler.pg_config("stranger", "postgres")).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    assert!(message(&e).contains("membership of role \"ops\" cannot be checked (set auth.auth_user)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_file_applies_to_new_logins_and_keeps_connected_clients() {
    let cluster = cluster().await;
    let dir = Dir::new("reload");
    let hba = dir.write("hba.conf", "host all all 127.0.0.1/32 trust\n");
    let pooler = TestPooler::start(config_with_hba(&cluster, hba.clone()), Some(passwords())).await;
    let connected = pooler.connect("stranger").await;

    // A broken file is refused with its file and line; the old rules stay.
    std::fs::write(&hba, "host all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 ldap\n").unwrap();
    let e = pooler.pooler.reload_access().unwrap_err().to_string();
    assert_eq!(e, format!("{}:2: authentication method \"ldap\" is not supported by the pooler", hba.display()));
    pooler.connect("md5user").await;

    std::fs::write(&hba, "host all stranger 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n").unwrap();
    assert!(pooler.pooler.reload_access().expect("reload"));
    let e = connect_with(pooler.pg_config("md5user", "postgres")).await.unwrap_err();
    assert!(message(&e).starts_with("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"md5user\""), "{e}");
    pooler.connect("stranger").await;
    // The client that logged in before the reload is still served.
    assert_eq!(connected.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hba_file_stops_the_start_naming_file_and_line() {
    let cluster = cluster().await;
    let dir = Dir::new("bad");
    let hba = dir.write("hba.conf", "# ok\nhost all all 127.0.0.1/32 trust\nhost all all samenet trust\n");
    let e = Pooler::builder(config_with_hba(&cluster, hba.clone())).passwords(passwords()).build().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "auth.hba_file: {}:3: \"samenet\" is not supported by the pooler; write the addresses as CIDR",
            hba.display()
        )
    );
    let missing = dir.0.join("missing.conf");
    let e = Pooler::builder(config_with_hba(&cluster, missing.clone())).passwords(passwords()).build().unwrap_err();
    assert!(e.to_string().starts_with(&format!("auth.hba_file: cannot read {}", missing.display())), "{e}");
}

/// psql with a libpq connection string: Ok(stdout) or Err(stderr).
fn psql_conn(cluster: &Cluster, conninfo: &str) -> Result<String, String> {
    let out = run_client(cluster, "psql", &[conninfo, "-XAtc", "SELECT current_user"], None);
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_lines_tell_tls_from_plain_text_and_check_certificates() {
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .init_sql("CREATE ROLE plainonly LOGIN; CREATE ROLE certuser LOGIN; CREATE ROLE pwuser LOGIN")
            .start()
            .expect("start PostgreSQL")
    })
    .await
    .expect("cluster task");
    let dir = Dir::new("ssl");
    let hba = dir.write(
        "hba.conf",
        "hostnossl all plainonly 127.0.0.1/32 trust\n\
         hostssl   all certuser  127.0.0.1/32 cert\n\
         hostssl   all pwuser    127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n\
         hostssl   all postgres  127.0.0.1/32 trust\n",
    );
    let certs = Certs::new("hba");
    let mut config = config_with_hba(&cluster, hba);
    let (cert, key) = certs.server("pooler", &["localhost", "127.0.0.1"]);
    // TLS offered, not demanded: the hba lines decide.
    config.client_tls.sslmode = ClientTlsMode::Allow;
    config.client_tls.cert_file = Some(cert);
    config.client_tls.key_file = Some(key);
    config.client_tls.ca_file = Some(certs.ca());
    let pooler = TestPooler::start(config, Some(PasswordFile::parse("pwuser:pw-of-pwuser\n").unwrap())).await;
    let (ccert, ckey) = certs.client("certuser");
    let conn = |user: &str, sslmode: &str, with_cert: bool| {
        let mut c = format!("host=127.0.0.1 port={} user={user} dbname=postgres sslmode={sslmode}", pooler.port());
        match with_cert {
            true => c.push_str(&format!(" sslcert={} sslkey={}", ccert.display(), ckey.display())),
            // libpq would otherwise look in ~/.postgresql.
            false => c.push_str(" sslcert=/nonexistent sslkey=/nonexistent"),
        }
        c
    };
    // hostnossl: plain text only.
    assert_eq!(psql_conn(&cluster, &conn("plainonly", "disable", false)).as_deref(), Ok("plainonly"));
    let e = psql_conn(&cluster, &conn("plainonly", "require", false)).unwrap_err();
    assert!(
        e.contains(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"plainonly\", database \"postgres\", SSL encryption"
        ),
        "{e}"
    );
    // hostssl: TLS only.
    let e = psql_conn(&cluster, &conn("postgres", "disable", false)).unwrap_err();
    assert!(
        e.contains(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption"
        ),
        "{e}"
    );
    assert_eq!(psql_conn(&cluster, &conn("postgres", "require", false)).as_deref(), Ok("postgres"));
    // cert: the certificate names the user.
    assert_eq!(psql_conn(&cluster, &conn("certuser", "require", true)).as_deref(), Ok("certuser"));
    let e = psql_conn(&cluster, &conn("certuser", "require", false)).unwrap_err();
    assert!(e.contains("connection requires a valid client certificate"), "{e}");
    // clientcert=verify-ca: a verified certificate, and the password.
    let e = psql_conn(&cluster, &format!("{} password=pw-of-pwuser", conn("pwuser", "require", false))).unwrap_err();
    assert!(e.contains("connection requires a valid client certificate"), "{e}");
    let with_cert = format!("{} password=pw-of-pwuser", conn("pwuser", "require", true));
    assert_eq!(psql_conn(&cluster, &with_cert).as_deref(), Ok("pwuser"));
    let e = psql_conn(&cluster, &format!("{} password=wrong", conn("pwuser", "require", true))).unwrap_err();
    assert!(e.contains("password authentication failed for user \"pwuser\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_lines_apply_to_unix_socket_clients_and_host_lines_to_tcp() {
    let cluster = primary_only().await;
    let dir = Dir::new("local");
    let sockets = dir.0.join("sock");
    std::fs::create_dir_all(&sockets).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o777)).unwrap();
    let hba = dir.write("hba.conf", "local all all reject\nhost all all 127.0.0.1/32 trust\n");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listeners = Listeners::from(tcp).with_unix_socket(&sockets, port, 0o777).await.expect("Unix socket");
    let pooler = Pooler::builder(config_with_hba(&cluster, hba)).passwords(passwords()).build().expect("valid config");
    let pooler = TestPooler::serve_on(pooler, listeners).await;
    let e = psql_conn(&cluster, &format!("host={} port={port} user=postgres dbname=postgres", sockets.display()))
        .unwrap_err();
    assert!(
        e.contains("pg_hba.conf rejects connection for host \"[local]\", user \"postgres\", database \"postgres\", no encryption"),
        "{e}"
    );
    assert_eq!(
        psql_conn(&cluster, &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres")).as_deref(),
        Ok("postgres")
    );
    drop(pooler);
}
