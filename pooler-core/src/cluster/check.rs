//! Health checks: [`HealthCheck`] is one look at one node; the built-in
//! [`SqlHealthCheck`] asks PostgreSQL over a connection it keeps per node.
//! One checker task per node looks every `health.period`, or at once when the
//! controller asks (a client session saw the node fail), retries a failed
//! look `health.max_retries` times `health.retry_delay` apart, bounds each
//! by `health.timeout`, and sends the result to the controller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{LoginInfo, ServerAddr, ServerConn};
use crate::lsn::parse_lsn;

use super::machine::Event;
use super::Command;

/// What one look at a node found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// Current WAL position (primary) or last replayed position (standby).
    pub lsn: u64,
    /// Standby: the last WAL position received and flushed to its disk
    /// (`pg_last_wal_receive_lsn()`), or its replayed position when it has
    /// received nothing by streaming; primary: as `lsn`. What a failover
    /// compares: a standby keeps every commit up to here once promoted.
    /// Zero when the check does not know (custom checks): `lsn` decides.
    pub received_lsn: u64,
    /// Standby: time since the last replayed transaction (zero otherwise).
    pub replay_age: Duration,
    /// Standby: its WAL receiver's status (`streaming`, ...), if it has one.
    pub wal_receiver: Option<String>,
    /// Standby: the host and port its WAL receiver streams from.
    pub sender: Option<(String, u16)>,
    /// Primary: its replication connections (`pg_stat_replication`).
    pub replicas: Vec<ReplicaState>,
}

/// One row of a primary's `pg_stat_replication`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    /// The standby's `application_name`.
    pub application_name: String,
    /// `streaming`, `catchup`, ...
    pub state: String,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: String,
}

/// Why one look at a node found nothing. Any of them counts as a failed
/// look: the checker retries (`health.max_retries`), and a node whose last
/// try failed too is marked down. The variant only says why, in the log and
/// in the node's `cause` (`SHOW pool_nodes`), through its `Display`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No connection could be opened: refused, unreachable, closed during
    /// the login, or turned away by the server (`57P03` starting up, ...).
    /// `reason` is the pooler's text for it, naming the address.
    #[error("{reason}")]
    Connect {
        /// What went wrong, as the pooler words it.
        reason: String,
    },
    /// The look (or the connection it needed) took longer than `after`:
    /// `health.timeout` for a whole look, `health.connect_timeout` for the
    /// connection of the built-in check.
    #[error("timed out after {after:?}")]
    TimedOut {
        /// The limit that passed.
        after: Duration,
    },
    /// The server refused the check's login (`health.user`): a wrong or
    /// missing password, no `pg_hba.conf` entry, an unsupported method.
    #[error("authentication refused: {reason}")]
    AuthRefused {
        /// The server's message, or why the pooler could not log in.
        reason: String,
    },
    /// The connection was open, and the probe query failed on the server.
    #[error("probe query failed: {sqlstate} {message}")]
    QueryFailed {
        /// The server's SQLSTATE.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The connection broke during the look (reset, closed by the server).
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What the socket said.
        reason: String,
    },
    /// The node answered something that is not an answer to the probe (it
    /// broke the protocol, or a row could not be read).
    #[error("malformed answer: {reason}")]
    Malformed {
        /// What was wrong with it.
        reason: String,
    },
    /// Any other reason, in the words of the check that failed (for checks
    /// written by an embedding service).
    #[error("{message}")]
    Other {
        /// The check's own message.
        message: String,
    },
}

impl CheckError {
    /// [`CheckError::Other`] with `message`.
    pub fn other(message: impl Into<String>) -> CheckError {
        CheckError::Other { message: message.into() }
    }

    /// How the built-in check words a failure to open its connection.
    fn connecting(e: crate::Error, connect_timeout: Duration) -> CheckError {
        use crate::Error as E;
        match e {
            E::ConnectTimeout { .. } => CheckError::TimedOut { after: connect_timeout },
            E::ServerAuth(reason) => CheckError::AuthRefused { reason },
            // Class 28, invalid authorization: the server refused the login.
            E::Server(frame) if error_fields(&frame).code().is_some_and(|c| c.starts_with("28")) => {
                CheckError::AuthRefused { reason: error_fields(&frame).message().unwrap_or("(no message)").to_owned() }
            }
            E::ServerProtocol(p) => CheckError::Malformed { reason: p.to_string() },
            e => CheckError::Connect { reason: e.to_string() },
        }
    }

