//! SCRAM-SHA-256, server side (RFC 5802 / RFC 7677, as PostgreSQL speaks it).

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::{Digest, Sha256};

use super::ct_eq;
use super::passfile::ScramSecret;

/// Longest client SCRAM message accepted (PostgreSQL's are far below this).
const MAX_MESSAGE: usize = 1024;
/// Random bytes in the server's part of the nonce.
const SERVER_NONCE_LEN: usize = 18;

/// Why a SCRAM exchange failed. Only [`ScramError::InvalidProof`] means a wrong
/// password; the others are protocol errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The client chose a mechanism the server did not offer.
    #[error("client selected an invalid SASL authentication mechanism")]
    UnsupportedMechanism,
    /// The channel binding asked for does not fit the connection: binding
    /// without TLS, a mechanism and flag that disagree, or a client saying
    /// the server cannot bind when it offered SCRAM-SHA-256-PLUS.
    #[error("SCRAM channel binding negotiation error")]
    ChannelBinding,
    /// A malformed SCRAM message.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof does not match: wrong password (or unknown user).
    #[error("invalid SCRAM proof")]
    InvalidProof,
    /// A message arrived out of order.
    #[error("SCRAM message out of order")]
    OutOfOrder,
    /// The server's salt or iteration count differ from the password file's
    /// verifier, so a ClientKey cannot be used with it.
    #[error("the server's SCRAM verifier differs from the password file's (salt or iterations)")]
    VerifierMismatch,
}

enum State {
    /// Waiting for client-first-message.
    Start,
    /// Sent server-first; waiting for client-final.
    SentFirst { client_first_bare: String, server_first: String, nonce: String, cbind_input: Vec<u8> },
    /// Proof checked and accepted.
    Done { client_key: [u8; 32] },
    /// Failed; every later call fails.
    Failed,
}

/// The server's half of one SCRAM-SHA-256 exchange.
pub struct ScramServer {
    secret: ScramSecret,
    /// False for a mock exchange (unknown user): it always fails at the end.
    real: bool,
    /// The `tls-server-end-point` data of the TLS session the exchange runs
    /// over (`None`: plain text, or no binding for the certificate).
    channel_binding: Option<Vec<u8>>,
    state: State,
    #[cfg(test)]
    fixed_nonce: Option<String>,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramServer(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A per-process secret so mock salts are stable per user but unguessable.
fn mock_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| rand::rng().random())
}

impl ScramServer {
    /// Starts an exchange. `secret` is None for an unknown user or one without
    /// a usable verifier: the exchange then runs with a salt derived from the
    /// user name (so it looks like any other) and always fails at the proof.
    pub fn new(secret: Option<&ScramSecret>, user: &str) -> ScramServer {
        let (secret, real) = match secret {
            Some(s) => (s.clone(), true),
            None => {
                let digest = Sha256::new().chain_update(user.as_bytes()).chain_update(mock_key()).finalize();
                let salt = digest[..16].to_vec();
                let stored_key: [u8; 32] = rand::rng().random();
                (ScramSecret { iterations: 4096, salt, stored_key, server_key: [0; 32] }, false)
            }
        };
        ScramServer {
            secret,
            real,
            channel_binding: None,
            state: State::Start,
            #[cfg(test)]
            fixed_nonce: None,
        }
    }

    /// Runs the exchange over a TLS session whose `tls-server-end-point`
    /// binding is `data`: SCRAM-SHA-256-PLUS is offered, and a client that
    /// says it could bind but thinks the server cannot (`y`) is refused, as
    /// RFC 5802 asks (someone removed PLUS from the offer).
    pub fn with_channel_binding(mut self, data: Option<Vec<u8>>) -> ScramServer {
        self.channel_binding = data;
        self
    }

