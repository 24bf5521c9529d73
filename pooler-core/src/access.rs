//! The login's access decisions: which method a client must use (the hba
//! rules when `auth.hba_file` is set, else `auth.method`), the user's
//! secret (the password file, else auth_query), and re-reading the hba file
//! for a reload.

use std::sync::Arc;

use crate::auth::UserSecret;
use crate::config::AuthMethod;
use crate::error::Error;
use crate::hba::{self, ClientCert, Connection, HbaError, HbaMethod, HbaRules, Transport, Unresolved};
use crate::runtime::Shared;

/// Most role memberships one login may ask the server about (each `+role`
/// or `samerole` the decision reaches costs one lookup).
const MAX_MEMBERSHIP_LOOKUPS: usize = 16;

fn refused(message: String) -> Error {
    Error::Refused { code: hba::REFUSAL_SQLSTATE, message }
}

/// The method the client on `transport` must log in with as `user` to
/// `database`: the first matching hba line's, or `auth.method` without an
/// hba file. `client_cn`: the common name of the client's verified TLS
/// certificate, for the line's `clientcert=` (checked here, before any
/// password exchange). Refusals are errors with PostgreSQL's words (28000):
/// no matching line, a `reject` line, a `clientcert=` the connection does
/// not meet, the `password` method (not offered), a role membership that
/// cannot be checked. `cert` and `peer` are returned for the caller to check.
pub(crate) async fn login_method(
    shared: &Shared,
    transport: Transport,
    client_cn: Option<&str>,
    user: &str,
    database: &str,
) -> Result<HbaMethod, Error> {
    let Some(rules) = shared.hba.load_full() else {
        return Ok(match shared.config().auth.method {
            AuthMethod::Trust => HbaMethod::Trust,
            AuthMethod::Md5 => HbaMethod::Md5,
            AuthMethod::ScramSha256 => HbaMethod::ScramSha256,
            AuthMethod::Cert => HbaMethod::Cert,
            AuthMethod::Peer => HbaMethod::Peer,
        });
    };
    let conn = Connection { transport, database, user };
    let mut known: Vec<(String, bool)> = Vec::new();
    for _ in 0..=MAX_MEMBERSHIP_LOOKUPS {
        let members = |_: &str, role: &str| known.iter().find(|(r, _)| r == role).map(|(_, m)| *m);
        let decision = match rules.decide(&conn, &members) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(refused(hba::no_entry_message(&conn))),
            Err(Unresolved { line, role }) => {
                let member = membership(shared, &rules, line, user, &role, database).await?;
                known.push((role, member));
                continue;
            }
        };
        tracing::debug!(%user, %database, line = decision.line, method = decision.method.as_str(), "hba line matched");
        // A `cert` line's certificate is the caller's to check (with
        // PostgreSQL's own words for that method).
        let clientcert = decision.options.clientcert.filter(|_| decision.method != HbaMethod::Cert);
        match clientcert {
            Some(_) if client_cn.is_none() => {
                return Err(refused("connection requires a valid client certificate".into()));
            }
            Some(ClientCert::VerifyFull) if client_cn != Some(user) => {
                return Err(refused(format!(
                    "certificate validation (clientcert=verify-full) failed for user \"{user}\": CN mismatch"
                )));
            }
            _ => {}
        }
        return match decision.method {
            HbaMethod::Reject => Err(refused(hba::rejects_message(&conn))),
            HbaMethod::Password => Err(refused(format!(
                "password (cleartext) authentication (line {} of {}) is not offered by the pooler; \
                 use scram-sha-256 or md5",
                decision.line,
                rules.origin()
            ))),
            m => Ok(m),
        };
    }
    Err(refused(format!("the hba rules need more than {MAX_MEMBERSHIP_LOOKUPS} role memberships for user \"{user}\"")))
}

/// Whether `user` is a member of `role`, asked of the primary through
/// auth_query's connection; without `auth.auth_user` it cannot be told and
/// the login is refused (an unknown answer must not fall through to a
/// later, looser line).
async fn membership(
    shared: &Shared,
    rules: &HbaRules,
    line: usize,
    user: &str,
    role: &str,
    database: &str,
) -> Result<bool, Error> {
    let lookup = shared.auth_query.as_ref().zip(shared.node(shared.router.primary()));
    let Some((aq, server)) = lookup else {
        tracing::warn!(%user, role, line, "hba rules need a role membership; set auth.auth_user so the pooler can ask");
        return Err(refused(format!(
            "{}:{line}: membership of role \"{role}\" cannot be checked (set auth.auth_user)",
            rules.origin()
        )));
    };
    let passwords = shared.passwords();
    let auth_secret = passwords.as_ref().and_then(|p| p.get(aq.auth_user()));
    aq.is_member(&server, auth_secret, user, role, database).await.map_err(|e| {
        tracing::warn!(%user, role, error = %e, "role membership lookup failed");
        refused(format!("could not check the membership of user \"{user}\" in role \"{role}\""))
    })
}

/// The secret of `user`: the password file's entry, else (with
/// `auth.auth_user` set) auth_query's answer for `database`. `Ok(None)`:
/// no secret (the login then fails as a wrong password does). A lookup
/// that cannot be made refuses the login; it is logged without secrets.
pub(crate) async fn user_secret(shared: &Shared, user: &str, database: &str) -> Result<Option<UserSecret>, Error> {
    if let Some(s) = shared.passwords().as_ref().and_then(|p| p.get(user)) {
        return Ok(Some(s.clone()));
    }
    let Some(aq) = shared.auth_query.as_ref() else { return Ok(None) };
    let Some(server) = shared.node(shared.router.primary()) else {
        return Err(Error::Refused { code: "08001", message: "no backend node is configured".into() });
    };
    let passwords = shared.passwords();
    let auth_secret = passwords.as_ref().and_then(|p| p.get(aq.auth_user()));
    let (secret, fresh) = aq.secret(&server, auth_secret, user, database).await.map_err(|e| {
        tracing::warn!(%user, auth_user = aq.auth_user(), error = %e, "auth_query lookup failed");
        e.into_client_error(user)
    })?;
    if fresh {
        // The password may have changed: the user's pools open their next
        // server connections with the secret just read.
        shared.pools.learn_secret(user, secret.as_ref());
    }
    Ok(secret)
}

