//! auth_query: the secrets of users missing from the password file, looked
//! up on the server as `auth.auth_user` and cached for `auth.auth_query_ttl`.
//!
//! Each lookup opens its own short connection (the cache makes them rare),
//! sends the query with the extended protocol and the user name as a bind
//! parameter (never spliced into the SQL), and reads at most one row. No
//! row, or a NULL secret, is "no secret": the login then fails exactly as a
//! wrong password does. A lookup that cannot be made is a [`LookupError`],
//! which refuses the login; it never admits one. Secrets are never logged
//! ([`UserSecret`]'s `Debug` is redacted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use crate::auth::UserSecret;
use crate::backend::{LoginInfo, ServerAddr, ServerConn};
use crate::config::AuthConfig;
use crate::error::Error;
use crate::protocol::messages::tag;

/// Most users whose lookup is cached at once; past it, expired entries go,
/// then everything (the next logins ask again).
const MAX_CACHED: usize = 10_000;
/// Most rows read from one lookup's answer (one is expected).
const MAX_ROWS: usize = 2;

/// Why a lookup could not be made. The messages carry no secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LookupError {
    /// The pooler could not log in as `auth_user`.
    #[error("cannot log in as auth_user \"{user}\": {source}")]
    Login {
        /// The auth_user.
        user: String,
        /// What the server or the connection said.
        source: Error,
    },
    /// The query failed on the server (or the connection broke).
    #[error("the query failed: {0}")]
    Query(Error),
    /// No answer within `auth.auth_query_timeout`.
    #[error("no answer within {0} ms (auth.auth_query_timeout)")]
    Timeout(u128),
    /// The answer is not one row of (name, secret), or the secret is malformed.
    #[error("unusable answer: {0}")]
    Answer(String),
}

impl LookupError {
    /// What the client is told: a FATAL that says the lookup failed, not
    /// whether the user exists.
    pub(crate) fn into_client_error(self, user: &str) -> Error {
        let why = match &self {
            LookupError::Login { .. } => "the pooler could not log in to look it up",
            LookupError::Query(_) | LookupError::Answer(_) => "the lookup query failed",
            LookupError::Timeout(_) => "the lookup timed out",
        };
        Error::Refused { code: "28000", message: format!("could not look up the password of user \"{user}\": {why}") }
    }
}

/// A cached answer: the secret, or `None` for "no such user or no password".
struct Cached {
    secret: Option<UserSecret>,
    at: Instant,
}

