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

/// The future a check returns: what it saw, or why it could not look.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Observation, String>> + Send + 'a>>;

/// One look at node `node` (index in `[[nodes]]`). The checker bounds it by
/// `health.timeout` (dropping the future) and retries failures itself, so an
/// implementation makes one attempt.
pub trait HealthCheck: Send + Sync + 'static {
    /// Looks at `node`.
    fn check(&self, node: usize) -> CheckFuture<'_>;
}

/// The built-in check: on a connection kept per node, logged in as
/// `health.user` to `health.database` (secret from the password file), one
/// query reads `pg_is_in_recovery()`, the WAL position, the replay age, the
/// WAL receiver and (on a primary) `pg_stat_replication`.
#[derive(Debug)]
pub struct SqlHealthCheck {
    nodes: Vec<ServerAddr>,
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
    pub fn new(config: &crate::Config, passwords: Option<&crate::auth::PasswordFile>) -> SqlHealthCheck {
        let h = &config.health;
        SqlHealthCheck {
            nodes: config.nodes.iter().map(|n| ServerAddr { host: n.host.clone(), port: n.port }).collect(),
            login: LoginInfo {
                user: h.user.clone(),
                database: h.database.clone(),
                secret: passwords.and_then(|p| p.get(&h.user)).cloned(),
                client_key: None,
            },
            connect_timeout: h.connect_timeout.min(h.timeout),
            max_message: config.server.max_message_size,
            conns: config.nodes.iter().map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    async fn look(&self, node: usize) -> Result<Observation, crate::Error> {
        let (Some(addr), Some(slot)) = (self.nodes.get(node), self.conns.get(node)) else {
            return Err(crate::Error::Refused { code: "08001", message: format!("node {node} is not configured") });
        };
        let mut slot = slot.lock().await;
        // Taken out while in use: a look cut short by its timeout drops the
        // connection instead of leaving a half-read answer for the next one.
        let mut conn = match slot.take() {
            Some(c) if c.is_alive() => c,
            _ => ServerConn::connect(addr, &self.login, self.connect_timeout, self.max_message).await?,
        };
        let row = conn.query_row(PROBE).await?;
        *slot = Some(conn);
        Ok(parse_row(&row))
    }
}

impl HealthCheck for SqlHealthCheck {
    fn check(&self, node: usize) -> CheckFuture<'_> {
        Box::pin(async move { self.look(node).await.map_err(|e| e.to_string()) })
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

/// Checks `node` every period, or at once when asked, until dropped.
pub(crate) async fn run(cluster: Arc<super::Cluster>, check: Arc<dyn HealthCheck>, node: usize) {
    let cfg = cluster.config.health.clone();
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
        let mut result = Err(String::new());
        for attempt in 0..=cfg.max_retries {
            if attempt > 0 {
                tokio::time::sleep(cfg.retry_delay).await;
            }
            result = match tokio::time::timeout(cfg.timeout, check.check(node)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {:?}", cfg.timeout)),
            };
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
}
