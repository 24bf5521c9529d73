//! TLS contexts built from the configuration: the pooler as a TLS server to
//! its clients ([`Acceptor`]) and as a TLS client to its servers
//! ([`Upstream`]). Both are loaded from PEM files by [`TlsContexts::load`]
//! and held behind [`arc_swap`] so that a reload can put new certificates in
//! place while connected clients keep the session they have.
//!
//! The handshakes themselves run in [`crate::transport`]; the login decides
//! when (`session`, `backend`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{ClientTlsConfig, Config, ServerTlsConfig, ServerTlsMode, TlsVersion};

use crate::certificate::end_point;

/// The ALPN protocol name of PostgreSQL (required with direct TLS).
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no PEM item of the kind expected.
    #[error("{key}: {path} holds no {what} in PEM form")]
    Empty {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was expected ("certificate", "private key").
        what: &'static str,
    },
    /// rustls refused the certificates, key or settings.
    #[error("{key}: {source}")]
    Rustls {
        /// The setting at fault.
        key: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built from the CA file.
    #[error("client_tls.ca_file: {0}")]
    ClientVerifier(String),
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_owned(), source })
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(key, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Empty { key, path: path.to_owned(), what: "certificate" });
    }
    Ok(certs)
}

fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Empty { key, path: path.to_owned(), what: "private key" })
}

fn roots(key: &'static str, path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certificates(key, path)? {
        store.add(cert).map_err(|source| TlsError::Rustls { key, source })?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(v: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match v {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

/// The pooler's side of TLS with its clients.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// The rustls server configuration (certificate, client verifier, ALPN).
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The `tls-server-end-point` binding of the pooler's certificate
    /// (`None`: its signature has no hash the binding defines, so
    /// SCRAM-SHA-256-PLUS is not offered).
    pub(crate) end_point: Option<Vec<u8>>,
}

impl Acceptor {
    /// Loads `[client_tls]`; `None` when TLS is not offered.
    fn load(c: &ClientTlsConfig) -> Result<Option<Acceptor>, TlsError> {
        if !c.sslmode.offers() {
            return Ok(None);
        }
        let (Some(cert_file), Some(key_file)) = (&c.cert_file, &c.key_file) else {
            // Config::validate refuses this; say so rather than panic.
            return Err(TlsError::Empty { key: "client_tls.cert_file", path: PathBuf::new(), what: "certificate" });
        };
        let chain = certificates("client_tls.cert_file", cert_file)?;
        let key = private_key("client_tls.key_file", key_file)?;
        let end_point = end_point(&chain[0]);
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(c.min_protocol))
            .map_err(|source| TlsError::Rustls { key: "client_tls.min_protocol", source })?;
        let builder = match &c.ca_file {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots("client_tls.ca_file", ca)?,
                    provider(),
                );
                // Without verify-ca a certificate stays optional: the hba
                // `cert` method asks for one per connection.
                let verifier =
                    if c.sslmode.requires_certificate() { verifier } else { verifier.allow_unauthenticated() };
                builder
                    .with_client_cert_verifier(verifier.build().map_err(|e| TlsError::ClientVerifier(e.to_string()))?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Rustls { key: "client_tls.key_file", source })?;
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(Some(Acceptor { config: Arc::new(config), end_point }))
    }
}

/// The pooler's side of TLS with its servers: one rustls client
/// configuration per kind of certificate check.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// `prefer` and `require`: encrypted, not authenticated (as libpq).
    unchecked: Option<Arc<rustls::ClientConfig>>,
    /// `verify-ca`: the chain, not the name.
    chain_only: Option<Arc<rustls::ClientConfig>>,
    /// `verify-full`: the chain and the host name.
    full: Option<Arc<rustls::ClientConfig>>,
}

