//! SIGUSR2: hand the listening sockets to a new process of the binary and
//! give way to it (docs/ADMIN.md, "Upgrading without a gap").
//!
//! The running pooler binds a control socket, starts the binary again with
//! the same arguments and `POOLER_UPGRADE_SOCKET` naming it, and sends the
//! new process its listening sockets (clients, Unix socket, metrics). The
//! new process builds its pooler on them and answers `ready`; only then does
//! the old one stop accepting and send it, one by one at their next idle
//! point, its clients pooled by transaction or statement (socket and
//! session); the others finish as at a shutdown; then it exits. A new process that fails to start, or is not ready within
//! [`READY_TIMEOUT`], is stopped, and the old one goes on serving as if
//! nothing had happened.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pooler_core::upgrade::SocketSet;
use pooler_core::HandedOver;
use tokio::io::AsyncBufReadExt;

/// The variable naming the control socket a new process takes over through.
pub const SOCKET_ENV: &str = "POOLER_UPGRADE_SOCKET";
/// The binary to start, when not the one running (its path may have been
/// replaced by a new version, which is the point).
pub const BINARY_ENV: &str = "POOLER_UPGRADE_BINARY";
/// How long the new process has to connect and to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a running pooler hands over when asked.
pub struct Handover {
    pub sockets: SocketSet,
    pub handed_over: HandedOver,
}

/// The binary to start: `$POOLER_UPGRADE_BINARY`, else the path this one
/// was started by (a new version installed there is what runs), else this
/// process's executable.
fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BINARY_ENV) {
        return Ok(PathBuf::from(p));
    }
    if let Some(arg0) = std::env::args_os().next().filter(|a| a.to_string_lossy().contains('/')) {
        return Ok(PathBuf::from(arg0));
    }
    std::env::current_exe().context("cannot tell which binary to start")
}

/// Starts the successor and hands it the sockets; Ok (its pid, and the
/// control stream to send it the idle clients on) once it is ready, after
/// which this process must stop accepting.
pub async fn hand_over(h: &Handover) -> Result<(u32, UnixStream)> {
    let path = std::env::temp_dir().join(format!("pooler-upgrade-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let control = tokio::net::UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    let _cleanup = RemoveOnDrop(path.clone());
    let exe = binary()?;
    let mut child = tokio::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(SOCKET_ENV, &path)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let pid = child.id().unwrap_or(0);
    tracing::warn!(pid, binary = %exe.display(), sockets = ?h.sockets.labels(), "upgrade: started the new process");
    let talk = async {
        let (stream, _) = control.accept().await.context("the control socket failed")?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        h.sockets.send(&stream).context("cannot send the sockets")?;
        stream.set_nonblocking(true)?;
        let mut reader = tokio::io::BufReader::new(tokio::net::UnixStream::from_std(stream)?);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        match line.trim_end() {
            "ready" => {}
            "" => bail!("the new process hung up before it was ready"),
            other => bail!("the new process answered {other:?}"),
        }
        // It says nothing more: nothing is left in the reader.
        let stream = reader.into_inner().into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(READY_TIMEOUT, talk) => r.unwrap_or_else(|_| Err(anyhow::anyhow!("not ready within {READY_TIMEOUT:?}"))),
        status = child.wait() => Err(anyhow::anyhow!("the new process exited before it was ready ({})", status.map(|s| s.to_string()).unwrap_or_default())),
    };
    match outcome {
        Ok(stream) => {
            h.handed_over.set();
            Ok((pid, stream))
        }
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(e)
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// In a process started by [`hand_over`]: the sockets from the predecessor,
/// and the stream to say `ready` on. `None` when not started that way.
pub fn inherit() -> Result<Option<(SocketSet, UnixStream)>> {
    let Some(path) = std::env::var_os(SOCKET_ENV) else { return Ok(None) };
    let stream =
        UnixStream::connect(&path).with_context(|| format!("cannot reach {}", PathBuf::from(&path).display()))?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let set = SocketSet::receive(&stream).context("cannot receive the listening sockets")?;
    tracing::warn!(sockets = ?set.labels(), "upgrade: took over the listening sockets of the previous process");
    Ok(Some((set, stream)))
}

/// Tells the predecessor this process serves now (a few bytes on a
/// blocking stream: they fit in its buffer at once).
pub fn ready(stream: &UnixStream) -> Result<()> {
    use std::io::Write;
    (&*stream).write_all(b"ready\n")?;
    Ok(())
}
