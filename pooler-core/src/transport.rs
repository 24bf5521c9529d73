//! The connected byte streams the pooler talks over, client side and server
//! side: one type, [`Stream`], that the relay drives by readiness with
//! non-blocking reads and writes of plaintext.
//!
//! The relay's loop waits for `readable()` / `writable()` (both borrow the
//! stream shared, so one `select!` can wait for both) and then moves bytes
//! with [`Stream::read_ready`] and [`Stream::flush`], which take the stream
//! mutably. That split is what lets an encrypting layer fit under the relay
//! unchanged: with TLS driven sans-I/O (`rustls::Connection`), `read_ready`
//! becomes "read the socket into the TLS state, process the records, hand
//! out plaintext", `flush` "encrypt into the TLS state, write what the
//! socket takes", `readable()` answers at once while decrypted plaintext is
//! buffered, and `wants_write()` keeps the loop writing while records are
//! pending. Nothing above this module knows which kind of socket it has.
//!
//! Today a stream is TCP or a Unix domain socket, both plaintext.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::buffers::{recycled, READ_CHUNK};

/// The socket under a [`Stream`].
#[derive(Debug)]
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One connected stream, of any kind the pooler speaks over.
#[derive(Debug)]
pub(crate) struct Stream {
    socket: Socket,
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream { socket: Socket::Tcp(s) }
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream { socket: Socket::Unix(s) }
    }
}

impl Stream {
    /// Waits until a read may make progress.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Waits until a write may make progress.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    /// Bytes the stream holds for the peer that the socket has not taken
    /// yet (encrypted records, with TLS): the loop waits for `writable()`
    /// while this is true. Plaintext sockets hold none.
    pub(crate) fn wants_write(&self) -> bool {
        false
    }

    /// Reads what is ready (after `readable()`) into `buf`. `Ok(None)`:
    /// nothing was (the readiness was stale); `Ok(Some(0))`: the peer
    /// closed. A read shorter than the space offered has drained the
    /// socket, so it reports WouldBlock to tokio, which clears the readiness
    /// at once (with the snapshot taken before the read, so data arriving
    /// later still wakes the reader), sparing a `recv` that would only
    /// return EAGAIN.
    pub(crate) fn read_ready(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        self.socket.read_ready(buf)
    }

    /// Writes as much of `out` as the socket takes now (nothing blocks).
    pub(crate) fn flush(&mut self, out: &mut BytesMut) -> io::Result<()> {
        while !out.is_empty() {
            match self.socket.try_write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `out`, waiting for the socket as needed.
    pub(crate) async fn flush_all(&mut self, out: &mut BytesMut) -> io::Result<()> {
        while !out.is_empty() || self.wants_write() {
            self.writable().await?;
            self.flush(out)?;
        }
        Ok(())
    }

    /// True when the peer has neither sent anything nor closed: a read
    /// would block. (A server terminated while its connection sat idle has
    /// sent an error and closed, which this sees without waiting.)
    pub(crate) fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match &self.socket {
            Socket::Tcp(s) => s.try_read(&mut probe),
            Socket::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Socket {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable().await,
            Socket::Unix(s) => s.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable().await,
            Socket::Unix(s) => s.writable().await,
        }
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write(bytes),
            Socket::Unix(s) => s.try_write(bytes),
        }
    }

    /// See [`Stream::read_ready`].
    fn read_ready(&self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        if buf.capacity() == 0 {
            *buf = recycled();
        }
        buf.reserve(READ_CHUNK);
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

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair over a socketpair: a real socket, no network.
    fn pair() -> (Stream, Stream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Stream::from(a), Stream::from(b))
    }

    #[tokio::test]
    async fn bytes_flushed_on_one_side_are_read_whole_on_the_other_and_a_close_reads_as_zero() {
        let (mut a, mut b) = pair();
        assert!(b.is_quiet(), "nothing sent yet");
        let mut out = BytesMut::from(&b"Q\0\0\0\x0dSELECT 1\0"[..]);
        a.flush(&mut out).unwrap();
        assert!(out.is_empty(), "a small write goes out at once");
        let mut buf = BytesMut::new();
        let mut got = 0;
        while got < 14 {
            b.readable().await.unwrap();
            got += b.read_ready(&mut buf).unwrap().unwrap_or(0);
        }
        assert_eq!(&buf[..], b"Q\0\0\0\x0dSELECT 1\0");
        drop(a);
        b.readable().await.unwrap();
        assert_eq!(b.read_ready(&mut buf).unwrap(), Some(0));
    }

    #[tokio::test]
    async fn a_stale_readiness_reads_nothing_instead_of_blocking() {
        let (_a, mut b) = pair();
        let mut buf = BytesMut::new();
        assert_eq!(b.read_ready(&mut buf).unwrap(), None);
    }

    #[tokio::test]
    async fn flush_takes_what_the_socket_takes_and_flush_all_the_rest_once_the_peer_reads() {
        let (mut a, mut b) = pair();
        let big = vec![7u8; 4 << 20];
        let mut out = BytesMut::from(&big[..]);
        a.flush(&mut out).unwrap();
        assert!(!out.is_empty(), "a socket buffer is smaller than 4 MiB");
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while buf.len() < 4 << 20 {
                b.readable().await.unwrap();
                b.read_ready(&mut buf).unwrap();
            }
            buf.len()
        });
        a.flush_all(&mut out).await.unwrap();
        assert_eq!(reader.await.unwrap(), 4 << 20);
    }
}
