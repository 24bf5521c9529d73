//! The connected byte streams the pooler talks over, client side and server
//! side: one type, [`Stream`], that the relay drives by readiness with
//! non-blocking reads and writes of plaintext.
//!
//! The relay's loop waits for `readable()` / `writable()` (both borrow the
//! stream shared, so one `select!` can wait for both) and then moves bytes
//! with [`Stream::read_ready`] and [`Stream::flush`], which take the stream
//! mutably. Under them a stream is a TCP or Unix domain socket, optionally
//! with TLS driven sans-I/O by rustls: `read_ready` reads records from the
//! socket into the `rustls::Connection`, processes them and hands out the
//! plaintext; `flush` hands plaintext to rustls and writes the records the
//! socket takes; `readable()` answers at once while decrypted plaintext is
//! waiting; `wants_write()` keeps the loop writing while records (a
//! handshake message, an alert) are pending. Nothing above this module knows
//! which kind of stream it has, and TLS keeps the relay's one loop with no
//! await per message.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use crate::buffers::{recycled, READ_CHUNK};

/// What a client's TLS session is, for the logs and the admin console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite, as rustls names it.
    pub cipher: String,
    /// The common name of the client's certificate, when it sent one that
    /// was verified.
    pub client_cn: Option<String>,
}

impl TlsInfo {
    /// `version/cipher`, as SHOW CLIENTS shows it.
    pub fn summary(&self) -> String {
        format!("{}/{}", self.version, self.cipher)
    }
}

/// Where a client connected from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Over TCP, from this address.
    Tcp(std::net::SocketAddr),
    /// Over the Unix socket, by the process of this user id (from
    /// SO_PEERCRED; `None` if the kernel would not say).
    Unix { uid: Option<u32> },
}

impl Peer {
    /// The TCP address (`None` for a Unix-socket client).
    pub(crate) fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Peer::Tcp(a) => Some(*a),
            Peer::Unix { .. } => None,
        }
    }
}

impl std::fmt::Display for Peer {
    /// The address, or `[local]` as PostgreSQL logs a Unix-socket client.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix { .. } => f.write_str("[local]"),
        }
    }
}

/// The socket under a [`Stream`].
#[derive(Debug)]
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// TLS over the socket, driven sans-I/O.
struct Tls {
    conn: rustls::Connection,
    /// Decrypted bytes rustls holds that have not been read out.
    plaintext: usize,
    /// The peer's records ended (close_notify, or the socket closed).
    closed: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.conn.is_handshaking())
            .field("plaintext", &self.plaintext)
            .field("closed", &self.closed)
            .finish()
    }
}

/// One connected stream, of any kind the pooler speaks over.
#[derive(Debug)]
pub(crate) struct Stream {
    socket: Socket,
    tls: Option<Box<Tls>>,
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream { socket: Socket::Tcp(s), tls: None }
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream { socket: Socket::Unix(s), tls: None }
    }
}

/// The socket as blocking-style `Read`/`Write` that never blocks (what
/// rustls's `read_tls` / `write_tls` take).
struct Io<'a>(&'a Socket);

