//! A failover hook that asks a Patroni-style REST API to promote a standby,
//! and a local stand-in for that API so the example runs anywhere.
//!
//! The pooler decides *when* (its health checks saw the primary fail, or an
//! operator asked for a switchover) and *which* standby (the one that
//! received the most WAL); [`PatroniHook`] only carries the decision to the
//! tool that owns the cluster: `POST /failover` with
//! `{"leader": <failed member>, "candidate": <member to promote>}`, as
//! Patroni's REST API takes it. A 2xx answer counts as success; the pooler
//! still moves writes only once the candidate answers as a primary.
//! Re-pointing the other standbys is Patroni's job, so follow-primary and
//! failback keep the trait's defaults (do nothing, succeed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pooler_core::{FailoverContext, FailoverHook, HookFuture, HookOutcome, Pooler, StartError};
use pooler_testkit::{Cluster, StopMode};
use tokio::net::TcpListener;

use crate::demo::{self, BoxError, Running};
use crate::http::{self, Request};

/// Promotes through a Patroni-style REST API at `api` (`host:port`).
#[derive(Clone, Debug)]
pub struct PatroniHook {
    api: String,
    /// Patroni member name of each node, by index in `[[nodes]]`.
    members: Vec<String>,
    timeout: Duration,
}

impl PatroniHook {
    /// A hook for the API at `api`, naming node `i` `members[i]`. Each call
    /// is bounded by 60 s (Patroni answers once the promotion is done).
    pub fn new(api: impl Into<String>, members: Vec<String>) -> PatroniHook {
        PatroniHook { api: api.into(), members, timeout: Duration::from_secs(60) }
    }

    async fn post_failover(&self, ctx: &FailoverContext) -> Result<(), String> {
        let name = |id: usize| self.members.get(id).ok_or(format!("node {id} has no Patroni member name"));
        let (leader, candidate) = (name(ctx.subject.id)?, name(ctx.new_main.id)?);
        let body = http::json_object(&[("leader", leader), ("candidate", candidate)]);
        let (status, answer) = http::request(&self.api, "POST", "/failover", Some(&body), self.timeout)
            .await
            .map_err(|e| format!("{}: {e}", self.api))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("{} answered {status}: {}", self.api, answer.trim()))
        }
    }
}

impl FailoverHook for PatroniHook {
    fn promotes(&self) -> bool {
        true
    }

    fn failover<'a>(&'a self, ctx: &'a FailoverContext) -> HookFuture<'a> {
        Box::pin(async move {
            match self.post_failover(ctx).await {
                Ok(()) => HookOutcome::Done,
                Err(e) => HookOutcome::failed(format!("Patroni refused the failover to node {}: {e}", ctx.new_main.id)),
            }
        })
    }
}

/// A cluster member as the stand-in knows it.
#[derive(Clone, Debug)]
pub struct Member {
    /// Patroni member name.
    pub name: String,
    /// Where its PostgreSQL listens.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// A superuser to run `pg_promote()` as.
    pub superuser: String,
}

/// A stand-in for Patroni's REST API: `POST /failover` promotes the
/// candidate with `SELECT pg_promote()` and answers as Patroni does (200
/// `Successfully failed over to "name"`, 412 for an unknown candidate, 503
/// when the promotion failed). Every request is recorded.
#[derive(Debug)]
pub struct StandIn {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Serves on a fresh loopback port until dropped.
    pub async fn start(members: Vec<Member>) -> std::io::Result<StandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (members, seen) = (Arc::new(members), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (members, seen) = (members.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(request) = http::read_request(&mut stream, Duration::from_secs(5)).await else { return };
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(request.clone());
                    let (status, body) = answer(&members, &request).await;
                    let _ = http::write_response(&mut stream, status, "text/plain", &body).await;
                });
            }
        });
        Ok(StandIn { addr, requests, task })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the stand-in answers to `request`.
