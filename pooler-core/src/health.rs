//! Health checks and replication-lag probes, feeding the router: a node that
//! fails its check leaves the read set, a standby that lags past a threshold
//! leaves it too, and each returns when it is back. One task checks every
//! node each `health.period` over its own connection per node (opened again
//! after any failure), as the configured health-check user.
//!
//! This is the part of health checking that load balancing needs; primary
//! discovery and failover build on it.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{LoginInfo, ServerConn};
use crate::route::parse_lsn;
use crate::server::Shared;

/// What one check of one node found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Observation {
    in_recovery: bool,
    /// Current WAL position (primary) or last replayed position (standby).
    lsn: u64,
    /// Seconds since the last replayed transaction (standby; 0 otherwise).
    replay_age_secs: u64,
}

const PROBE: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_lsn() END, \
     CASE WHEN pg_catalog.pg_is_in_recovery() \
          THEN coalesce(extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp()), 0)::bigint \
          ELSE 0 END";

/// Checks every node until the task is dropped.
pub(crate) async fn run(shared: Arc<Shared>) {
    let cfg = shared.config.health.clone();
    let login = health_login(&shared);
    let mut conns: Vec<Option<ServerConn>> = shared.nodes.iter().map(|_| None).collect();
    let mut tick = tokio::time::interval(cfg.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failover = Failover::default();
    let mut warned = vec![false; shared.nodes.len()];
    let mut last_primary_lsn = 0u64;
    let mut primary_moved_at = std::time::Instant::now();
    loop {
        tick.tick().await;
        let mut seen: Vec<Option<Observation>> = Vec::with_capacity(conns.len());
        for (i, slot) in conns.iter_mut().enumerate() {
            // A failed check is tried again `max_retries` times, `retry_delay`
            // apart, before the node counts as down.
            let mut observation = None;
            for attempt in 0..=cfg.max_retries {
                if attempt > 0 {
                    tokio::time::sleep(cfg.retry_delay).await;
                }
                match tokio::time::timeout(cfg.timeout, check(&shared, i, slot, &login)).await {
                    Ok(Ok(o)) => {
                        observation = Some(o);
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(node = i, attempt, error = %e, "health check failed");
                        *slot = None;
                    }
                    Err(_) => {
                        tracing::debug!(node = i, attempt, timeout = ?cfg.timeout, "health check timed out");
                        *slot = None;
                    }
                }
            }
            seen.push(observation);
        }
        let before = shared.router.primary();
        if seen.get(before).is_some_and(|o| o.is_none()) {
            failover.primary_down(&shared, before, &seen).await;
        } else {
            failover.primary_up();
        }
        let primary = discover_primary(&shared, &seen, &mut warned);
        if primary != before {
            failover.new_primary(&shared, before, primary).await;
        }
        let primary_lsn = match seen.get(primary).copied().flatten() {
            Some(o) if !o.in_recovery => o.lsn,
            _ => 0,
        };
        if primary_lsn > last_primary_lsn {
            last_primary_lsn = primary_lsn;
            primary_moved_at = std::time::Instant::now();
        }
        for (i, o) in seen.iter().enumerate() {
            let Some(o) = o else {
                shared.router.note_health(i, false, 0, false);
                continue;
            };
            if i == primary {
                shared.router.note_health(i, true, 0, false);
                continue;
            }
            shared.router.note_replayed(i, o.lsn);
            let lag_bytes = primary_lsn.saturating_sub(o.lsn);
            let by_bytes = cfg.lag_threshold_bytes > 0 && lag_bytes > cfg.lag_threshold_bytes;
            // Replay age only means lag while the primary has moved on since.
            let by_time = !cfg.lag_threshold.is_zero()
                && lag_bytes > 0
                && Duration::from_secs(o.replay_age_secs) > cfg.lag_threshold
                && primary_moved_at.elapsed() < Duration::from_secs(o.replay_age_secs);
            shared.router.note_health(i, true, lag_bytes, by_bytes || by_time);
        }
    }
}

/// What the health task remembers about failover between rounds.
#[derive(Default)]
struct Failover {
    /// The failover command already ran for this failed primary.
    ran_for: Option<usize>,
}

impl Failover {
    /// The primary failed its checks (retries included): run the failover
    /// command once, promoting the standby that has replayed the most.
    async fn primary_down(&mut self, shared: &Shared, primary: usize, seen: &[Option<Observation>]) {
        let cfg = &shared.config.failover;
        if cfg.command.is_empty() || self.ran_for == Some(primary) {
            return;
        }
        self.ran_for = Some(primary);
        let candidate = seen
            .iter()
            .enumerate()
            .filter(|(i, o)| *i != primary && o.is_some_and(|o| o.in_recovery))
            .max_by_key(|(i, o)| (o.map(|o| o.lsn).unwrap_or(0), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        let Some(new_main) = candidate else {
            tracing::error!(primary, "the primary is down and no standby is up to promote");
            return;
        };
        let nodes = &shared.config.nodes;
        let roles = crate::failover::Roles {
            subject: (primary, &nodes[primary]),
            new_main: (new_main, &nodes[new_main]),
            old_primary: (primary, &nodes[primary]),
        };
        tracing::warn!(failed = primary, new_main, "primary down: failover");
        crate::failover::run("failover_command", &crate::failover::expand(&cfg.command, &roles), cfg.command_timeout)
            .await;
        // The new primary is taken when the checks see it out of recovery.
    }

    /// The primary answers again: a later failure is a new failover.
    fn primary_up(&mut self) {
        self.ran_for = None;
    }

    /// A new primary is known: re-point every other standby.
    async fn new_primary(&mut self, shared: &Shared, old: usize, new: usize) {
        let cfg = &shared.config.failover;
        self.ran_for = None;
        if cfg.follow_primary_command.is_empty() {
            return;
        }
        let nodes = &shared.config.nodes;
        for i in (0..nodes.len()).filter(|&i| i != old && i != new) {
            let roles = crate::failover::Roles {
                subject: (i, &nodes[i]),
                new_main: (new, &nodes[new]),
                old_primary: (old, &nodes[old]),
            };
            crate::failover::run(
                "follow_primary_command",
                &crate::failover::expand(&cfg.follow_primary_command, &roles),
                cfg.command_timeout,
            )
            .await;
        }
    }
}

/// Which node takes writes, from what the checks saw: the current primary as
/// long as it is up and not in recovery; otherwise the one node that is up and
/// not in recovery (passive discovery: another tool promoted it). Never a
/// second claimant while the current primary still answers as one (two
/// primaries: keep writing to one of them only, and say so).
fn discover_primary(shared: &Shared, seen: &[Option<Observation>], warned: &mut [bool]) -> usize {
    let current = shared.router.primary();
    // A former primary that answers as a primary again is a false primary:
    // it never takes writes on its own word.
    let claims: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(i, o)| o.is_some_and(|o| !o.in_recovery) && !shared.router.is_detached(*i))
        .map(|(i, _)| i)
        .collect();
    for (i, o) in seen.iter().enumerate() {
        let false_primary = matches!(o, Some(o) if !o.in_recovery) && shared.router.is_detached(i);
        if let Some(w) = warned.get_mut(i) {
            if false_primary && !*w {
                tracing::warn!(
                    node = i,
                    "a former primary answers as a primary: ignored (false primary) until it returns as a standby"
                );
            }
            *w = false_primary;
        }
        if matches!(o, Some(o) if o.in_recovery) {
            shared.router.reattach(i);
        }
    }
    if claims.contains(&current) {
        if claims.len() > 1 {
            tracing::warn!(primary = current, claimants = ?claims, "more than one node claims to be the primary; writes stay on the current one");
        }
        return current;
    }
    match claims.as_slice() {
        [] => current,
        [only] => {
            shared.router.set_primary(*only, "the old primary is down or in recovery and this node is not in recovery");
            *only
        }
        many => {
            tracing::warn!(claimants = ?many, "the primary is gone and several nodes claim to be primary; keeping writes where they were");
            current
        }
    }
}

/// How the checks log in: the health-check user, its secret from the password file.
fn health_login(shared: &Shared) -> LoginInfo {
    let cfg = &shared.config.health;
    LoginInfo {
        user: cfg.user.clone(),
        database: cfg.database.clone(),
        secret: shared.passwords.as_ref().and_then(|p| p.get(&cfg.user)).cloned(),
        client_key: None,
    }
}

/// True when node `i` answers, on a fresh connection as the health-check
/// user, that it is not in recovery.
pub(crate) async fn answers_as_primary(shared: &Shared, i: usize) -> bool {
    let cfg = &shared.config.health;
    let login = health_login(shared);
    let mut slot = None;
    let seen = tokio::time::timeout(cfg.timeout, check(shared, i, &mut slot, &login)).await;
    if let Some(conn) = slot {
        conn.close().await;
    }
    matches!(seen, Ok(Ok(o)) if !o.in_recovery)
}

/// One check of node `i` over its kept connection (opened if needed).
async fn check(
    shared: &Shared,
    i: usize,
    slot: &mut Option<ServerConn>,
    login: &LoginInfo,
) -> Result<Observation, crate::Error> {
    if slot.as_ref().is_none_or(|c| !c.is_alive()) {
        let addr = &shared.nodes[i];
        let conn =
            ServerConn::connect(addr, login, shared.config.health.timeout, shared.config.server.max_message_size)
                .await?;
        *slot = Some(conn);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(crate::Error::ServerClosed);
    };
    let row = conn.query_row(PROBE).await?;
    let text = |k: usize| row.get(k).cloned().flatten();
    Ok(Observation {
        in_recovery: text(0).as_deref() == Some("t"),
        lsn: text(1).and_then(|v| parse_lsn(&v)).unwrap_or(0),
        replay_age_secs: text(2).and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}
