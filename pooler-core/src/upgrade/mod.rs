//! Listening sockets handed from a running pooler to its successor (a new
//! binary, or the same one restarted) over a Unix control socket, with
//! SCM_RIGHTS: the successor accepts on the very sockets the old process
//! bound, so no client is refused while one process gives way to the other
//! (docs/ADMIN.md, "Upgrading without a gap").
//!
//! What travels first is a [`SocketSet`]: labelled listening sockets (TCP,
//! or a Unix socket with its path), one message, the descriptors as
//! ancillary data. The sender keeps its own copies and goes on accepting
//! until it decides to stop; nothing is closed by sending. Then, on the
//! same stream, each idle client (its socket and session) and each idle
//! server connection of the pools (its socket and backend key), until the
//! old process closes the stream (the `records` module).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

mod records;

pub(crate) use records::{ClientSink, Record, ServerState, SessionState};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage};

/// The most sockets one handover carries.
pub const MAX_SOCKETS: usize = 8;
/// The header of the one message a handover is.
const MAGIC: &str = "POOLER-SOCKETS 1";
/// Longest message (header and one line per socket).
const MAX_MESSAGE: usize = 16 * 1024;

/// Why a handover failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The control socket failed.
    #[error("the control socket failed: {0}")]
    Io(#[from] std::io::Error),
    /// What arrived is not a handover (or not all of one).
    #[error("not a socket handover: {0}")]
    Malformed(&'static str),
    /// More sockets than [`MAX_SOCKETS`].
    #[error("at most {MAX_SOCKETS} sockets are handed over at once")]
    TooMany,
}

/// One socket in a set.
#[derive(Debug)]
struct Entry {
    label: String,
    /// The file of a Unix socket.
    path: Option<PathBuf>,
    fd: OwnedFd,
}

/// Labelled listening sockets, to send to a successor or as received.
#[derive(Debug, Default)]
pub struct SocketSet {
    entries: Vec<Entry>,
}

impl SocketSet {
    /// Adds a copy of `socket` (a TCP listener) under `label`.
    pub fn push_tcp(&mut self, label: &str, socket: &impl AsFd) -> std::io::Result<()> {
        self.push(label, None, socket)
    }

    /// Adds a copy of `socket` (a Unix listener bound at `path`) under `label`.
    pub fn push_unix(&mut self, label: &str, path: PathBuf, socket: &impl AsFd) -> std::io::Result<()> {
        self.push(label, Some(path), socket)
    }

    fn push(&mut self, label: &str, path: Option<PathBuf>, socket: &impl AsFd) -> std::io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.entries.push(Entry { label: label.to_owned(), path, fd });
        Ok(())
    }

    /// The labels, in order (what a log line shows).
    pub fn labels(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.label.as_str()).collect()
    }

    /// Takes the TCP listener labelled `label`, non-blocking.
    pub fn take_tcp(&mut self, label: &str) -> std::io::Result<Option<std::net::TcpListener>> {
        let Some(i) = self.entries.iter().position(|e| e.label == label && e.path.is_none()) else {
            return Ok(None);
        };
        let l = std::net::TcpListener::from(self.entries.remove(i).fd);
        l.set_nonblocking(true)?;
        Ok(Some(l))
    }

    /// Takes the Unix listener labelled `label` and its path, non-blocking.
    pub fn take_unix(&mut self, label: &str) -> std::io::Result<Option<(std::os::unix::net::UnixListener, PathBuf)>> {
        let Some(i) = self.entries.iter().position(|e| e.label == label && e.path.is_some()) else {
            return Ok(None);
        };
        let e = self.entries.remove(i);
        let l = std::os::unix::net::UnixListener::from(e.fd);
        l.set_nonblocking(true)?;
        Ok(Some((l, e.path.unwrap_or_default())))
    }

    /// Sends the set on `stream` (blocking), as one message.
    pub fn send(&self, stream: &UnixStream) -> Result<(), HandoverError> {
        if self.entries.len() > MAX_SOCKETS {
            return Err(HandoverError::TooMany);
        }
        let mut text = format!("{MAGIC} {}\n", self.entries.len());
        for e in &self.entries {
            let path = e.path.as_ref().map_or("-".into(), |p| p.display().to_string());
            text.push_str(&format!("{}\t{path}\n", e.label));
        }
        if text.len() > MAX_MESSAGE || text.bytes().filter(|&b| b == b'\t').count() != self.entries.len() {
            return Err(HandoverError::Malformed("a label or path is too long or holds a tab"));
        }
        let fds: Vec<_> = self.entries.iter().map(|e| e.fd.as_fd()).collect();
        if send_with_fds(stream, text.as_bytes(), &fds)? != text.len() {
            return Err(HandoverError::Malformed("the message was cut short"));
        }
        Ok(())
    }

    /// Receives a set sent by [`SocketSet::send`] on `stream` (blocking).
    /// Whatever does not check out is refused, and every descriptor that
    /// came with it is closed.
    pub fn receive(stream: &UnixStream) -> Result<SocketSet, HandoverError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (bytes, fds) = recv_with_fds(stream, &mut buf)?;
        parse(&buf[..bytes], fds)
    }
}