impl Upstream {
    fn load(s: &ServerTlsConfig) -> Result<Upstream, TlsError> {
        let identity = match (&s.cert_file, &s.key_file) {
            (Some(cert), Some(key)) => {
                Some((certificates("server_tls.cert_file", cert)?, private_key("server_tls.key_file", key)?))
            }
            _ => None,
        };
        let build = |verifier: Arc<dyn ServerCertVerifier>| -> Result<Arc<rustls::ClientConfig>, TlsError> {
            let builder = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions(s.min_protocol))
                .map_err(|source| TlsError::Rustls { key: "server_tls.min_protocol", source })?
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let mut config = match &identity {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|source| TlsError::Rustls { key: "server_tls.key_file", source })?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
            Ok(Arc::new(config))
        };
        let unchecked = Some(build(Arc::new(Lenient { chain: None, provider: provider() }))?);
        let (chain_only, full) = match &s.ca_file {
            Some(ca) => {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots("server_tls.ca_file", ca)?,
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Rustls {
                    key: "server_tls.ca_file",
                    source: rustls::Error::General(e.to_string()),
                })?;
                let chain_only = Lenient { chain: Some(webpki.clone()), provider: provider() };
                (Some(build(Arc::new(chain_only))?), Some(build(webpki)?))
            }
            None => (None, None),
        };
        Ok(Upstream { unchecked, chain_only, full })
    }

    /// The configuration for `mode` (`None`: TLS not asked for, or a
    /// verifying mode without a CA file, which validation refuses).
    pub(crate) fn for_mode(&self, mode: ServerTlsMode) -> Option<&Arc<rustls::ClientConfig>> {
        match mode {
            ServerTlsMode::Disable => None,
            ServerTlsMode::Prefer | ServerTlsMode::Require => self.unchecked.as_ref(),
            ServerTlsMode::VerifyCa => self.chain_only.as_ref(),
            ServerTlsMode::VerifyFull => self.full.as_ref(),
        }
    }
}

/// How the pooler reaches one server over TLS: the mode the node uses and
/// the contexts it shares with every node (swapped at reload).
#[derive(Clone, Debug)]
pub(crate) struct ServerTls {
    /// The node's `sslmode` (or `server_tls.sslmode`).
    pub(crate) mode: ServerTlsMode,
    pub(crate) upstream: Arc<ArcSwap<Upstream>>,
}

/// Every TLS context of a pooler, reloadable as a whole.
#[derive(Debug)]
pub(crate) struct TlsContexts {
    /// Towards clients (`None`: TLS not offered).
    pub(crate) clients: ArcSwapOption<Acceptor>,
    /// Towards servers.
    pub(crate) servers: Arc<ArcSwap<Upstream>>,
}

impl TlsContexts {
    /// Loads the certificate, key and CA files `config` names.
    pub(crate) fn load(config: &Config) -> Result<TlsContexts, TlsError> {
        Ok(TlsContexts {
            clients: ArcSwapOption::new(Acceptor::load(&config.client_tls)?.map(Arc::new)),
            servers: Arc::new(ArcSwap::from_pointee(Upstream::load(&config.server_tls)?)),
        })
    }

    /// No TLS towards clients and no usable context towards servers: every
    /// node whose `sslmode` asks for TLS fails to connect with the reason.
    pub(crate) fn plain() -> TlsContexts {
        let none = Upstream { unchecked: None, chain_only: None, full: None };
        TlsContexts { clients: ArcSwapOption::empty(), servers: Arc::new(ArcSwap::from_pointee(none)) }
    }

    /// Reads the files again and, when all of them load, puts them in
    /// place: new connections use them, connected ones keep their session.
    /// On an error nothing changes. (The reload of the configuration calls
    /// this; the modes themselves come from the configuration in force.)
    pub(crate) fn reload(&self, config: &Config) -> Result<(), TlsError> {
        let clients = Acceptor::load(&config.client_tls)?;
        let servers = Upstream::load(&config.server_tls)?;
        self.clients.store(clients.map(Arc::new));
        self.servers.store(Arc::new(servers));
        Ok(())
    }

    /// The TLS settings of the node `node` of `config`.
    pub(crate) fn for_node(&self, config: &Config, node: usize) -> ServerTls {
        let n = config.nodes.get(node);
        let mode = match n {
            Some(n) if n.host.starts_with('/') => ServerTlsMode::Disable,
            Some(n) => n.sslmode.unwrap_or(config.server_tls.sslmode),
            None => config.server_tls.sslmode,
        };
        ServerTls { mode, upstream: self.servers.clone() }
    }
}

/// The server-certificate checks that are not rustls's own full check:
/// none at all (`sslmode` `prefer` and `require`, which encrypt without
/// authenticating, as libpq does) or the chain without the name
/// (`verify-ca`: a node addressed by an IP its certificate does not list is
/// still trusted). Handshake signatures are checked either way, so the peer
/// holds the key of the certificate it sent.
#[derive(Debug)]
struct Lenient {
    /// `None`: no check of the certificate; `Some`: the chain's.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The name a server's certificate must carry under `verify-full`: its host
/// as an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}