impl Read for Io<'_> {
    /// A read shorter than `buf` has drained the socket: as for plaintext
    /// ([`Stream::read_ready`]), tokio is told so at once, sparing the
    /// `recv` that would only return EAGAIN after each TLS record.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let space = buf.len();
        let mut got = None;
        let mut once = || {
            let n = match self.0 {
                Socket::Tcp(s) => s.try_read(buf)?,
                Socket::Unix(s) => s.try_read(buf)?,
            };
            got = Some(n);
            if n > 0 && n < space {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        };
        let res = match self.0 {
            Socket::Tcp(s) => s.try_io(Interest::READABLE, &mut once),
            Socket::Unix(s) => s.try_io(Interest::READABLE, &mut once),
        };
        match (res, got) {
            (Ok(n), _) => Ok(n),
            (Err(e), Some(n)) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            (Err(e), _) => Err(e),
        }
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Starts the server side of TLS over `self`, a plaintext stream (after
    /// answering a client's SSLRequest with `S`, or on a direct TLS
    /// connection). `early` holds bytes of the handshake already read from
    /// the socket (the start of a direct TLS ClientHello). The handshake
    /// runs as the stream is used.
    pub(crate) fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>, early: &[u8]) -> io::Result<()> {
        let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        let mut early = early;
        while !early.is_empty() {
            conn.read_tls(&mut early)?;
            conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        self.tls = Some(Box::new(Tls { conn: conn.into(), plaintext: 0, closed: false }));
        Ok(())
    }

    /// Starts the client side of TLS to `name` over `self`, a plaintext
    /// stream (after a server answered SSLRequest with `S`).
    pub(crate) fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        self.tls = Some(Box::new(Tls { conn: conn.into(), plaintext: 0, closed: false }));
        Ok(())
    }

    /// Drives a TLS handshake to its end (nothing to do on a plaintext
    /// stream or after the handshake). Plaintext that arrives with the last
    /// handshake records stays in the session for the next read.
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        while self.is_handshaking() {
            if self.wants_write() {
                self.flush_all(&mut BytesMut::new()).await?;
                continue;
            }
            self.readable().await?;
            let Some(tls) = &mut self.tls else { return Ok(()) };
            if tls.closed {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            tls_process(&self.socket, tls)?;
        }
        // The last flight (a TLS 1.3 client's Finished) goes out now.
        if self.wants_write() {
            self.flush_all(&mut BytesMut::new()).await?;
        }
        Ok(())
    }

    /// True while a TLS handshake is not finished.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking())
    }

    /// True when the stream runs TLS.
    /// The socket and what it is (`tcp`, `unix`), when no TLS runs over it:
    /// what a successor process can take over.
    pub(crate) fn plain_socket(&self) -> Option<(std::os::fd::BorrowedFd<'_>, &'static str)> {
        use std::os::fd::AsFd;
        if self.tls.is_some() {
            return None;
        }
        Some(match &self.socket {
            Socket::Tcp(s) => (s.as_fd(), "tcp"),
            Socket::Unix(s) => (s.as_fd(), "unix"),
        })
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The ALPN protocol the TLS handshake agreed on.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref().and_then(|t| t.conn.alpn_protocol())
    }

    /// The peer's end-entity certificate, when it sent one (a server's
    /// always; a client's when it was asked for and verified).
    pub(crate) fn peer_certificate(&self) -> Option<&[u8]> {
        let tls = self.tls.as_ref()?;
        tls.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// The TLS session's version, cipher and client certificate name
    /// (`None`: plain text).
    pub(crate) fn tls_info(&self) -> Option<TlsInfo> {
        let tls = self.tls.as_ref()?;
        let version = match tls.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let cipher = tls.conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
        let client_cn = match &tls.conn {
            rustls::Connection::Server(_) => self.peer_certificate().and_then(crate::certificate::subject_common_name),
            rustls::Connection::Client(_) => None,
        };
        Some(TlsInfo { version, cipher, client_cn })
    }

    /// Waits until a read may make progress (at once while decrypted
    /// plaintext waits, or the peer's records have ended).
    ///
    /// A `poll_fn` over the socket's own readiness (a future of one
    /// pointer): the relay's `select!` holds several of these for every
    /// idle client, so their size is part of what an idle client costs. Only
    /// the last task to wait is woken: a stream has one driver.
    pub(crate) fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(move |cx| {
            if self.tls.as_ref().is_some_and(|t| t.plaintext > 0 || t.closed) {
                return std::task::Poll::Ready(Ok(()));
            }
            match &self.socket {
                Socket::Tcp(s) => s.poll_read_ready(cx),
                Socket::Unix(s) => s.poll_read_ready(cx),
            }
        })
    }

    /// Waits until a write may make progress (a `poll_fn`, as `readable`).
    pub(crate) fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        self.socket.writable()
    }

    /// Bytes the stream holds for the peer that the socket has not taken
    /// yet (TLS records): the loop waits for `writable()` while this is
    /// true. Plaintext streams hold none.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Reads what is ready (after `readable()`) into `buf`. `Ok(None)`:
    /// nothing was (the readiness was stale, or only TLS handshake records
    /// arrived); `Ok(Some(0))`: the peer closed. On a plain socket, a read
    /// shorter than the space offered has drained it, so it reports
    /// WouldBlock to tokio, which clears the readiness at once (with the
    /// snapshot taken before the read, so data arriving later still wakes
    /// the reader), sparing a `recv` that would only return EAGAIN.
    pub(crate) fn read_ready(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        if buf.capacity() == 0 {
            *buf = recycled();
        }
        buf.reserve(READ_CHUNK);
        match &mut self.tls {
            None => self.socket.read_ready(buf),
            Some(tls) => tls_read_ready(&self.socket, tls, buf),
        }
    }

    /// Writes as much of `out` as the socket takes now (nothing blocks).
    pub(crate) fn flush(&mut self, out: &mut BytesMut) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            while !out.is_empty() {
                match self.socket.try_write(out) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => out.advance(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        loop {
            if !out.is_empty() {
                // rustls buffers plaintext up to its limit (also while the
                // handshake runs); what it does not take stays in `out`.
                let n = tls.conn.writer().write(out)?;
                out.advance(n);
            }
            if !tls.conn.wants_write() {
                return Ok(());
            }
            match tls.conn.write_tls(&mut Io(&self.socket)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `out`, waiting for the socket as needed.
    pub(crate) async fn flush_all(&mut self, out: &mut BytesMut) -> io::Result<()> {
        self.flush(out)?;
        while !out.is_empty() || self.wants_write() {
            self.writable().await?;
            self.flush(out)?;
        }
        Ok(())
    }

    /// Writes all of `bytes`, waiting for the socket as needed.
    pub(crate) async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.tls.is_some() {
            let mut out = BytesMut::from(bytes);
            return self.flush_all(&mut out).await;
        }
        while !bytes.is_empty() {
            self.socket.writable().await?;
            match self.socket.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits for bytes and reads them into `buf` (`Ok(0)`: the peer closed):
    /// for the login's short exchanges. Unlike [`Stream::read_ready`] a
    /// short read leaves the readiness as it is, so bytes the peer sent
    /// right after (its first request, after the login) are read at once,
    /// without a trip through the event loop.
    pub(crate) async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.wants_write() {
                // A TLS handshake answer must go out before the peer says more.
                self.flush_all(&mut BytesMut::new()).await?;
            }
            self.readable().await?;
            buf.reserve(READ_CHUNK);
            let got = match &mut self.tls {
                Some(tls) => tls_read_ready(&self.socket, tls, buf)?,
                None => {
                    let r = match &self.socket {
                        Socket::Tcp(s) => s.try_read_buf(buf),
                        Socket::Unix(s) => s.try_read_buf(buf),
                    };
                    match r {
                        Ok(n) => Some(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(e) => return Err(e),
                    }
                }
            };
            if let Some(n) = got {
                return Ok(n);
            }
        }
    }

    /// Reads one byte from a plaintext socket, if one is there (`Ok(false)`:
    /// none yet; the peer closing is UnexpectedEof). For the one-byte answer
    /// to SSLRequest, after which TLS may start: nothing past it is read.
    pub(crate) fn read_exact_now(&mut self, byte: &mut [u8; 1]) -> io::Result<bool> {
        let r = match &self.socket {
            Socket::Tcp(s) => s.try_read(byte),
            Socket::Unix(s) => s.try_read(byte),
        };
        match r {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True when the peer has neither sent anything nor closed: a read
    /// would block. (A server terminated while its connection sat idle has
    /// sent an error and closed, which this sees without waiting.)
    pub(crate) fn is_quiet(&self) -> bool {
        if self.tls.as_ref().is_some_and(|t| t.plaintext > 0 || t.closed) {
            return false;
        }
        let mut probe = [0u8; 1];
        let r = match &self.socket {
            Socket::Tcp(s) => s.try_read(&mut probe),
            Socket::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// [`Stream::read_ready`] with TLS: plaintext rustls already holds, else
/// records from the socket until plaintext comes out or the socket has
/// nothing more.
fn tls_read_ready(socket: &Socket, tls: &mut Tls, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    loop {
        if tls.plaintext > 0 {
            let start = buf.len();
            let want = tls.plaintext.min(buf.capacity() - start).max(1);
            buf.resize(start + want, 0);
            let n = match tls.conn.reader().read(&mut buf[start..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e);
                }
            };
            buf.truncate(start + n);
            tls.plaintext = tls.plaintext.saturating_sub(n);
            if n > 0 {
                return Ok(Some(n));
            }
        }
        if tls.closed {
            return Ok(Some(0));
        }
        if !tls_process(socket, tls)? {
            return Ok(None);
        }
    }
}

/// Reads the TLS records the socket holds into the session and processes
/// them; false when the socket had none (WouldBlock). A protocol error
/// sends the alert saying why, if the socket takes it.
fn tls_process(socket: &Socket, tls: &mut Tls) -> io::Result<bool> {
    match tls.conn.read_tls(&mut Io(socket)) {
        Ok(0) => tls.closed = true,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(e),
    }
    let state = match tls.conn.process_new_packets() {
        Ok(s) => s,
        Err(e) => {
            let _ = tls.conn.write_tls(&mut Io(socket));
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    };
    tls.plaintext = state.plaintext_bytes_to_read();
    tls.closed |= state.peer_has_closed();
    Ok(true)
}

impl Socket {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(move |cx| match self {
            Socket::Tcp(s) => s.poll_write_ready(cx),
            Socket::Unix(s) => s.poll_write_ready(cx),
        })
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write(bytes),
            Socket::Unix(s) => s.try_write(bytes),
        }
    }

    /// See [`Stream::read_ready`] (plaintext).
    fn read_ready(&self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        match self {
            Socket::Tcp(s) => drain_once(buf, |f| s.try_io(Interest::READABLE, f), |b| s.try_read_buf(b)),
            Socket::Unix(s) => drain_once(buf, |f| s.try_io(Interest::READABLE, f), |b| s.try_read_buf(b)),
        }
    }
}

/// One `try_io` read that reports a short read as WouldBlock (see
/// [`Stream::read_ready`]).
fn drain_once(
    buf: &mut BytesMut,
    try_io: impl FnOnce(&mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>,
    mut read: impl FnMut(&mut BytesMut) -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    use io::ErrorKind::WouldBlock;
    let space = buf.capacity() - buf.len();
    let mut got = None;
    let res = try_io(&mut || {
        let n = read(buf)?;
        got = Some(n);
        if n > 0 && n < space {
            Err(WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (res, got) {
        (Ok(n), _) => Ok(Some(n)),
        (Err(e), Some(n)) if e.kind() == WouldBlock => Ok(Some(n)),
        (Err(e), None) if e.kind() == WouldBlock => Ok(None),
        (Err(e), _) => Err(e),
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests;