/// Sends `bytes` with `fds` as SCM_RIGHTS in one message; the bytes sent.
fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<usize, HandoverError> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_SOCKETS || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(HandoverError::TooMany);
    }
    let sent = rustix::net::sendmsg(stream, &[IoSlice::new(bytes)], &mut control, rustix::net::SendFlags::NOSIGNAL)
        .map_err(std::io::Error::from)?;
    Ok(sent)
}

/// Receives one message into `buf` with the descriptors that came with it
/// (at most [`MAX_SOCKETS`]; more is refused, and every one received is
/// closed with the error).
fn recv_with_fds(stream: &UnixStream, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), HandoverError> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(stream, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(HandoverError::TooMany);
    }
    Ok((got.bytes, fds))
}

/// The set a message describes, with the descriptors that came with it.
fn parse(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<SocketSet, HandoverError> {
    let text = std::str::from_utf8(bytes).map_err(|_| HandoverError::Malformed("not UTF-8"))?;
    let mut lines = text.lines();
    let count: usize = lines
        .next()
        .and_then(|h| h.strip_prefix(MAGIC))
        .and_then(|n| n.trim().parse().ok())
        .ok_or(HandoverError::Malformed("no header"))?;
    if count > MAX_SOCKETS {
        return Err(HandoverError::TooMany);
    }
    if count != fds.len() {
        return Err(HandoverError::Malformed("the descriptors do not match the header"));
    }
    let mut entries = Vec::with_capacity(count);
    for fd in fds {
        let line = lines.next().ok_or(HandoverError::Malformed("a socket line is missing"))?;
        let (label, path) = line.split_once('\t').ok_or(HandoverError::Malformed("a socket line lacks its tab"))?;
        if label.is_empty() {
            return Err(HandoverError::Malformed("a socket without a label"));
        }
        let path = (path != "-").then(|| PathBuf::from(path));
        entries.push(Entry { label: label.to_owned(), path, fd });
    }
    if lines.next().is_some() {
        return Err(HandoverError::Malformed("more lines than sockets"));
    }
    Ok(SocketSet { entries })
}

/// A connected socket received from the predecessor, as a stream of this
/// runtime: `kind` is `tcp` or `unix` (anything else is a Unix socket's
/// kind too: a record's kind is checked when it is parsed).
pub(crate) fn stream_from_fd(
    fd: OwnedFd,
    kind: &str,
) -> std::io::Result<(crate::transport::Stream, crate::transport::Peer)> {
    use crate::transport::{Peer, Stream};
    Ok(match kind {
        "tcp" => {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            let addr = s.peer_addr()?;
            let s = tokio::net::TcpStream::from_std(s)?;
            let _ = s.set_nodelay(true);
            (Stream::from(s), Peer::Tcp(addr))
        }
        _ => {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            let s = tokio::net::UnixStream::from_std(s)?;
            let uid = s.peer_cred().ok().map(|c| c.uid());
            (Stream::from(s), Peer::Unix { uid })
        }
    })
}

/// For the fuzz target: reads `bytes` as a handover message without
/// descriptors; whether it checks out.
pub(crate) fn fuzz_parse(bytes: &[u8]) -> bool {
    parse(bytes, Vec::new()).is_ok() | records::parse_record(bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_cross_a_socket_pair_and_still_accept_on_the_other_side() {
        let (a, b) = UnixStream::pair().unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("pooler-upgrade-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut set = SocketSet::default();
        set.push_tcp("clients", &tcp).unwrap();
        set.push_unix("socket", path.clone(), &unix).unwrap();
        set.push_tcp("metrics", &tcp).unwrap();
        set.send(&a).unwrap();
        drop((tcp, unix));
        let mut got = SocketSet::receive(&b).unwrap();
        assert_eq!(got.labels(), ["clients", "socket", "metrics"]);
        let (unix, p) = got.take_unix("socket").unwrap().unwrap();
        assert_eq!(p, path);
        let tcp = got.take_tcp("clients").unwrap().unwrap();
        assert!(got.take_tcp("clients").unwrap().is_none(), "taken once");
        assert!(got.take_unix("metrics").unwrap().is_none(), "a TCP socket is not a Unix one");
        // The received sockets are the very ones bound on the other side.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_nonblocking(false).unwrap();
        tcp.accept().unwrap();
        let _u = UnixStream::connect(&path).unwrap();
        unix.set_nonblocking(false).unwrap();
        unix.accept().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_message_that_does_not_check_out_is_refused() {
        for bad in [
            &b""[..],
            b"HELLO\n",
            b"POOLER-SOCKETS 1 x\n",
            b"POOLER-SOCKETS 1 9\n",
            b"POOLER-SOCKETS 1 1\n",
            b"POOLER-SOCKETS 1 0\nextra\tline\n",
            b"\xff\xfe",
        ] {
            assert!(!fuzz_parse(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(fuzz_parse(b"POOLER-SOCKETS 1 0\n"));
        // A sender that sends no descriptors with its header: refused.
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"POOLER-SOCKETS 1 1\nclients\t-\n").unwrap();
        assert!(matches!(SocketSet::receive(&b), Err(HandoverError::Malformed(_))));
    }
}