/// The lookup and its cache, shared by every session.
pub(crate) struct AuthQuery {
    user: String,
    query: String,
    dbname: Option<String>,
    ttl: Duration,
    timeout: Duration,
    max_message: usize,
    cache: Mutex<HashMap<String, Cached>>,
    /// One lookup per user at a time: clients of a user arriving together
    /// while the cache is cold wait for the first one's answer instead of
    /// each opening a connection. Entries live only while a lookup runs.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for AuthQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthQuery").field("user", &self.user).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl AuthQuery {
    /// The lookup `auth` configures (`None` without `auth.auth_user`).
    pub(crate) fn from_config(auth: &AuthConfig, max_message: usize) -> Option<AuthQuery> {
        Some(AuthQuery {
            user: auth.auth_user.clone()?,
            query: auth.auth_query.clone(),
            dbname: auth.auth_dbname.clone(),
            ttl: auth.auth_query_ttl,
            timeout: auth.auth_query_timeout,
            max_message,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// The role lookups run as.
    pub(crate) fn auth_user(&self) -> &str {
        &self.user
    }

    /// The secret of `user` (`None`: no such user, or no password), from the
    /// cache while fresh, else asked of `server` as the auth_user (whose
    /// secret is `auth_secret`), in `database` unless `auth.auth_dbname` says.
    /// The flag is true when the server was asked (the answer may be new).
    pub(crate) async fn secret(
        &self,
        server: &ServerAddr,
        auth_secret: Option<&UserSecret>,
        user: &str,
        database: &str,
    ) -> Result<(Option<UserSecret>, bool), LookupError> {
        if let Some(hit) = self.cached(user) {
            return Ok((hit, false));
        }
        let gate = Gate { owner: self, user, lock: self.gate(user) };
        // The wait for another client's lookup counts in the timeout.
        let work = async {
            let _turn = gate.lock.lock().await;
            // That other lookup may have answered while this one waited.
            match self.cached(user) {
                Some(hit) => Ok((hit, false)),
                None => self.look_up(server, auth_secret, user, database).await.map(|s| (s, true)),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(LookupError::Timeout(self.timeout.as_millis())))
    }

    /// The lock of `user`'s lookups.
    fn gate(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.inflight.lock() {
            Ok(mut m) => m.entry(user.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Drops `user`'s lock from the map when no other lookup holds it.
    fn ungate(&self, user: &str, gate: &Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut m) = self.inflight.lock() {
            // The map's reference and `gate`: nobody else waits.
            if m.get(user).is_some_and(|g| Arc::ptr_eq(g, gate) && Arc::strong_count(g) <= 2) {
                m.remove(user);
            }
        }
    }

    /// Asks the server (see [`AuthQuery::secret`]) and caches the answer.
    async fn look_up(
        &self,
        server: &ServerAddr,
        auth_secret: Option<&UserSecret>,
        user: &str,
        database: &str,
    ) -> Result<Option<UserSecret>, LookupError> {
        let rows = self.run(server, auth_secret, database, &self.query, &[user]).await?;
        let secret = match rows.as_slice() {
            [] => None,
            [row] => match row.get(1) {
                Some(Some(s)) => Some(
                    UserSecret::parse(s)
                        .map_err(|e| LookupError::Answer(format!("the secret of user \"{user}\" is malformed: {e}")))?,
                ),
                Some(None) => None,
                None => return Err(LookupError::Answer("auth_query must return two columns (name, secret)".into())),
            },
            _ => return Err(LookupError::Answer(format!("auth_query returned several rows for user \"{user}\""))),
        };
        self.remember(user, secret.clone());
        Ok(secret)
    }

    /// Whether `user` is a member of `role` (directly or not; a role is a
    /// member of itself), as the server's `pg_auth_members` says, for hba
    /// `+role` and `samerole`. As in PostgreSQL's hba check, being a
    /// superuser makes no one a member (so not `pg_has_role`). An unknown
    /// user or role is no member.
    pub(crate) async fn is_member(
        &self,
        server: &ServerAddr,
        auth_secret: Option<&UserSecret>,
        user: &str,
        role: &str,
        database: &str,
    ) -> Result<bool, LookupError> {
        const SQL: &str = "WITH RECURSIVE m(roleid) AS (\
               SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1 \
               UNION SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN m ON a.member = m.roleid) \
             SELECT EXISTS (SELECT 1 FROM m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid WHERE r.rolname = $2)";
        let rows = self.run(server, auth_secret, database, SQL, &[user, role]).await?;
        Ok(matches!(rows.first().and_then(|r| r.first()), Some(Some(t)) if t == "t"))
    }

    /// Forgets every cached answer (a reload: the next logins ask again).
    pub(crate) fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    fn cached(&self, user: &str) -> Option<Option<UserSecret>> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().ok()?;
        let hit = cache.get(user)?;
        (hit.at.elapsed() < self.ttl).then(|| hit.secret.clone())
    }

    fn remember(&self, user: &str, secret: Option<UserSecret>) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.len() >= MAX_CACHED && !cache.contains_key(user) {
            let ttl = self.ttl;
            cache.retain(|_, c| c.at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(user.to_owned(), Cached { secret, at: Instant::now() });
    }

    /// Logs in as the auth_user and runs `sql` with `params` as text bind
    /// parameters; the text columns of at most [`MAX_ROWS`] rows.
    async fn run(
        &self,
        server: &ServerAddr,
        auth_secret: Option<&UserSecret>,
        database: &str,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, LookupError> {
        let login = LoginInfo {
            user: self.user.clone(),
            database: self.dbname.clone().unwrap_or_else(|| database.to_owned()),
            secret: auth_secret.cloned(),
            client_key: None,
        };
        let work = async {
            let mut conn = ServerConn::connect(server, &login, self.timeout, self.max_message)
                .await
                .map_err(|source| LookupError::Login { user: self.user.clone(), source })?;
            let rows = extended_query(&mut conn, sql, params).await.map_err(LookupError::Query);
            conn.close().await;
            rows
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(LookupError::Timeout(self.timeout.as_millis())),
        }
    }
}

/// A user's lookup lock, dropped from the map when the last holder goes
/// (also when the login is abandoned mid-lookup).
struct Gate<'a> {
    owner: &'a AuthQuery,
    user: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.owner.ungate(self.user, &self.lock);
    }
}

/// Parse, Bind (text parameters), Execute, Sync; reads to ReadyForQuery.
/// An ErrorResponse is returned as [`Error::Server`].
async fn extended_query(conn: &mut ServerConn, sql: &str, params: &[&str]) -> Result<Vec<Vec<Option<String>>>, Error> {
    let mut out = BytesMut::new();
    let enc = |e: std::io::Error| Error::ServerAuth(format!("cannot encode the auth_query: {e}"));
    frontend::parse("", sql, std::iter::empty(), &mut out).map_err(enc)?;
    frontend::bind(
        "",
        "",
        std::iter::empty(),
        params.iter(),
        |p, buf| {
            buf.extend_from_slice(p.as_bytes());
            Ok(IsNull::No)
        },
        std::iter::empty(),
        &mut out,
    )
    .map_err(|_| Error::ServerAuth("cannot encode the auth_query parameters".into()))?;
    frontend::execute("", MAX_ROWS as i32, &mut out).map_err(enc)?;
    frontend::sync(&mut out);
    conn.write(&out).await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = conn.read_frame().await?;
        match frame.tag() {
            b'D' if rows.len() < MAX_ROWS => {
                rows.push(crate::backend::decode_data_row(frame.body()).map_err(Error::ServerProtocol)?)
            }
            tag::ERROR_RESPONSE if error.is_none() => error = Some(frame.into_bytes()),
            tag::PARAMETER_STATUS => conn.note_parameter(frame.body())?,
            tag::READY_FOR_QUERY => {
                return match error {
                    Some(e) => Err(Error::Server(e)),
                    None => Ok(rows),
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(ttl: Duration) -> AuthQuery {
        let c = AuthConfig { auth_user: Some("pooler_auth".into()), auth_query_ttl: ttl, ..Default::default() };
        AuthQuery::from_config(&c, 1 << 20).unwrap()
    }

    #[test]
    fn answers_are_cached_for_the_ttl_only() {
        let q = lookup(Duration::from_millis(50));
        assert!(q.cached("u").is_none());
        q.remember("u", Some(UserSecret::plaintext_secret("pw")));
        q.remember("nobody", None);
        assert_eq!(q.cached("u").unwrap().unwrap().plaintext(), Some("pw"));
        // "No such user" is cached too: a flood of unknown names costs one
        // lookup each per TTL, not one per attempt.
        assert!(q.cached("nobody").unwrap().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(q.cached("u").is_none());
        let q = lookup(Duration::ZERO);
        q.remember("u", None);
        assert!(q.cached("u").is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let q = lookup(Duration::from_secs(60));
        for i in 0..MAX_CACHED + 10 {
            q.remember(&format!("user{i}"), None);
        }
        assert!(q.cache.lock().unwrap().len() <= MAX_CACHED);
    }

    #[test]
    fn no_auth_user_no_lookup() {
        assert!(AuthQuery::from_config(&AuthConfig::default(), 1024).is_none());
    }

    #[test]
    fn client_errors_do_not_tell_whether_the_user_exists_or_leak_details() {
        let e = LookupError::Login { user: "pooler_auth".into(), source: Error::ServerAuth("secret-ish".into()) };
        let shown = e.into_client_error("bob").to_string();
        assert_eq!(shown, "could not look up the password of user \"bob\": the pooler could not log in to look it up");
        let shown = LookupError::Timeout(5000).into_client_error("bob").to_string();
        assert!(shown.ends_with("the lookup timed out"), "{shown}");
    }

    /// Clients of one user arriving together run one lookup: the others
    /// wait for its answer (one connection to the server, not ten).
    #[tokio::test]
    async fn concurrent_lookups_of_one_user_share_one_connection() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    s.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").await.unwrap();
                    let mut got = Vec::new();
                    while !got.windows(5).any(|w| w == b"S\0\0\0\x04") {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // No row: no such user.
                    let _ = s.write_all(b"1\0\0\0\x042\0\0\0\x04C\0\0\0\x0dSELECT 0\0Z\0\0\0\x05I").await;
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        let q = Arc::new(lookup(Duration::from_secs(60)));
        let addr = ServerAddr::plain("127.0.0.1", port);
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (q, addr) = (q.clone(), addr.clone());
            tasks.push(tokio::spawn(
                async move { q.secret(&addr, None, "ghost", "app").await.map(|(s, _)| s.is_none()) },
            ));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap(), "no such user, for every client");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert!(q.inflight.lock().unwrap().is_empty(), "no lock left behind");
    }

    /// A scripted server: the lookup sends its parameter with Bind (the
    /// user name never appears in the SQL text) and reads the row.
    #[tokio::test]
    async fn the_user_name_travels_as_a_bind_parameter() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Startup packet: answer AuthenticationOk, ReadyForQuery.
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            s.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").await.unwrap();
            let mut query = Vec::new();
            while !query.windows(5).any(|w| w == b"S\0\0\0\x04") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                query.extend_from_slice(&buf[..n]);
            }
            // ParseComplete, BindComplete, one DataRow, CommandComplete, ReadyForQuery.
            let mut reply = b"1\0\0\0\x042\0\0\0\x04".to_vec();
            let (name, secret) = (b"o'brien".as_slice(), b"md5a1b2c3d4e5f60718293a4b5c6d7e8f90".as_slice());
            let len = 4 + 2 + 4 + name.len() + 4 + secret.len();
            reply.push(b'D');
            reply.extend_from_slice(&(len as u32).to_be_bytes());
            reply.extend_from_slice(&2u16.to_be_bytes());
            for v in [name, secret] {
                reply.extend_from_slice(&(v.len() as u32).to_be_bytes());
                reply.extend_from_slice(v);
            }
            reply.extend_from_slice(b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
            s.write_all(&reply).await.unwrap();
            let _ = s.read(&mut buf).await;
            query
        });
        let q = lookup(Duration::from_secs(60));
        let addr = ServerAddr::plain("127.0.0.1", port);
        let (secret, fresh) = q.secret(&addr, None, "o'brien", "app").await.unwrap();
        let secret = secret.unwrap();
        assert!(fresh);
        assert_eq!(secret.md5(), Some("a1b2c3d4e5f60718293a4b5c6d7e8f90"));
        let sent = server.await.unwrap();
        let text = String::from_utf8_lossy(&sent);
        assert!(text.contains("rolname = $1"), "{text}");
        // Split the messages: the name is in Bind, never in Parse's SQL text.
        let mut msgs = Vec::new();
        let mut rest = sent.as_slice();
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            msgs.push((rest[0], &rest[5..1 + len]));
            rest = &rest[1 + len..];
        }
        let has_name = |body: &[u8]| body.windows(7).any(|w| w == b"o'brien");
        assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<_>>(), b"PBES");
        assert!(!has_name(msgs[0].1) && has_name(msgs[1].1));
        // Cached now: no server needed.
        let again = q.secret(&ServerAddr::plain("127.0.0.1", 1), None, "o'brien", "app").await;
        assert!(matches!(again, Ok((Some(_), false))));
    }
}
