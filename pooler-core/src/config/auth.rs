//! Client authentication settings (`[auth]`): the method, the password
//! file, the hba file and auth_query.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

/// pgbouncer's default `auth_query`: the role's secret from `pg_authid`,
/// NULL once `VALID UNTIL` has passed, nothing for a role that cannot log in.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END \
     FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

/// How clients prove who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AuthMethod {
    /// No password.
    #[serde(rename = "trust")]
    Trust,
    /// MD5 challenge (a user with a SCRAM secret is asked for SCRAM instead, as
    /// PostgreSQL does).
    #[serde(rename = "md5")]
    Md5,
    /// SCRAM-SHA-256 (SCRAM-SHA-256-PLUS, bound to the TLS channel, for
    /// clients over TLS that offer it).
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// The client's TLS certificate, verified against `client_tls.ca_file`:
    /// its common name is the user name. No password.
    #[serde(rename = "cert")]
    Cert,
    /// The operating-system user of a Unix-socket client (SO_PEERCRED) must
    /// be the user name. No password; TCP clients are refused.
    #[serde(rename = "peer")]
    Peer,
}

/// Authentication settings (`[auth]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Method clients must use when no `hba_file` is set.
    pub method: AuthMethod,
    /// Password file (`"user" "secret"` or `user:secret` lines; plaintext, md5
    /// or SCRAM secrets). Used to check clients and to log in to backends.
    pub password_file: Option<PathBuf>,
    /// A file in `pg_hba.conf` form choosing the method per connection type,
    /// database, user and address (first match wins; no match is refused).
    /// Set, it replaces `method`. Relative to the configuration file.
    pub hba_file: Option<PathBuf>,
    /// Role that runs `auth_query` for users missing from the password file
    /// [pgbouncer auth_user]; its own secret comes from the password file
    /// (or the server trusts it). Unset: no lookup, unknown users are refused.
    pub auth_user: Option<String>,
    /// Query returning (user name, secret) for the user in `$1`, sent as a
    /// bind parameter [pgbouncer auth_query]. A NULL secret or no row: the
    /// login fails as a wrong password does.
    pub auth_query: String,
    /// Database `auth_query` runs in; unset: the database the client asked for
    /// [pgbouncer auth_dbname].
    pub auth_dbname: Option<String>,
    /// How long a looked-up secret (or the answer "no such user") is reused
    /// before the server is asked again; "0s": every login asks.
    #[serde(deserialize_with = "duration")]
    pub auth_query_ttl: Duration,
    /// Longest a lookup may take, the auth_user's login included; past it the
    /// client's login is refused.
    #[serde(deserialize_with = "duration")]
    pub auth_query_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            method: AuthMethod::ScramSha256,
            password_file: None,
            hba_file: None,
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.into(),
            auth_dbname: None,
            auth_query_ttl: Duration::from_secs(60),
            auth_query_timeout: Duration::from_secs(5),
        }
    }
}

impl AuthConfig {
    /// Checks the hba and auth_query settings. Errors name the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.hba_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid("auth.hba_file", "must not be empty (leave it out to use auth.method)"));
        }
        if let Some(u) = &self.auth_user {
            if u.is_empty() || u.contains('\0') {
                return Err(invalid("auth.auth_user", "must be a role name"));
            }
        }
        if self.auth_dbname.as_ref().is_some_and(|d| d.is_empty() || d.contains('\0')) {
            return Err(invalid("auth.auth_dbname", "must be a database name"));
        }
        let q = &self.auth_query;
        if q.trim().is_empty() || q.contains('\0') {
            return Err(invalid("auth.auth_query", "must be a non-empty statement without NUL bytes"));
        }
        if !q.contains("$1") {
            return Err(invalid("auth.auth_query", "must take the user name as $1"));
        }
        if self.auth_query_timeout.is_zero() {
            return Err(invalid("auth.auth_query_timeout", "must be greater than zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const NODES: &str = "[[nodes]]\nhost = \"127.0.0.1\"\n";

    fn parse(auth: &str) -> Result<Config, String> {
        Config::from_toml(&format!("[auth]\nmethod = \"trust\"\n{auth}\n{NODES}")).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_query_settings_take_pgbouncers_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.auth.auth_query, DEFAULT_AUTH_QUERY);
        assert!(c.auth.auth_query.contains("$1") && c.auth.auth_query.contains("pg_authid"));
        assert_eq!((c.auth.auth_user.as_deref(), c.auth.auth_dbname.as_deref()), (None, None));
        assert_eq!(c.auth.auth_query_ttl, Duration::from_secs(60));
        assert_eq!(c.auth.auth_query_timeout, Duration::from_secs(5));
        assert!(c.auth.hba_file.is_none());
        let c =
            parse("auth_user = \"pgb\"\nauth_dbname = \"postgres\"\nauth_query_ttl = \"0s\"\nhba_file = \"hba.conf\"")
                .unwrap();
        assert_eq!(c.auth.auth_user.as_deref(), Some("pgb"));
        assert!(c.auth.auth_query_ttl.is_zero());
    }

    #[test]
    fn bad_auth_settings_are_named() {
        for (line, key) in [
            (
                "auth_query = \"SELECT usename, passwd FROM pg_shadow\"",
                "auth.auth_query: must take the user name as $1",
            ),
            ("auth_query = \"  \"", "auth.auth_query: must be a non-empty"),
            ("auth_user = \"\"", "auth.auth_user"),
            ("auth_dbname = \"\"", "auth.auth_dbname"),
            ("auth_query_timeout = \"0s\"", "auth.auth_query_timeout: must be greater than zero"),
            ("hba_file = \"\"", "auth.hba_file: must not be empty"),
            ("auth_query_ttl = \"soon\"", "auth_query_ttl"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(key), "{line}: {e}");
        }
    }

    #[test]
    fn a_relative_hba_file_is_relative_to_the_configuration_file() {
        let dir = std::env::temp_dir().join(format!("pooler-config-hba-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pooler.toml");
        std::fs::write(&file, format!("[auth]\nmethod = \"trust\"\nhba_file = \"conf/hba.conf\"\n{NODES}")).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.auth.hba_file, Some(dir.join("conf/hba.conf")));
        std::fs::write(&file, format!("[auth]\nmethod = \"trust\"\nhba_file = \"/etc/hba.conf\"\n{NODES}")).unwrap();
        assert_eq!(Config::load(&file).unwrap().auth.hba_file, Some(PathBuf::from("/etc/hba.conf")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
