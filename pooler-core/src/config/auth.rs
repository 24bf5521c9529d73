//! Client authentication settings (`[auth]`).

use std::path::PathBuf;

use serde::Deserialize;

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
    /// Method clients must use.
    pub method: AuthMethod,
    /// Password file (`"user" "secret"` or `user:secret` lines; plaintext, md5
    /// or SCRAM secrets). Used to check clients and to log in to backends.
    pub password_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { method: AuthMethod::ScramSha256, password_file: None }
    }
}
