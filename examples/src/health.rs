//! A custom health check: the built-in one plus a rule of your own.
//!
//! [`ReplayPausedIsDown`] runs the built-in [`SqlHealthCheck`] and then, on
//! a standby, asks `pg_is_wal_replay_paused()` over a connection of its
//! own: a standby whose replay was paused (for a backup, an investigation,
//! a delayed-replica setup) serves ever staler reads, yet its lag in bytes
//! stays small while the primary writes little, so the built-in check
//! keeps it in the read set. Reporting it as failed takes it out of the
//! read set after `health.max_retries` retries; once replay resumes, its
//! checks pass and it comes back by itself (`failover.auto_failback`).
//!
//! The pooler does the rest: it retries, bounds each look by
//! `health.timeout`, flips the node's state only after consecutive results,
//! and logs the flips. A check only looks.

use std::sync::Arc;
use std::time::Duration;

use pooler_core::{
    CheckError, CheckFuture, Config, HealthCheck, Observation, Pooler, SqlHealthCheck, StartError, Status,
};
use pooler_testkit::Cluster;
use tokio::sync::Mutex;

use crate::demo::{self, BoxError, Running};

/// The built-in check, and a standby with WAL replay paused counts as failed.
#[derive(Debug)]
pub struct ReplayPausedIsDown {
    builtin: SqlHealthCheck,
    nodes: Vec<(String, u16)>,
    user: String,
    database: String,
    /// One connection per node for the extra query, opened on first use.
    conns: Vec<Mutex<Option<tokio_postgres::Client>>>,
}

impl ReplayPausedIsDown {
    /// The check for `config`'s nodes, logging in as `health.user` to
    /// `health.database` (no password: give the built-in check the password
    /// file with [`SqlHealthCheck::new`] and add one here in real use).
    pub fn new(config: &Config) -> ReplayPausedIsDown {
        ReplayPausedIsDown {
            builtin: SqlHealthCheck::new(config, None),
            nodes: config.nodes.iter().map(|n| (n.host.clone(), n.port)).collect(),
            user: config.health.user.clone(),
            database: config.health.database.clone(),
            conns: config.nodes.iter().map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Whether `node` has its WAL replay paused.
    async fn replay_paused(&self, node: usize) -> Result<bool, String> {
        let (Some((host, port)), Some(slot)) = (self.nodes.get(node), self.conns.get(node)) else {
            return Err(format!("node {node} is not configured"));
        };
        let mut slot = slot.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let mut c = tokio_postgres::Config::new();
            c.host(host).port(*port).user(&self.user).dbname(&self.database);
            c.application_name("pooler health check").connect_timeout(Duration::from_secs(3));
            let (client, conn) = c.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            *slot = Some(client);
        }
        let client = slot.as_ref().ok_or("no connection")?;
        let row = client.query_one("SELECT pg_catalog.pg_is_wal_replay_paused()", &[]).await;
        match row {
            Ok(row) => Ok(row.get(0)),
            Err(e) => {
                // The next look connects again.
                *slot = None;
                Err(e.to_string())
            }
        }
    }
}

impl HealthCheck for ReplayPausedIsDown {
    fn check(&self, node: usize) -> CheckFuture<'_> {
        Box::pin(async move {
            let seen: Observation = self.builtin.check(node).await?;
            if seen.in_recovery && self.replay_paused(node).await.map_err(CheckError::other)? {
                return Err(CheckError::other("WAL replay is paused: reads there would be stale"));
            }
            Ok(seen)
        })
    }
}

/// A pooler over `cluster` with [`ReplayPausedIsDown`] as its health check,
/// reads only from the standbys (primary weight 0), a node failed on its
/// first failed look.
pub fn pooler(cluster: &Cluster) -> Result<Pooler, StartError> {
    let mut config = demo::config(cluster);
    config.nodes[0].weight = 0.0;
    config.health.max_retries = 0;
    let check = Arc::new(ReplayPausedIsDown::new(&config));
    Pooler::builder(config).health_check(check).build()
}

/// What [`demo`] saw of standby 1 and where reads went.
#[derive(Debug)]
pub struct Outcome {
    /// A read before the pause was served by a standby.
    pub standby_read_before: bool,
    /// Node 1's status once its replay was paused.
    pub status_while_paused: Status,
    /// Why, as the controller recorded it.
    pub cause_while_paused: String,
    /// A read while paused was served by a standby (it must not be).
    pub standby_read_while_paused: bool,
    /// Node 1's status once replay resumed.
    pub status_after: Status,
    /// A read after the resume was served by a standby.
    pub standby_read_after: bool,
}

/// On `cluster` (a primary and one standby): reads go to the standby; its
/// replay is paused, the check fails it and reads go to the primary; replay
/// resumes and reads come back.
pub async fn demo(cluster: &Cluster) -> Result<Outcome, BoxError> {
    let running = Running::start(pooler(cluster)?).await?;
    let client = running.connect("postgres", "").await?;
    let standby_read_before = demo::served_by(&client).await?.1;
    let standby = cluster.standbys().first().ok_or("the demo needs a standby")?.clone();
    let s = standby.clone();
    tokio::task::spawn_blocking(move || s.query_one("SELECT pg_wal_replay_pause()")).await??;
    let p = running.pooler.clone();
    let status = |want: Status| {
        let p = p.clone();
        move || {
            let now = p.cluster().nodes[1].status == want;
            async move { now }
        }
    };
    demo::eventually(Duration::from_secs(10), status(Status::Down)).await;
    let node = p.cluster().nodes[1].clone();
    let standby_read_while_paused = demo::served_by(&client).await?.1;
    tokio::task::spawn_blocking(move || standby.query_one("SELECT pg_wal_replay_resume()")).await??;
    demo::eventually(Duration::from_secs(10), status(Status::Up)).await;
    let status_after = p.cluster().nodes[1].status;
    let standby_read_after = demo::served_by(&client).await?.1;
    running.stop().await;
    Ok(Outcome {
        standby_read_before,
        status_while_paused: node.status,
        cause_while_paused: node.cause,
        standby_read_while_paused,
        status_after,
        standby_read_after,
    })
}
