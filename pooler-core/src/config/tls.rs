//! TLS settings: what the pooler demands of clients (`[client_tls]`) and how
//! it talks to servers (`[server_tls]`, and `sslmode` per node). The names
//! follow libpq's `sslmode` and pgbouncer's `client_tls_*` / `server_tls_*`.

use std::path::PathBuf;

use serde::Deserialize;

/// What the pooler demands of clients (`client_tls.sslmode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// TLS is not offered: SSLRequest is answered `N`.
    #[default]
    Disable,
    /// TLS is offered; plain text is accepted too.
    Allow,
    /// The same as `allow` on the pooler's side (the client prefers).
    Prefer,
    /// Plain text is refused; no client certificate is asked for.
    Require,
    /// TLS with a client certificate signed by `client_tls.ca_file`.
    VerifyCa,
    /// As `verify-ca`, and the certificate's common name must be the user
    /// name the client logs in as.
    VerifyFull,
}

impl ClientTlsMode {
    /// TLS is offered to clients.
    pub fn offers(self) -> bool {
        self != ClientTlsMode::Disable
    }

    /// Plain-text clients are refused.
    pub fn requires(self) -> bool {
        self >= ClientTlsMode::Require
    }

    /// A client certificate is required.
    pub fn requires_certificate(self) -> bool {
        self >= ClientTlsMode::VerifyCa
    }
}

/// How the pooler connects to a server (`server_tls.sslmode`,
/// `nodes[i].sslmode`), as libpq's `sslmode` means it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain text; no SSLRequest is sent.
    Disable,
    /// TLS if the server offers it, plain text otherwise; the certificate
    /// is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with a certificate signed by `server_tls.ca_file`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the node's host.
    VerifyFull,
}

impl ServerTlsMode {
    /// The pooler asks for TLS.
    pub fn asks(self) -> bool {
        self != ServerTlsMode::Disable
    }

    /// A server that declines TLS is not used.
    pub fn requires(self) -> bool {
        self >= ServerTlsMode::Require
    }

    /// The server's certificate chain is checked against the CA file.
    pub fn verifies(self) -> bool {
        self >= ServerTlsMode::VerifyCa
    }
}

/// Lowest TLS version accepted (`client_tls.min_protocol`,
/// `server_tls.min_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// TLS towards clients (`[client_tls]`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// What clients must do; `disable` by default.
    pub sslmode: ClientTlsMode,
    /// The pooler's certificate chain (PEM), required unless `disable`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must be signed by;
    /// needed for `verify-ca`, `verify-full` and the hba `cert` method.
    /// Without it no client certificate is asked for.
    pub ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted.
    pub min_protocol: TlsVersion,
}

/// TLS towards servers and health checks (`[server_tls]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsConfig {
    /// How to connect, for nodes without their own `sslmode`; `prefer` by
    /// default, as libpq.
    pub sslmode: ServerTlsMode,
    /// CA certificates (PEM) server certificates must be signed by; needed
    /// for `verify-ca` and `verify-full`.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// Lowest TLS version accepted.
    pub min_protocol: TlsVersion,
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        ServerTlsConfig {
            sslmode: ServerTlsMode::Prefer,
            ca_file: None,
            cert_file: None,
            key_file: None,
            min_protocol: TlsVersion::Tls12,
        }
    }
}