    /// How the built-in check words a failure of its probe query.
    fn querying(e: crate::Error) -> CheckError {
        use crate::Error as E;
        match e {
            E::Server(frame) => {
                let f = error_fields(&frame);
                CheckError::QueryFailed {
                    sqlstate: f.code().unwrap_or("XX000").to_owned(),
                    message: f.message().unwrap_or("(no message)").to_owned(),
                }
            }
            E::ServerIo(e) => CheckError::ConnectionLost { reason: e.to_string() },
            e @ E::ServerClosed => CheckError::ConnectionLost { reason: e.to_string() },
            E::ServerProtocol(p) => CheckError::Malformed { reason: p.to_string() },
            e => CheckError::Other { message: e.to_string() },
        }
    }
}

/// The fields of an ErrorResponse frame (header included).
fn error_fields(frame: &bytes::Bytes) -> crate::protocol::messages::ErrorFields<'_> {
    crate::protocol::messages::ErrorFields::new(frame.get(5..).unwrap_or_default())
}

/// The future a check returns: what it saw, or why it could not look.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Observation, CheckError>> + Send + 'a>>;

/// One look at a node, for the controller: the built-in [`SqlHealthCheck`],
/// or an embedding service's own (`Pooler::with_health_check`). A check
/// reports; the controller decides what a result means for the node.
pub trait HealthCheck: Send + Sync + 'static {
    /// Looks at `node` (index in `[[nodes]]`) once. Called by the node's
    /// checker every `health.period`, at once when a session reported the
    /// node failing, again after a failed look (up to `health.max_retries`
    /// times, `health.retry_delay` apart), and on every standby when the
    /// primary fails (to compare their WAL positions). Each call is bounded
    /// by `health.timeout`: a future still running then is dropped and the
    /// look counts as [`CheckError::TimedOut`]. There is no default.
    ///
    /// `Ok` is what the node said; its `in_recovery` decides the node's
    /// role. `Err` is a failed look, whichever the variant.
    fn check(&self, node: usize) -> CheckFuture<'_>;

    /// A configuration reload removed `node`: it is never checked again;
    /// drop whatever is kept for it (a connection). Default: nothing.
    fn node_removed(&self, node: usize) {
        let _ = node;
    }
}

/// The built-in check: on a connection kept per node, logged in as
/// `health.user` to `health.database` (secret from the password file), one
/// query reads `pg_is_in_recovery()`, the WAL position, the replay age, the
/// WAL receiver and (on a primary) `pg_stat_replication`.
#[derive(Debug)]
pub struct SqlHealthCheck {
    /// The nodes' addresses; shared with the pooler, whose reload adds nodes.
    nodes: crate::backend::NodeAddrs,
    login: LoginInfo,
    connect_timeout: Duration,
    max_message: usize,
    conns: Vec<tokio::sync::Mutex<Option<ServerConn>>>,
}

const PROBE: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_lsn() END, \
     CASE WHEN pg_catalog.pg_is_in_recovery() \
          THEN coalesce(extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp()) * 1000, 0)::bigint \
          ELSE 0 END, \
     (SELECT status FROM pg_catalog.pg_stat_wal_receiver LIMIT 1), \
     (SELECT sender_host FROM pg_catalog.pg_stat_wal_receiver LIMIT 1), \
     (SELECT sender_port FROM pg_catalog.pg_stat_wal_receiver LIMIT 1), \
     (SELECT string_agg(concat_ws(chr(31), application_name, state, sync_state), chr(30)) \
        FROM pg_catalog.pg_stat_replication), \
     CASE WHEN pg_catalog.pg_is_in_recovery() \
          THEN greatest(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn()) \
          ELSE pg_catalog.pg_current_wal_lsn() END";