    /// The body of AuthenticationSASL: the offered mechanisms.
    pub fn mechanisms(&self) -> &'static [u8] {
        match self.channel_binding {
            Some(_) => b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0",
            None => b"SCRAM-SHA-256\0\0",
        }
    }

    /// Handles SASLInitialResponse; returns the server-first-message.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Start) {
            self.state = State::Failed;
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Failed;
        let plus = match mechanism {
            "SCRAM-SHA-256" => false,
            "SCRAM-SHA-256-PLUS" if self.channel_binding.is_some() => true,
            _ => return Err(ScramError::UnsupportedMechanism),
        };
        let msg = text(data)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed("missing gs2 header"))?;
        match (flag, plus) {
            ("n", false) => {}
            // The client could bind and believes the server cannot: over
            // TLS that means the offer was tampered with.
            ("y", false) if self.channel_binding.is_none() => {}
            ("y", false) => return Err(ScramError::ChannelBinding),
            ("p=tls-server-end-point", true) => {}
            (f, _) if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("invalid channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("missing gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("authorization identity is not supported"));
        }
        let mut cbind_input = format!("{flag},{authzid},").into_bytes();
        if plus {
            cbind_input.extend_from_slice(self.channel_binding.as_deref().unwrap_or_default());
        }
        let mut fields = bare.split(',');
        let mut first = fields.next().ok_or(ScramError::Malformed("missing user name"))?;
        if first.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extensions are not supported"));
        }
        // PostgreSQL ignores the SCRAM user name and uses the startup user.
        if !first.starts_with("n=") {
            return Err(ScramError::Malformed("expected n= attribute"));
        }
        first = fields.next().ok_or(ScramError::Malformed("missing nonce"))?;
        let client_nonce = first.strip_prefix("r=").ok_or(ScramError::Malformed("expected r= attribute"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(ScramError::Malformed("invalid client nonce"));
        }
        let server_nonce = self.server_nonce();
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", STANDARD.encode(&self.secret.salt), self.secret.iterations);
        self.state = State::SentFirst {
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            cbind_input,
        };
        Ok(server_first.into_bytes())
    }

    fn server_nonce(&self) -> String {
        #[cfg(test)]
        if let Some(n) = &self.fixed_nonce {
            return n.clone();
        }
        let bytes: [u8; SERVER_NONCE_LEN] = rand::rng().random();
        STANDARD.encode(bytes)
    }

    /// Handles the client-final-message; returns the server-final-message when
    /// the proof is valid.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::SentFirst { client_first_bare, server_first, nonce, cbind_input } =
            std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let msg = text(data)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("missing proof"))?;
        let mut fields = without_proof.split(',');
        let cbind =
            fields.next().and_then(|f| f.strip_prefix("c=")).ok_or(ScramError::Malformed("expected c= attribute"))?;
        if cbind != STANDARD.encode(&cbind_input) {
            return Err(ScramError::Malformed("channel binding data does not match the gs2 header"));
        }
        let r =
            fields.next().and_then(|f| f.strip_prefix("r=")).ok_or(ScramError::Malformed("expected r= attribute"))?;
        if r != nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = STANDARD.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let proof: [u8; 32] = proof.try_into().map_err(|_| ScramError::Malformed("proof is not 32 bytes"))?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !ct_eq(&stored, &self.secret.stored_key) || !self.real {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        self.state = State::Done { client_key };
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }

    /// After a successful exchange, the ClientKey recovered from the proof; it
    /// can log in to a server holding the same verifier without the password.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        match self.state {
            State::Done { client_key } => Some(client_key),
            _ => None,
        }
    }
}

/// The client half of SCRAM-SHA-256 driven by a ClientKey instead of a
/// password: what lets the pooler log in to a server as a user whose password
/// it only knows as a SCRAM verifier, once that user's client has proven the
/// password to the pooler ([`ScramServer::client_key`]). The server must hold
/// the same verifier (same salt and iteration count).
pub struct ScramKeyClient {
    client_key: [u8; 32],
    /// The gs2 header and channel binding data, as `c=` carries them.
    binding: Vec<u8>,
    secret: ScramSecret,
    client_first_bare: String,
    nonce: String,
    expected_signature: Option<[u8; 32]>,
}

