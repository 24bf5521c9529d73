//! The pooler embedded in a small HTTP service: the service owns the
//! runtime and both listeners, runs the pooler on one and answers HTTP on
//! the other from the pooler's latest cluster snapshot.
//!
//! - `GET /nodes`: every node as JSON, with its role, status, lag and the
//!   reads routed to it (from [`Pooler::cluster`] and [`Pooler::node_stats`]).
//! - `GET /primary`: 200 with the primary's index when a primary is
//!   available, else 503 (a readiness probe for the service).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pooler_core::{NodeStats, Pooler, Snapshot};
use tokio::net::TcpListener;

use crate::http::{self, push_json_string};

/// The snapshot (and the routing counters, by node) as JSON:
/// `{"generation":..,"primary":..,"primary_available":..,"nodes":[{..},..]}`.
pub fn nodes_json(snapshot: &Snapshot, stats: &[NodeStats]) -> String {
    let mut out = format!(
        "{{\"generation\":{},\"primary\":{},\"primary_available\":{},\"nodes\":[",
        snapshot.generation,
        snapshot.primary,
        snapshot.primary_available()
    );
    for (i, n) in snapshot.nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"id\":{},\"host\":", n.id));
        push_json_string(&mut out, &n.host);
        let weight = if n.weight.is_finite() { n.weight.to_string() } else { "null".into() };
        out.push_str(&format!(",\"port\":{},\"weight\":{weight},\"role\":", n.port));
        push_json_string(&mut out, n.role.as_str());
        out.push_str(",\"status\":");
        push_json_string(&mut out, n.status.as_str());
        out.push_str(",\"pg_role\":");
        push_json_string(&mut out, n.pg_role.as_str());
        out.push_str(&format!(
            ",\"pg_up\":{},\"lag_bytes\":{},\"lag_ms\":{},\"lagging\":{},\"lsn\":\"{:X}/{:X}\",\"replication_state\":",
            n.pg_up,
            n.lag_bytes,
            n.lag_time.as_millis(),
            n.lagging,
            n.lsn >> 32,
            n.lsn & 0xffff_ffff
        ));
        push_json_string(&mut out, &n.replication_state);
        out.push_str(",\"sync_state\":");
        push_json_string(&mut out, &n.sync_state);
        out.push_str(",\"cause\":");
        push_json_string(&mut out, &n.cause);
        let s = stats.iter().find(|s| s.node == n.id);
        out.push_str(&format!(
            ",\"routed\":{},\"reads\":{}}}",
            s.map(|s| s.routed).unwrap_or(0),
            s.map(|s| s.reads).unwrap_or(0)
        ));
    }
    out.push_str("]}");
    out
}

/// Answers HTTP on `listener` from `pooler` until `shutdown` resolves.
pub async fn serve_http(pooler: Arc<Pooler>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let mut stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let pooler = pooler.clone();
        tokio::spawn(async move {
            let Ok(request) = http::read_request(&mut stream, Duration::from_secs(5)).await else { return };
            let (status, body) = match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/nodes") => (200, nodes_json(&pooler.cluster(), &pooler.node_stats())),
                ("GET", "/primary") => {
                    let s = pooler.cluster();
                    let status = if s.primary_available() { 200 } else { 503 };
                    (status, format!("{{\"primary\":{},\"available\":{}}}", s.primary, s.primary_available()))
                }
                (_, "/nodes" | "/primary") => (405, "{\"error\":\"GET only\"}".into()),
                _ => (404, "{\"error\":\"not found\"}".into()),
            };
            let _ = http::write_response(&mut stream, status, "application/json", &body).await;
        });
    }
}

/// The service: the pooler on `postgres` and the HTTP API on `api`, until
/// `shutdown` resolves; then both stop (the pooler drains gracefully).
pub async fn run(pooler: Pooler, postgres: TcpListener, api: TcpListener, shutdown: impl Future<Output = ()>) {
    let pooler = Arc::new(pooler);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(serve_http(pooler.clone(), api, {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }));
    let pool = pooler.clone();
    let mut stopped_pg = stopped;
    let pg = tokio::spawn(async move {
        pool.run(postgres, async move {
            let _ = stopped_pg.wait_for(|s| *s).await;
        })
        .await
    });
    shutdown.await;
    let _ = stop.send(true);
    let _ = http.await;
    let _ = pg.await;
}
