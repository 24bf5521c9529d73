//! Who the client is: what `client_tls.sslmode` demands of its transport,
//! then the method the hba rules (or `auth.method`) choose, run against the
//! password file or auth_query: trust, md5, SCRAM-SHA-256(-PLUS), cert, peer.

use crate::auth::{self, ScramServer};
use crate::error::Error;
use crate::hba::HbaMethod;
use crate::protocol::messages::{self, tag, SaslInitialResponse};
use crate::protocol::write as w;
use crate::protocol::{Frame, ProtocolError};
use crate::runtime::Shared;
use crate::transport::Peer;

use super::Client;

/// What `client_tls.sslmode` demands of a TCP client, checked once the user
/// is known: TLS (`require`), and under `verify-full` a certificate naming
/// the user. (Unix-socket clients are local; TLS does not apply to them, as
/// in PostgreSQL.)
pub(super) fn check_transport(client: &Client, shared: &Shared, user: &str, database: &str) -> Result<(), Error> {
    let mode = shared.config().client_tls.sslmode;
    if matches!(client.peer, Peer::Unix { .. }) {
        return Ok(());
    }
    if mode.requires() && !client.stream.is_tls() {
        // PostgreSQL's words when only hostssl lines exist.
        let Peer::Tcp(addr) = client.peer else { return Ok(()) };
        let transport = crate::hba::Transport::Host { addr: addr.ip(), tls: false };
        let c = crate::hba::Connection { transport, database, user };
        return Err(Error::Refused { code: "28000", message: crate::hba::no_entry_message(&c) });
    }
    if mode == crate::config::ClientTlsMode::VerifyFull {
        let cn = client.stream.tls_info().and_then(|t| t.client_cn);
        if cn.as_deref() != Some(user) {
            return Err(Error::Refused {
                code: "28000",
                message: format!(
                    "certificate validation (clientcert=verify-full) failed for user \"{user}\": CN mismatch"
                ),
            });
        }
    }
    Ok(())
}

/// Runs the configured client authentication. Errors are reported as
/// PostgreSQL does, without telling whether the user exists. After a SCRAM
/// login, returns the ClientKey the client proved.
pub(super) async fn authenticate(
    client: &mut Client,
    shared: &Shared,
    user: &str,
    database: &str,
) -> Result<Option<[u8; 32]>, Error> {
    // The hba rules (or auth.method) choose; refusals come back as errors.
    let transport = match client.peer {
        Peer::Tcp(a) => crate::hba::Transport::Host { addr: a.ip(), tls: client.stream.is_tls() },
        Peer::Unix { .. } => crate::hba::Transport::Local,
    };
    let cn = client.stream.tls_info().and_then(|t| t.client_cn);
    let method = crate::access::login_method(shared, transport, cn.as_deref(), user, database).await?;
    match method {
        HbaMethod::Trust => return Ok(None),
        HbaMethod::Cert => return check_certificate(client, user).map(|()| None),
        HbaMethod::Peer => return check_peer(client, user).map(|()| None),
        _ => {}
    }
    // The password file's secret, else auth_query's.
    let secret = crate::access::user_secret(shared, user, database).await?;
    let secret = secret.as_ref();
    let fail = || Error::ClientAuth { user: user.to_owned() };
    let use_scram = match method {
        HbaMethod::ScramSha256 => true,
        // Like PostgreSQL: md5 is asked for only when an md5 answer can be checked;
        // a user whose only secret is a SCRAM verifier is asked for SCRAM.
        _ => secret.is_some_and(|s| s.plaintext().is_none() && s.md5().is_none() && s.scram().is_some()),
    };
    if !use_scram {
        let salt = auth::md5_salt();
        w::auth_md5(&mut client.out, salt);
        client.flush().await?;
        let frame = expect_password(client).await?;
        let answer = messages::password_message(frame.body()).map_err(Error::ClientProtocol)?;
        return match secret {
            Some(s) if auth::verify_md5(s, user, salt, answer) => Ok(None),
            _ => Err(fail()),
        };
    }
    let binding = client.channel_binding.clone().filter(|_| client.stream.is_tls());
    let mut scram = ScramServer::new(secret.and_then(|s| s.scram()), user).with_channel_binding(binding);
    w::auth_sasl(&mut client.out, scram.mechanisms());
    client.flush().await?;
    let frame = expect_password(client).await?;
    let init = SaslInitialResponse::parse(frame.body()).map_err(Error::ClientProtocol)?;
    let server_first = scram
        .client_first(init.mechanism, init.data)
        .map_err(|e| Error::Refused { code: "28000", message: format!("SCRAM authentication failed: {e}") })?;
    w::auth_sasl_continue(&mut client.out, &server_first);
    client.flush().await?;
    let frame = expect_password(client).await?;
    match scram.client_final(frame.body()) {
        Ok(server_final) => {
            w::auth_sasl_final(&mut client.out, &server_final);
            Ok(scram.client_key())
        }
        Err(_) => Err(fail()),
    }
}

/// The `cert` method: a client certificate, verified during the handshake
/// against `client_tls.ca_file`, whose common name is the user name.
fn check_certificate(client: &Client, user: &str) -> Result<(), Error> {
    let Some(tls) = client.stream.tls_info() else {
        return Err(Error::Refused { code: "28000", message: "connection requires a valid client certificate".into() });
    };
    match tls.client_cn {
        Some(cn) if cn == user => Ok(()),
        Some(_) => Err(Error::Refused {
            code: "28000",
            message: format!("certificate authentication failed for user \"{user}\""),
        }),
        None => Err(Error::Refused { code: "28000", message: "connection requires a valid client certificate".into() }),
    }
}

/// The `peer` method: the operating-system user of a Unix-socket client is
/// the user name.
fn check_peer(client: &Client, user: &str) -> Result<(), Error> {
    let failed =
        || Error::Refused { code: "28000", message: format!("Peer authentication failed for user \"{user}\"") };
    let Peer::Unix { uid } = client.peer else {
        return Err(Error::Refused {
            code: "28000",
            message: "peer authentication is only supported on local (Unix-socket) connections".into(),
        });
    };
    let name = uid.and_then(crate::auth::os_user_name).ok_or_else(failed)?;
    if name == user {
        Ok(())
    } else {
        tracing::info!(%user, os_user = %name, "peer authentication: the OS user is not the requested user");
        Err(failed())
    }
}

async fn expect_password(client: &mut Client) -> Result<Frame, Error> {
    let frame = client.read_frame().await?;
    if frame.tag() == tag::TERMINATE {
        // libpq does this when it has no password to give: it asks the user and
        // reconnects. Not a failed login; end quietly, as PostgreSQL does.
        return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if frame.tag() != tag::PASSWORD {
        return Err(Error::ClientProtocol(ProtocolError::Unexpected {
            tag: frame.tag(),
            context: "while expecting a password response",
        }));
    }
    Ok(frame)
}