/// Re-reads `auth.hba_file` and swaps the new rules in for the next
/// logins (connected clients are not affected), and forgets auth_query's
/// cached answers. On an error the rules in force stay. `Ok(false)`: no hba
/// file is configured.
pub(crate) fn reload(shared: &Shared) -> Result<bool, HbaError> {
    if let Some(aq) = &shared.auth_query {
        aq.forget_all();
    }
    let Some(path) = &shared.config().auth.hba_file else { return Ok(false) };
    let rules = HbaRules::reload(path)?;
    shared.hba.store(Some(Arc::new(rules)));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(hba: Option<&str>) -> Arc<Shared> {
        let mut config = crate::Config::with_nodes(vec![crate::config::NodeConfig::new("127.0.0.1", 1)]);
        config.auth.method = AuthMethod::Md5;
        let shared =
            crate::Pooler::with_passwords(config, Some(crate::auth::PasswordFile::default())).unwrap().shared();
        if let Some(text) = hba {
            shared.hba.store(Some(Arc::new(HbaRules::parse(text, "hba.conf").unwrap())));
        }
        shared
    }

    fn tcp(tls: bool) -> Transport {
        Transport::Host { addr: [10, 0, 0, 9].into(), tls }
    }

    async fn method(s: &Shared, t: Transport, user: &str) -> Result<HbaMethod, String> {
        with_cn(s, t, None, user).await
    }

    async fn with_cn(s: &Shared, t: Transport, cn: Option<&str>, user: &str) -> Result<HbaMethod, String> {
        login_method(s, t, cn, user, "app").await.map_err(|e| {
            assert_eq!(e.failure(crate::error::Stage::Login).sqlstate, "28000");
            e.to_string()
        })
    }

    #[tokio::test]
    async fn without_an_hba_file_auth_method_applies() {
        assert_eq!(method(&shared(None), tcp(false), "u").await, Ok(HbaMethod::Md5));
    }

    #[tokio::test]
    async fn hba_decisions_become_methods_or_refusals() {
        let s = shared(Some(
            "hostssl all certuser 0.0.0.0/0 cert\n\
             local all all peer\n\
             host all bad 0.0.0.0/0 reject\n\
             host all plain 0.0.0.0/0 password\n\
             host all +grp 0.0.0.0/0 trust\n\
             host all all 10.0.0.0/8 scram-sha-256\n",
        ));
        assert_eq!(method(&s, tcp(false), "grp").await, Ok(HbaMethod::Trust));
        assert_eq!(
            method(&s, tcp(true), "bad").await,
            Err("pg_hba.conf rejects connection for host \"10.0.0.9\", user \"bad\", database \"app\", SSL encryption"
                .into())
        );
        // cert: the caller checks the certificate.
        assert_eq!(method(&s, tcp(true), "certuser").await, Ok(HbaMethod::Cert));
        assert_eq!(with_cn(&s, tcp(true), Some("other"), "certuser").await, Ok(HbaMethod::Cert));
        assert_eq!(method(&s, Transport::Local, "u").await, Ok(HbaMethod::Peer));
        let e = method(&s, tcp(false), "plain").await.unwrap_err();
        assert!(e.starts_with("password (cleartext) authentication (line 4"), "{e}");
        // Membership of grp is unknown without auth.auth_user: refused.
        let e = method(&s, tcp(false), "x").await.unwrap_err();
        assert_eq!(e, "hba.conf:5: membership of role \"grp\" cannot be checked (set auth.auth_user)");
        let e = method(&s, Transport::Host { addr: [192, 168, 0, 1].into(), tls: false }, "bad").await.unwrap_err();
        assert!(e.starts_with("pg_hba.conf rejects"), "{e}");
    }

    #[tokio::test]
    async fn clientcert_is_checked_before_any_password() {
        let s = shared(Some(
            "hostssl all ca 0.0.0.0/0 md5 clientcert=verify-ca\n\
             hostssl all full 0.0.0.0/0 scram-sha-256 clientcert=verify-full\n",
        ));
        let e = with_cn(&s, tcp(true), None, "ca").await.unwrap_err();
        assert_eq!(e, "connection requires a valid client certificate");
        assert_eq!(with_cn(&s, tcp(true), Some("anyone"), "ca").await, Ok(HbaMethod::Md5));
        let e = with_cn(&s, tcp(true), Some("other"), "full").await.unwrap_err();
        assert_eq!(e, "certificate validation (clientcert=verify-full) failed for user \"full\": CN mismatch");
        assert_eq!(with_cn(&s, tcp(true), Some("full"), "full").await, Ok(HbaMethod::ScramSha256));
    }

    #[tokio::test]
    async fn no_matching_line_is_refused_with_postgresqls_words() {
        let s = shared(Some("host all all 192.168.0.0/16 trust\n"));
        assert_eq!(
            method(&s, tcp(false), "u").await,
            Err("no pg_hba.conf entry for host \"10.0.0.9\", user \"u\", database \"app\", no encryption".into())
        );
    }

    #[tokio::test]
    async fn without_auth_query_an_unknown_user_has_no_secret() {
        let s = shared(None);
        assert!(user_secret(&s, "nobody", "app").await.unwrap().is_none());
    }
}
