//! Memory cost of idle clients: starts a real PostgreSQL, the `pooler` binary
//! in front of it, opens N clients that log in and then sit idle, and reports
//! the pooler's resident memory.
//! Run: `cargo build --release -p pooler-bin && cargo run --release -p pooler-benches --bin idle-clients -- --clients 1000`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pooler_benches::{rss_kib, PoolerProcess};

fn startup_packet(user: &str) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    pooler_core::internals::write::startup_message(
        &mut buf,
        0,
        &[("user", user), ("database", "postgres"), ("application_name", "idle")],
    );
    buf.to_vec()
}

/// Logs in and returns the socket once ReadyForQuery arrived.
fn login(port: u16) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(&startup_packet("postgres"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(format!("closed during login: {:?}", String::from_utf8_lossy(&got))));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(s)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut clients = 1000usize;
    let mut pooler = PathBuf::from("target/release/pooler");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clients" => clients = args.next().ok_or("--clients N")?.parse()?,
            "--pooler" => pooler = PathBuf::from(args.next().ok_or("--pooler PATH")?),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    // Session pooling gives every client its own server connection.
    let max_conn = (clients + 20).to_string();
    let cluster = pooler_testkit::Cluster::builder().setting("max_connections", &max_conn).start()?;
    let pooler = PoolerProcess::start(
        &pooler,
        &cluster.dir().join("idle-clients"),
        &format!("max_client_connections = {}", clients + 10),
        &format!(
            "[pool]\nsize = {clients}\n[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\nport = {}\n",
            cluster.primary().port()
        ),
    )?;
    let port = pooler.port;
    let warm = login(port)?;
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let (_, base_rss) = rss_kib(pooler.pid()).ok_or("no /proc entry for the pooler")?;
    let started = Instant::now();
    let mut open = Vec::with_capacity(clients);
    for _ in 0..clients {
        open.push(login(port)?);
    }
    let login_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (peak, rss) = rss_kib(pooler.pid()).ok_or("no /proc entry for the pooler")?;
    println!(
        "| idle clients | pooler RSS before | pooler RSS with clients | peak RSS (VmHWM) | per client | login time |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {clients} | {base_rss} KiB | {rss} KiB | {peak} KiB | {:.1} KiB | {:.2} s |",
        (rss.saturating_sub(base_rss)) as f64 / clients as f64,
        login_time.as_secs_f64()
    );
    drop(open);
    Ok(())
}