impl SqlHealthCheck {
    /// The check for `config`'s nodes and `[health]` settings, with secrets
    /// from `passwords`.
    ///
    /// TLS towards the nodes follows `[server_tls]` as sessions do; its
    /// files are read here. If they cannot be, nodes whose `sslmode` needs
    /// them fail their checks with the reason (the pooler itself refuses to
    /// start with such files: [`crate::StartError::Tls`]).
    pub fn new(config: &crate::Config, passwords: Option<&crate::auth::PasswordFile>) -> SqlHealthCheck {
        let tls = crate::tls::TlsContexts::load(config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "health checks: TLS files unusable; nodes that need them will fail");
            crate::tls::TlsContexts::plain()
        });
        let nodes = Arc::new(arc_swap::ArcSwap::from_pointee(ServerAddr::of_nodes(config, &tls)));
        SqlHealthCheck::with_nodes(config, passwords, nodes)
    }

    /// [`SqlHealthCheck::new`] over the pooler's own node addresses (with
    /// its TLS contexts), which a reload may add to.
    pub(crate) fn with_nodes(
        config: &crate::Config,
        passwords: Option<&crate::auth::PasswordFile>,
        nodes: crate::backend::NodeAddrs,
    ) -> SqlHealthCheck {
        let h = &config.health;
        SqlHealthCheck {
            nodes,
            login: LoginInfo {
                user: h.user.clone(),
                database: h.database.clone(),
                secret: passwords.and_then(|p| p.get(&h.user)).cloned(),
                client_key: None,
            },
            connect_timeout: h.connect_timeout.min(h.timeout),
            max_message: config.server.max_message_size,
            // One per slot a reload may ever add.
            conns: (0..crate::topology::MAX_NODE_SLOTS.max(config.nodes.len()))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
        }
    }

    async fn look(&self, node: usize) -> Result<Observation, CheckError> {
        let addr = self.nodes.load().get(node).cloned();
        let (Some(addr), Some(slot)) = (addr, self.conns.get(node)) else {
            return Err(CheckError::Connect { reason: format!("node {node} is not configured") });
        };
        let mut slot = slot.lock().await;
        // Taken out while in use: a look cut short by its timeout drops the
        // connection instead of leaving a half-read answer for the next one.
        let mut conn = match slot.take() {
            Some(c) if c.is_alive() => c,
            _ => ServerConn::connect(&addr, &self.login, self.connect_timeout, self.max_message)
                .await
                .map_err(|e| CheckError::connecting(e, self.connect_timeout))?,
        };
        let row = conn.query_row(PROBE).await.map_err(CheckError::querying)?;
        *slot = Some(conn);
        Ok(parse_row(&row))
    }
}

impl HealthCheck for SqlHealthCheck {
    fn check(&self, node: usize) -> CheckFuture<'_> {
        Box::pin(self.look(node))
    }

    /// Closes the connection kept for `node` (its checker has stopped; a
    /// look still running keeps it until that look ends, and then it is
    /// never used again).
    fn node_removed(&self, node: usize) {
        if let Some(conn) = self.conns.get(node).and_then(|c| c.try_lock().ok()).and_then(|mut c| c.take()) {
            tokio::spawn(conn.close());
        }
    }
}

