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
