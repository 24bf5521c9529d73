//! Where clients connect: a TCP listener, a Unix domain socket named as
//! PostgreSQL names its own (`<dir>/.s.PGSQL.<port>`), or both. Accepting
//! yields a [`Stream`] and the [`Peer`] it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;
use crate::transport::{Peer, Stream};

/// Why the listeners could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The configuration's listen settings are invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TCP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Unix socket could not be created.
    #[error("cannot listen on Unix socket {path}: {source}")]
    Unix {
        /// The socket's path.
        path: PathBuf,
        /// The I/O error (AddrInUse: another process accepts on it).
        source: std::io::Error,
    },
}

/// The sockets a pooler accepts clients on. Built by [`Listeners::bind`]
/// from the configuration, or from a bound [`TcpListener`] (`.into()`).
/// Dropping it removes the Unix socket file it created.
#[derive(Debug, Default)]
pub struct Listeners {
    tcp: Option<TcpListener>,
    unix: Option<UnixSocket>,
}

#[derive(Debug)]
struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Handed over: the successor accepts on the file, which stays.
    handed_over: HandedOver,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if !self.handed_over.is_set() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Set once the listeners were handed to a successor process
/// ([`Listeners::socket_set`]): dropping them then leaves the Unix socket's
/// file in place, for the successor accepts on it.
#[derive(Clone, Debug, Default)]
pub struct HandedOver(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl HandedOver {
    /// Marks the listeners as handed over.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl From<TcpListener> for Listeners {
    fn from(l: TcpListener) -> Listeners {
        Listeners { tcp: Some(l), unix: None }
    }
}

impl Listeners {
    /// Binds what `config` asks for: `server.listen` over TCP (unless
    /// `server.listen_tcp` is false) and, with `server.unix_socket_dir`, the
    /// socket `<dir>/.s.PGSQL.<port>`. A socket file left by a pooler that
    /// died is replaced; one another process accepts on is an error.
    pub async fn bind(config: &Config) -> Result<Listeners, ListenError> {
        let addr = config.listen_addr()?;
        let mut listeners = Listeners::default();
        if let Some(dir) = &config.server.unix_socket_dir {
            let path = socket_path(dir, addr.port());
            listeners.unix = Some(bind_unix(&path, config.server.unix_socket_mode).await?);
        }
        if config.server.listen_tcp {
            let l = TcpListener::bind(addr).await.map_err(|source| ListenError::Tcp { addr, source })?;
            listeners.tcp = Some(l);
        }
        Ok(listeners)
    }

    /// Adds the Unix socket `<dir>/.s.PGSQL.<port>` (for embedders and tests
    /// that bind TCP themselves).
    pub async fn with_unix_socket(mut self, dir: &Path, port: u16, mode: u32) -> Result<Listeners, ListenError> {
        self.unix = Some(bind_unix(&socket_path(dir, port), mode).await?);
        Ok(self)
    }

    /// The TCP address accepted on, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The Unix socket accepted on, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|u| u.path.as_path())
    }

    /// Copies of the listening sockets, labelled `tcp` and `unix`, to hand
    /// to a successor process ([`crate::upgrade`]), and the flag to set once
    /// it has them.
    pub fn socket_set(&self) -> std::io::Result<(crate::upgrade::SocketSet, HandedOver)> {
        let mut set = crate::upgrade::SocketSet::default();
        if let Some(l) = &self.tcp {
            set.push_tcp("tcp", l)?;
        }
        let mut flag = HandedOver::default();
        if let Some(u) = &self.unix {
            set.push_unix("unix", u.path.clone(), &u.listener)?;
            flag = u.handed_over.clone();
        }
        Ok((set, flag))
    }

    /// The listeners a predecessor handed over (`tcp` and `unix` from
    /// `set`), to accept on instead of binding. Needs a Tokio runtime.
    pub fn from_socket_set(set: &mut crate::upgrade::SocketSet) -> std::io::Result<Listeners> {
        let mut listeners = Listeners::default();
        if let Some(l) = set.take_tcp("tcp")? {
            listeners.tcp = Some(TcpListener::from_std(l)?);
        }
        if let Some((l, path)) = set.take_unix("unix")? {
            let listener = UnixListener::from_std(l)?;
            listeners.unix = Some(UnixSocket { listener, path, handed_over: HandedOver::default() });
        }
        Ok(listeners)
    }

    /// The next client on any of the sockets.
    pub(crate) async fn accept(&self) -> std::io::Result<(Stream, Peer)> {
        let tcp = async {
            match &self.tcp {
                Some(l) => {
                    let (s, addr) = l.accept().await?;
                    let _ = s.set_nodelay(true);
                    Ok((Stream::from(s), Peer::Tcp(addr)))
                }
                None => std::future::pending().await,
            }
        };
        let unix = async {
            match &self.unix {
                Some(u) => {
                    let (s, _) = u.listener.accept().await?;
                    let uid = s.peer_cred().ok().map(|c| c.uid());
                    Ok((Stream::from(s), Peer::Unix { uid }))
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tcp => r,
            r = unix => r,
        }
    }
}

/// `<dir>/.s.PGSQL.<port>`.
fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

async fn bind_unix(path: &Path, mode: u32) -> Result<UnixSocket, ListenError> {
    let failed = |source| ListenError::Unix { path: path.to_owned(), source };
    if path.exists() {
        // Someone accepting on it: theirs. Nobody (a crashed pooler's file):
        // ours to replace, as PostgreSQL replaces a stale socket.
        match tokio::net::UnixStream::connect(path).await {
            Ok(_) => {
                return Err(failed(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process is accepting connections on it",
                )))
            }
            Err(_) => std::fs::remove_file(path).map_err(failed)?,
        }
    }
    let listener = UnixListener::bind(path).map_err(failed)?;
    let socket = UnixSocket { listener, path: path.to_owned(), handed_over: HandedOver::default() };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pooler-listen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn the_unix_socket_is_named_like_postgresqls_accepts_and_is_removed_on_drop() {
        let dir = temp_dir("name");
        let l = Listeners::default().with_unix_socket(&dir, 6543, 0o770).await.unwrap();
        let path = dir.join(".s.PGSQL.6543");
        assert_eq!(l.unix_path(), Some(path.as_path()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o770);
        let client = tokio::spawn({
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.unwrap() }
        });
        let (_stream, peer) = l.accept().await.unwrap();
        let me = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok();
        assert_eq!(peer, Peer::Unix { uid: me }, "the peer's uid comes from SO_PEERCRED");
        drop(client.await.unwrap());
        drop(l);
        assert!(!path.exists(), "the socket file is removed with the listener");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced_and_a_live_one_is_refused() {
        let dir = temp_dir("stale");
        let path = dir.join(".s.PGSQL.7000");
        // A socket file nobody accepts on (its listener is gone, the file stays).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let first = Listeners::default().with_unix_socket(&dir, 7000, 0o777).await.expect("stale file replaced");
        let second = Listeners::default().with_unix_socket(&dir, 7000, 0o777).await;
        match second {
            Err(ListenError::Unix { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse),
            other => panic!("a live socket must not be taken over: {other:?}"),
        }
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
