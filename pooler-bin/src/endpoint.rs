//! The Prometheus / OpenMetrics endpoint (`[metrics] listen`): `/metrics`
//! renders what the library recorded through the `metrics` facade (plus
//! the gauges [`Pooler::record_gauges`] sets at each scrape), `/health`
//! answers 200 when the pooler serves and a primary is known, else 503.
//! A minimal HTTP/1.1 server: one request per connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pooler_core::Pooler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Histogram buckets (seconds) for the wait and duration histograms.
const BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the Prometheus recorder as the process's `metrics` recorder and
/// serves it on `[metrics] listen`, if set: on `inherited` (a predecessor's
/// socket, after an upgrade), else on a new one. A copy of the socket goes
/// into `sockets`, for a successor. Returns the server task.
pub async fn start(
    pooler: &Arc<Pooler>,
    inherited: Option<std::net::TcpListener>,
    sockets: &mut pooler_core::upgrade::SocketSet,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = pooler.config().metrics.listen_addr()? else {
        return Ok(None);
    };
    let recorder =
        PrometheusBuilder::new().set_buckets(BUCKETS).context("metrics: histogram buckets")?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("metrics: a recorder is already installed")?;
    let listener = match inherited {
        Some(l) => TcpListener::from_std(l).context("metrics: the inherited socket")?,
        None => TcpListener::bind(addr).await.with_context(|| format!("metrics.listen: cannot listen on {addr}"))?,
    };
    sockets.push_tcp("metrics", &listener).context("metrics: cannot copy the socket")?;
    tracing::info!(%addr, "metrics endpoint listening (/metrics, /health)");
    let pooler = pooler.clone();
    Ok(Some(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (pooler, handle) = (pooler.clone(), handle.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &pooler, &handle)).await;
            });
        }
    })))
}

/// Reads one request (head only, at most 8 KiB) and answers it.
async fn answer(mut stream: TcpStream, pooler: &Pooler, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > 8192 {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", b"request too large\n")
                .await;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET\n").await;
    }
    match path {
        "/metrics" => {
            pooler.record_gauges();
            let body = handle.render();
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body.as_bytes()).await
        }
        "/health" | "/healthz" | "/ready" => {
            // Ready: the listener is up (the endpoint starts after it is
            // bound) and a primary is known and in service.
            if pooler.cluster().primary_available() {
                respond(&mut stream, "200 OK", "text/plain", b"ok\n").await
            } else {
                respond(&mut stream, "503 Service Unavailable", "text/plain", b"no primary available\n").await
            }
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"try /metrics or /health\n").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
