//! End-to-end: client authentication against the password file, and the
//! pooler logging in to PostgreSQL with each backend method.

mod common;

use common::*;
use pooler_core::config::AuthMethod;
use pooler_core::PasswordFile;
use pooler_testkit::Cluster;

/// Roles with each backend method: `password` (cleartext), md5, SCRAM, trust.
async fn cluster_with_password_roles() -> Cluster {
    tokio::task::spawn_blocking(|| {
        Cluster::builder()
            .hba_line("host all clear_user 127.0.0.1/32 password")
            .hba_line("host all md5_user 127.0.0.1/32 md5")
            .hba_line("host all scram_user 127.0.0.1/32 scram-sha-256")
            .init_sql(
                "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'pw_of_md5_user'; \
                 SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scrampw'; \
                 CREATE ROLE clear_user LOGIN PASSWORD 'clearpw'; CREATE ROLE trust_user LOGIN",
            )
            .start()
            .expect("start PostgreSQL")
    })
    .await
    .expect("cluster task")
}

/// A password file as a DBA would write it: the md5 and SCRAM secrets copied
/// from `pg_authid`, plaintext for the others.
fn password_file(cluster: &Cluster) -> PasswordFile {
    let secret = |role: &str| {
        cluster.primary().query_one(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")).unwrap()
    };
    let md5 = secret("md5_user");
    let scram = secret("scram_user");
    assert!(md5.starts_with("md5") && scram.starts_with("SCRAM-SHA-256$"));
    PasswordFile::parse(&format!(
        "# users of the tests\n\
         \"clear_user\" \"clearpw\"\n\
         md5_user:{md5}\n\
         \"scram_user\" \"{scram}\"\n\
         \"plain_user\" \"plainpw\"\n\
         trust_user:trustpw\n\
         \"postgres\" \"pgpw\"\n"
    ))
    .expect("valid password file")
}

async fn login(
    pooler: &TestPooler,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = pooler.pg_config(user, "postgres");
    cfg.password(password);
    connect_with(cfg).await
}

fn assert_bad_password(e: &tokio_postgres::Error, user: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("28P01"), "{e}");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.message(), format!("password authentication failed for user \"{user}\""));
    assert_eq!(db.severity(), "FATAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_clients_are_checked_against_plaintext_and_scram_secrets() {
    let cluster = cluster_with_password_roles().await;
    let mut config = trust_config(&cluster);
    config.auth.method = AuthMethod::ScramSha256;
    let pooler = TestPooler::start(config, Some(password_file(&cluster))).await;

    // Only a SCRAM verifier is known for scram_user: the pooler logs in to the
    // server with the ClientKey the client just proved.
    let c = login(&pooler, "scram_user", "scrampw").await.expect("SCRAM secret entry");
    assert_eq!(c.query_one("SELECT current_user::text", &[]).await.unwrap().get::<_, String>(0), "scram_user");
    let c = login(&pooler, "clear_user", "clearpw").await.expect("plaintext entry");
    c.simple_query("SELECT 1").await.unwrap();

    assert_bad_password(&login(&pooler, "scram_user", "wrong").await.unwrap_err(), "scram_user");
    assert_bad_password(&login(&pooler, "clear_user", "wrong").await.unwrap_err(), "clear_user");
    // An unknown user gets exactly the same answer.
    assert_bad_password(&login(&pooler, "nobody", "x").await.unwrap_err(), "nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_clients_are_checked_against_plaintext_and_md5_secrets() {
    let cluster = cluster_with_password_roles().await;
    let mut config = trust_config(&cluster);
    config.auth.method = AuthMethod::Md5;
    let pooler = TestPooler::start(config, Some(password_file(&cluster))).await;

    login(&pooler, "md5_user", "pw_of_md5_user")
        .await
        .expect("md5 secret entry")
        .simple_query("SELECT 1")
        .await
        .unwrap();
    login(&pooler, "clear_user", "clearpw").await.expect("plaintext entry").simple_query("SELECT 1").await.unwrap();
    // A SCRAM-only secret cannot answer md5: the client is asked for SCRAM, as PostgreSQL does.
    login(&pooler, "scram_user", "scrampw")
        .await
        .expect("scram entry under md5")
        .simple_query("SELECT 1")
        .await
        .unwrap();

    assert_bad_password(&login(&pooler, "md5_user", "wrong").await.unwrap_err(), "md5_user");
    assert_bad_password(&login(&pooler, "nobody", "x").await.unwrap_err(), "nobody");

    // A real libpq client (psql) with a password.
    let port = pooler.port().to_string();
    let mut cmd = std::process::Command::new(cluster.bin_dir().join("psql"));
    let out = cmd
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "md5_user",
            "-d",
            "postgres",
            "-c",
            "SELECT current_user",
        ])
        .env("PGPASSWORD", "pw_of_md5_user")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "md5_user");
    let out = std::process::Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &port, "-U", "md5_user", "-d", "postgres", "-c", "SELECT 1"])
        .env("PGPASSWORD", "nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed for user \"md5_user\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_lets_any_client_in_without_a_password() {
    let cluster = cluster_with_password_roles().await;
    let pooler = TestPooler::start(trust_config(&cluster), Some(password_file(&cluster))).await;
    let c = pooler.connect("trust_user").await;
    assert_eq!(c.query_one("SELECT current_user::text", &[]).await.unwrap().get::<_, String>(0), "trust_user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooler_logs_in_to_servers_with_cleartext_md5_and_scram() {
    let cluster = cluster_with_password_roles().await;
    let plain = PasswordFile::parse("clear_user:clearpw\nmd5_user:pw_of_md5_user\nscram_user:scrampw\n").unwrap();
    let pooler = TestPooler::start(trust_config(&cluster), Some(plain)).await;
    for user in ["clear_user", "md5_user", "scram_user", "trust_user"] {
        let c = pooler.connect(user).await;
        let who: String = c.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
        assert_eq!(who, user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_backend_password_is_a_clear_error() {
    let cluster = cluster_with_password_roles().await;
    // No password file at all: the server asks for a password the pooler lacks.
    let pooler = TestPooler::start(trust_config(&cluster), None).await;
    let e = connect_with(pooler.pg_config("scram_user", "postgres")).await.unwrap_err();
    assert!(message(&e).contains("no usable password"), "{e}");
    // A wrong password in the file: the server's own error reaches the client.
    let bad = PasswordFile::parse("\"scram_user\" \"not-the-password\"\n").unwrap();
    let pooler = TestPooler::start(trust_config(&cluster), Some(bad)).await;
    let e = connect_with(pooler.pg_config("scram_user", "postgres")).await.unwrap_err();
    assert!(message(&e).contains("authentication failed"), "{e}");
}