async fn answer(members: &[Member], request: &Request) -> (u16, String) {
    if request.path != "/failover" {
        return (404, "not found\n".into());
    }
    if request.method != "POST" {
        return (405, "POST only\n".into());
    }
    let Some(fields) = http::parse_flat_object(&request.body) else {
        return (400, "body is not a JSON object\n".into());
    };
    let field = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let Some(member) = field("candidate").and_then(|c| members.iter().find(|m| m.name == c)) else {
        return (412, "failover is not possible: candidate is not a member of the cluster\n".into());
    };
    match promote(member).await {
        Ok(()) => (200, format!("Successfully failed over to \"{}\"\n", member.name)),
        Err(e) => (503, format!("Failover failed: {e}\n")),
    }
}

/// `SELECT pg_promote()` on `member` (waits until it is done, 60 s at most).
async fn promote(member: &Member) -> Result<(), BoxError> {
    let mut c = tokio_postgres::Config::new();
    c.host(&member.host).port(member.port).user(&member.superuser).dbname("postgres");
    c.connect_timeout(Duration::from_secs(5));
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let promoted: bool = client.query_one("SELECT pg_promote()", &[]).await?.get(0);
    if promoted {
        Ok(())
    } else {
        Err("pg_promote() returned false".into())
    }
}

/// What [`demo`] saw.
#[derive(Debug)]
pub struct Outcome {
    /// The requests the stand-in API received.
    pub requests: Vec<Request>,
    /// The node the pooler sends writes to afterwards.
    pub primary: usize,
    /// The port of the server that took a write after the failover.
    pub write_port: u16,
}

/// Builds a pooler whose failover hook is a [`PatroniHook`] calling `api`,
/// naming node `i` `pg<i>`; health checks fail a node on the first failed
/// look, so a failover starts within a health period.
pub fn pooler(cluster: &Cluster, api: SocketAddr) -> Result<Pooler, StartError> {
    let members = (0..cluster.nodes().count()).map(|i| format!("pg{i}")).collect();
    let mut config = demo::config(cluster);
    config.health.max_retries = 0;
    config.failover.search_primary_node_timeout = Duration::from_secs(30);
    Pooler::builder(config).failover_hook(Arc::new(PatroniHook::new(api.to_string(), members))).build()
}

/// The whole story on `cluster` (a primary and at least one standby): the
/// stand-in API and a pooler using the hook start, the primary is killed,
/// the pooler's failover calls the API, which promotes the standby, and a
/// write through the pooler lands on it.
pub async fn demo(cluster: &Cluster) -> Result<Outcome, BoxError> {
    let members = cluster
        .nodes()
        .enumerate()
        .map(|(i, n)| Member {
            name: format!("pg{i}"),
            host: n.host().to_owned(),
            port: n.port(),
            superuser: n.superuser().to_owned(),
        })
        .collect();
    let api = StandIn::start(members).await?;
    let running = Running::start(pooler(cluster, api.addr())?).await?;
    let primary = cluster.primary().clone();
    tokio::task::spawn_blocking(move || primary.stop(StopMode::Immediate)).await??;
    let p = running.pooler.clone();
    if !demo::eventually(Duration::from_secs(30), || {
        let moved = p.primary_node() != 0 && p.cluster().primary_available();
        async move { moved }
    })
    .await
    {
        return Err("no failover within 30 s".into());
    }
    let client = running.connect("postgres", "").await?;
    client.batch_execute("CREATE TABLE IF NOT EXISTS patroni_demo (id serial PRIMARY KEY)").await?;
    let row = client.query_one("INSERT INTO patroni_demo DEFAULT VALUES RETURNING inet_server_port()", &[]).await?;
    let outcome =
        Outcome { requests: api.requests(), primary: p.primary_node(), write_port: row.get::<_, i32>(0) as u16 };
    running.stop().await;
    Ok(outcome)
}