/// Reads the probe's row.
pub(crate) fn parse_row(row: &[Option<String>]) -> Observation {
    let text = |k: usize| row.get(k).cloned().flatten();
    let replicas = text(6)
        .map(|all| {
            all.split('\u{1e}')
                .map(|r| {
                    let mut f = r.split('\u{1f}').map(str::to_owned);
                    ReplicaState {
                        application_name: f.next().unwrap_or_default(),
                        state: f.next().unwrap_or_default(),
                        sync_state: f.next().unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Observation {
        in_recovery: text(0).as_deref() == Some("t"),
        lsn: text(1).and_then(|v| parse_lsn(&v)).unwrap_or(0),
        received_lsn: text(7).and_then(|v| parse_lsn(&v)).unwrap_or(0),
        replay_age: Duration::from_millis(text(2).and_then(|v| v.parse().ok()).unwrap_or(0)),
        wal_receiver: text(3),
        sender: text(4).zip(text(5).and_then(|p| p.parse().ok())),
        replicas,
    }
}

/// One look at `node`, bounded by `timeout` ([`CheckError::TimedOut`] when it
/// passes).
pub(crate) async fn bounded(
    check: &dyn HealthCheck,
    node: usize,
    timeout: Duration,
) -> Result<Observation, CheckError> {
    let started = std::time::Instant::now();
    let r =
        tokio::time::timeout(timeout, check.check(node)).await.unwrap_or(Err(CheckError::TimedOut { after: timeout }));
    let outcome = if r.is_ok() { "ok" } else { "failed" };
    metrics::histogram!(crate::metrics::HEALTH_CHECK_SECONDS, "node" => node.to_string(), "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    r
}

/// Checks `node` every period, or at once when asked, until dropped.
pub(crate) async fn run(cluster: Arc<super::Cluster>, check: Arc<dyn HealthCheck>, node: usize) {
    let cfg = cluster.config.load().health.clone();
    let Some(now) = cluster.check_now.get(node).cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(cfg.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = now.notified() => tick.reset(),
        }
        let mut result = Err(CheckError::TimedOut { after: cfg.timeout });
        for attempt in 0..=cfg.max_retries {
            if attempt > 0 {
                tokio::time::sleep(cfg.retry_delay).await;
            }
            result = bounded(check.as_ref(), node, cfg.timeout).await;
            match &result {
                Ok(_) => break,
                Err(e) => tracing::debug!(node, attempt, error = %e, "health check failed"),
            }
        }
        let event = Event::Checked { node, result };
        if cluster.tx.send(Command { event, reply: None }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_rows_parse_into_observations() {
        let s = |v: &str| Some(v.to_owned());
        let standby = parse_row(&[
            s("t"),
            s("0/3000060"),
            s("1500"),
            s("streaming"),
            s("127.0.0.1"),
            s("5432"),
            None,
            s("0/3000100"),
        ]);
        assert!(standby.in_recovery);
        assert_eq!(standby.lsn, 0x3000060);
        assert_eq!(standby.received_lsn, 0x3000100);
        assert_eq!(standby.replay_age, Duration::from_millis(1500));
        assert_eq!(standby.wal_receiver.as_deref(), Some("streaming"));
        assert_eq!(standby.sender, Some(("127.0.0.1".to_owned(), 5432)));
        let primary =
            parse_row(&[s("f"), s("0/5000000"), s("0"), None, None, None, s("a\u{1f}streaming\u{1f}async\u{1e}b")]);
        assert!(!primary.in_recovery);
        assert_eq!(primary.replicas.len(), 2);
        assert_eq!(primary.replicas[0].sync_state, "async");
        assert_eq!(primary.replicas[1], ReplicaState { application_name: "b".into(), ..Default::default() });
        // Garbage never panics; it reads as nothing known.
        assert_eq!(parse_row(&[s("x"), s("zz"), s("-"), None]), Observation::default());
    }

    fn server(code: &str) -> crate::Error {
        let mut b = bytes::BytesMut::new();
        crate::protocol::write::error_response(
            &mut b,
            crate::protocol::write::Severity::Fatal,
            code,
            "said the server",
        );
        crate::Error::Server(b.freeze())
    }

    #[test]
    fn the_built_in_check_says_precisely_why_a_look_failed() {
        use crate::protocol::ProtocolError;
        use crate::Error as E;
        let t = Duration::from_secs(2);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let c = CheckError::connecting(E::Connect { addr: "db1:5432".into(), source: refused }, t);
        assert!(matches!(&c, CheckError::Connect { reason } if reason.contains("db1:5432")), "{c}");
        assert_eq!(
            CheckError::connecting(E::ConnectTimeout { addr: "db1:5432".into() }, t),
            CheckError::TimedOut { after: t }
        );
        assert_eq!(
            CheckError::connecting(server("28P01"), t),
            CheckError::AuthRefused { reason: "said the server".into() }
        );
        assert_eq!(
            CheckError::connecting(E::ServerAuth("no password for user \"h\"".into()), t),
            CheckError::AuthRefused { reason: "no password for user \"h\"".into() }
        );
        let starting = CheckError::connecting(server("57P03"), t);
        assert!(matches!(&starting, CheckError::Connect { reason } if reason.contains("57P03")), "{starting}");
        let garbage = CheckError::connecting(E::ServerProtocol(ProtocolError::Malformed("bad")), t);
        assert!(matches!(garbage, CheckError::Malformed { .. }));
        assert_eq!(
            CheckError::querying(server("42883")),
            CheckError::QueryFailed { sqlstate: "42883".into(), message: "said the server".into() }
        );
        assert!(matches!(CheckError::querying(E::ServerClosed), CheckError::ConnectionLost { .. }));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(CheckError::querying(E::ServerIo(reset)), CheckError::ConnectionLost { .. }));
        let bad_row = CheckError::querying(E::ServerProtocol(ProtocolError::Malformed("DataRow")));
        assert!(matches!(bad_row, CheckError::Malformed { .. }));
        // The node's cause reads as before: the words, not the variant.
        assert_eq!(CheckError::TimedOut { after: t }.to_string(), "timed out after 2s");
        assert_eq!(CheckError::other("custom").to_string(), "custom");
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_that_outlasts_the_timeout_is_a_timed_out_failure() {
        struct Hangs;
        impl HealthCheck for Hangs {
            fn check(&self, _node: usize) -> CheckFuture<'_> {
                Box::pin(std::future::pending())
            }
        }
        let limit = Duration::from_secs(3);
        assert_eq!(bounded(&Hangs, 0, limit).await, Err(CheckError::TimedOut { after: limit }));
    }
}
