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
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// Authentication settings (`[auth]`).
#[derive(Clone, Debug, Deserialize)]
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