impl std::fmt::Debug for ScramKeyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeyClient(..)")
    }
}

impl ScramKeyClient {
    /// Starts an exchange with `client_key` for the verifier `secret`;
    /// with `channel_binding` (`tls-server-end-point` data), as
    /// SCRAM-SHA-256-PLUS.
    pub fn new(client_key: [u8; 32], secret: &ScramSecret, channel_binding: Option<Vec<u8>>) -> ScramKeyClient {
        let bytes: [u8; SERVER_NONCE_LEN] = rand::rng().random();
        let nonce = STANDARD.encode(bytes);
        let binding = match channel_binding {
            Some(data) => [&b"p=tls-server-end-point,,"[..], &data].concat(),
            None => b"n,,".to_vec(),
        };
        ScramKeyClient {
            client_key,
            binding,
            secret: secret.clone(),
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            expected_signature: None,
        }
    }

    /// The client-first-message for SASLInitialResponse.
    pub fn client_first(&self) -> Vec<u8> {
        let header = match self.binding.starts_with(b"p=") {
            true => "p=tls-server-end-point,,",
            false => "n,,",
        };
        format!("{header}{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first-message; returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = text(data)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for field in msg.split(',') {
            if let Some(v) = field.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = field.strip_prefix("s=") {
                salt = Some(STANDARD.decode(v).map_err(|_| ScramError::Malformed("salt is not base64"))?);
            } else if let Some(v) = field.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|_| ScramError::Malformed("bad iteration count"))?);
            }
        }
        let nonce = nonce.ok_or(ScramError::Malformed("server-first lacks r="))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend the client nonce"));
        }
        if salt.as_deref() != Some(&self.secret.salt[..]) || iterations != Some(self.secret.iterations) {
            return Err(ScramError::VerifierMismatch);
        }
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(&self.binding));
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let stored_key: [u8; 32] = Sha256::digest(self.client_key).into();
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let mut proof = [0u8; 32];
        for i in 0..32 {
            proof[i] = self.client_key[i] ^ signature[i];
        }
        self.expected_signature = Some(hmac(&self.secret.server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (the server's signature).
    pub fn server_final(&self, data: &[u8]) -> Result<(), ScramError> {
        let expected = self.expected_signature.ok_or(ScramError::OutOfOrder)?;
        let msg = text(data)?;
        let v = msg.strip_prefix("v=").ok_or(ScramError::Malformed("server-final lacks v="))?;
        let got = STANDARD.decode(v).map_err(|_| ScramError::Malformed("signature is not base64"))?;
        if ct_eq(&got, &expected) {
            Ok(())
        } else {
            Err(ScramError::InvalidProof)
        }
    }
}

fn text(data: &[u8]) -> Result<&str, ScramError> {
    if data.len() > MAX_MESSAGE {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(server: &mut ScramServer, password: &str) -> Result<Vec<u8>, ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
        let first = server.client_first("SCRAM-SHA-256", client.message())?;
        client.update(&first).map_err(|_| ScramError::Malformed("client rejected server-first"))?;
        let fin = server.client_final(client.message())?;
        client.finish(&fin).map_err(|_| ScramError::Malformed("client rejected server signature"))?;
        Ok(fin)
    }

    #[test]
    fn rfc7677_vector_is_reproduced() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = {
            // Hi(password, salt, 4096)
            let mut u = hmac(b"pencil", &[&salt, &[0, 0, 0, 1]]);
            let mut out = u;
            for _ in 1..4096 {
                u = hmac(b"pencil", &[&u]);
                for i in 0..32 {
                    out[i] ^= u[i];
                }
            }
            out
        };
        let client_key = hmac(&salted, &[b"Client Key"]);
        let secret = ScramSecret {
            iterations: 4096,
            salt,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, &[b"Server Key"]),
        };
        let mut s = ScramServer::new(Some(&secret), "user");
        s.fixed_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        let first = s.client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let fin = s
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(s.client_key(), Some(client_key));
    }

    #[test]
    fn real_client_logs_in_with_plaintext_and_stored_verifiers() {
        let derived = ScramSecret::from_password("secret");
        assert!(exchange(&mut ScramServer::new(Some(&derived), "u"), "secret").is_ok());
        let stored = ScramSecret::parse(&postgres_protocol::password::scram_sha_256(b"secret")).unwrap();
        let mut s = ScramServer::new(Some(&stored), "u");
        assert!(exchange(&mut s, "secret").is_ok());
        assert!(s.client_key().is_some());
    }

    #[test]
    fn client_key_from_one_exchange_logs_in_to_another_server_with_the_same_verifier() {
        let secret = ScramSecret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
        let mut front = ScramServer::new(Some(&secret), "u");
        exchange(&mut front, "pw").unwrap();
        let key = front.client_key().unwrap();
        // The "backend": another server instance holding the same verifier.
        let mut back = ScramServer::new(Some(&secret), "u");
        let mut client = ScramKeyClient::new(key, &secret, None);
        let first = back.client_first("SCRAM-SHA-256", &client.client_first()).unwrap();
        let fin = client.server_first(&first).unwrap();
        let sig = back.client_final(&fin).unwrap();
        client.server_final(&sig).unwrap();
        // A server with another verifier (other salt) is detected, not guessed at.
        let other = ScramSecret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
        let mut back = ScramServer::new(Some(&other), "u");
        let mut client = ScramKeyClient::new(key, &secret, None);
        let first = back.client_first("SCRAM-SHA-256", &client.client_first()).unwrap();
        assert_eq!(client.server_first(&first), Err(ScramError::VerifierMismatch));
    }

    fn exchange_bound(server: &mut ScramServer, password: &str, binding: ChannelBinding) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let mechanism = if client.message().starts_with(b"p=") { "SCRAM-SHA-256-PLUS" } else { "SCRAM-SHA-256" };
        let first = server.client_first(mechanism, client.message())?;
        client.update(&first).map_err(|_| ScramError::Malformed("client rejected server-first"))?;
        let fin = server.client_final(client.message())?;
        client.finish(&fin).map_err(|_| ScramError::Malformed("client rejected server signature"))
    }

    #[test]
    fn scram_plus_binds_to_the_tls_end_point_and_refuses_other_channels_and_downgrades() {
        let secret = ScramSecret::from_password("pw");
        let end_point = vec![7u8; 32];
        let server = || ScramServer::new(Some(&secret), "u").with_channel_binding(Some(end_point.clone()));
        assert_eq!(server().mechanisms(), b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        // The same end point on both sides: accepted.
        exchange_bound(&mut server(), "pw", ChannelBinding::tls_server_end_point(end_point.clone())).unwrap();
        // Another certificate (a man in the middle's): refused.
        let mitm = exchange_bound(&mut server(), "pw", ChannelBinding::tls_server_end_point(vec![8u8; 32]));
        assert!(matches!(mitm, Err(ScramError::Malformed(_))), "{mitm:?}");
        // "y" over a channel that offered PLUS: the offer was stripped.
        // (postgres-protocol's "unrequested" sends y, "unsupported" n.)
        assert_eq!(exchange_bound(&mut server(), "pw", ChannelBinding::unrequested()), Err(ScramError::ChannelBinding));
        // A client that does not bind at all ("n") may still log in.
        exchange_bound(&mut server(), "pw", ChannelBinding::unsupported()).unwrap();
        // Without TLS, PLUS is neither offered nor accepted; "y" is fine.
        let mut plain = ScramServer::new(Some(&secret), "u");
        assert_eq!(plain.mechanisms(), b"SCRAM-SHA-256\0\0");
        assert_eq!(
            plain.client_first("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::UnsupportedMechanism)
        );
        exchange_bound(&mut ScramServer::new(Some(&secret), "u"), "pw", ChannelBinding::unrequested()).unwrap();
    }

    #[test]
    fn a_client_key_logs_in_over_scram_plus_with_the_servers_end_point() {
        let secret = ScramSecret::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
        let mut front = ScramServer::new(Some(&secret), "u");
        exchange(&mut front, "pw").unwrap();
        let key = front.client_key().unwrap();
        let end_point = vec![1u8; 48];
        let mut back = ScramServer::new(Some(&secret), "u").with_channel_binding(Some(end_point.clone()));
        let mut client = ScramKeyClient::new(key, &secret, Some(end_point));
        let first = back.client_first("SCRAM-SHA-256-PLUS", &client.client_first()).unwrap();
        let fin = client.server_first(&first).unwrap();
        let sig = back.client_final(&fin).unwrap();
        client.server_final(&sig).unwrap();
        // Bound to another end point: the server refuses.
        let mut back = ScramServer::new(Some(&secret), "u").with_channel_binding(Some(vec![2u8; 48]));
        let mut client = ScramKeyClient::new(key, &secret, Some(vec![1u8; 48]));
        let first = back.client_first("SCRAM-SHA-256-PLUS", &client.client_first()).unwrap();
        let fin = client.server_first(&first).unwrap();
        assert!(back.client_final(&fin).is_err());
    }

    #[test]
    fn wrong_password_fails_the_proof() {
        let secret = ScramSecret::from_password("secret");
        assert_eq!(exchange(&mut ScramServer::new(Some(&secret), "u"), "guess"), Err(ScramError::InvalidProof));
    }

    #[test]
    fn unknown_user_gets_a_stable_mock_salt_and_always_fails() {
        let mut a = ScramServer::new(None, "ghost");
        let mut b = ScramServer::new(None, "ghost");
        let fa = String::from_utf8(a.client_first("SCRAM-SHA-256", b"n,,n=,r=abc").unwrap()).unwrap();
        let fb = String::from_utf8(b.client_first("SCRAM-SHA-256", b"n,,n=,r=abc").unwrap()).unwrap();
        let salt = |s: &str| s.split(',').nth(1).unwrap().to_owned();
        assert_eq!(salt(&fa), salt(&fb));
        assert!(fa.ends_with(",i=4096"));
        assert_eq!(exchange(&mut ScramServer::new(None, "ghost"), "anything"), Err(ScramError::InvalidProof));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let secret = ScramSecret::from_password("pw");
        let mut s = ScramServer::new(Some(&secret), "u");
        assert_eq!(s.client_final(b"c=biws,r=x,p=AAAA"), Err(ScramError::OutOfOrder));
        let mut s = ScramServer::new(Some(&secret), "u");
        assert_eq!(
            s.client_first("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        let mut s = ScramServer::new(Some(&secret), "u");
        assert_eq!(s.client_first("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc"), Err(ScramError::UnsupportedMechanism));
        // A tampered nonce in the final message.
        let mut s = ScramServer::new(Some(&secret), "u");
        s.client_first("SCRAM-SHA-256", b"n,,n=,r=abc").unwrap();
        assert!(matches!(s.client_final(b"c=biws,r=abcXYZ,p=AAAA"), Err(ScramError::Malformed(_))));
        // Calls after a failure keep failing.
        assert_eq!(s.client_final(b"c=biws,r=abc,p=AAAA"), Err(ScramError::OutOfOrder));
    }

    #[test]
    fn random_input_never_panics() {
        let secret = ScramSecret::from_password("pw");
        let mut seed = 0x2545f4914f6cdd1du64;
        for i in 0..5000 {
            let len = (seed % 80) as usize;
            let mut data = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(b"nyp=,r=c=biws,p=AB/+x\xff\x00"[(seed % 22) as usize]);
            }
            let mut s = ScramServer::new(Some(&secret), "u");
            if i % 2 == 0 {
                let _ = s.client_first("SCRAM-SHA-256", &data);
            } else {
                let _ = s.client_first("SCRAM-SHA-256", b"n,,n=,r=abc");
                let _ = s.client_final(&data);
            }
        }
    }
}
