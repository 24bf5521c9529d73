//! What follows the listening sockets on the control stream: one record
//! at a time, each with the socket it describes (SCM_RIGHTS), until the old
//! process closes the stream. A record is an idle client with its session
//! ([`SessionState`]) or an idle server connection ([`ServerState`]).
//! Framing: a 4-byte length sent with the socket in one message, then the
//! record as TOML (binary fields in base64).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::{recv_with_fds, send_with_fds, HandoverError};

/// One thing handed over with its socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Record {
    /// An idle client and its session.
    Client(SessionState),
    /// An idle server connection from a pool.
    Server(ServerState),
}

/// An idle client's session, as handed to a successor with its socket: who
/// it is, what it was told at login, what it changed since, its prepared
/// statements (names and texts, prepared again lazily on the successor's
/// connections) and its cancel key (so a cancel sent later still reaches
/// it). TOML on the wire; binary fields in base64.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionState {
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) application_name: String,
    /// `tcp` or `unix`: what the socket is.
    pub(crate) socket: String,
    /// The client's address (`tcp`), or its uid (`unix`, empty if unknown).
    pub(crate) peer: String,
    pub(crate) cancel_pid: i32,
    pub(crate) cancel_secret: i32,
    /// The ParameterStatus values the client was sent.
    pub(crate) params: Vec<(String, String)>,
    /// Parameters it set (SET), with their values.
    pub(crate) extra: Vec<(String, String)>,
    /// Parameters changed since, to restore on its next connection.
    pub(crate) dirty: Vec<String>,
    /// Prepared statements: the client's name and the Parse body, base64.
    pub(crate) statements: Vec<(String, String)>,
    /// The SCRAM ClientKey the client proved, base64 (empty: none).
    pub(crate) client_key: String,
}

/// An idle server connection of a pool, at ReadyForQuery with nothing
/// pending: whose it is and what the server told it. The successor resets
/// it (`DISCARD ALL`) before lending it, so that neither prepared statements
/// nor settings of the old process's clients carry over.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServerState {
    /// `tcp` or `unix`: what the socket is.
    pub(crate) socket: String,
    /// The node's address as the old process knew it: the successor puts
    /// the connection in the pool of the node with the same address.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) database: String,
    /// The server's BackendKeyData (for cancels).
    pub(crate) pid: i32,
    pub(crate) secret: i32,
    /// Parameters as the server reported them when the connection opened.
    pub(crate) initial_params: Vec<(String, String)>,
    /// How long ago it was opened, in milliseconds (its lifetime goes on).
    pub(crate) age_ms: u64,
}

/// Where a handing-over process sends its idle clients and server
/// connections: the control stream to the successor, one at a time.
#[derive(Debug)]
pub(crate) struct ClientSink {
    stream: std::sync::Mutex<UnixStream>,
}

impl ClientSink {
    pub(crate) fn new(stream: UnixStream) -> ClientSink {
        ClientSink { stream: std::sync::Mutex::new(stream) }
    }

    /// Sends one record (blocking; call from a blocking thread).
    pub(crate) fn send(&self, record: &Record, fd: &OwnedFd) -> Result<(), HandoverError> {
        let stream = self.stream.lock().map_err(|_| HandoverError::Malformed("the control stream was poisoned"))?;
        record.send(&stream, fd)
    }
}

/// The longest record accepted.
const MAX_SESSION: usize = 16 << 20;

impl Record {
    /// Sends the record and its socket `fd` on `stream` (blocking): the
    /// length and the socket in one message, then the record.
    pub(crate) fn send(&self, stream: &UnixStream, fd: &impl AsFd) -> Result<(), HandoverError> {
        let text = toml::to_string(self).map_err(|_| HandoverError::Malformed("the session does not encode"))?;
        if text.len() > MAX_SESSION {
            return Err(HandoverError::Malformed("the session record is too large"));
        }
        let len = (text.len() as u32).to_be_bytes();
        if send_with_fds(stream, &len, &[fd.as_fd()])? != len.len() {
            return Err(HandoverError::Malformed("the length was cut short"));
        }
        std::io::Write::write_all(&mut &*stream, text.as_bytes())?;
        Ok(())
    }

    /// Receives one record and its socket from `stream` (blocking); `None`
    /// at the end of the stream (the predecessor has handed over everything).
    pub(crate) fn receive(stream: &UnixStream) -> Result<Option<(Record, OwnedFd)>, HandoverError> {
        let mut len = [0u8; 4];
        let (got, mut fds) = recv_with_fds(stream, &mut len)?;
        if got == 0 && fds.is_empty() {
            return Ok(None);
        }
        let mut have = got;
        while have < len.len() {
            let n = std::io::Read::read(&mut &*stream, &mut len[have..])?;
            if n == 0 {
                return Err(HandoverError::Malformed("the stream ended inside a length"));
            }
            have += n;
        }
        let (Some(fd), true) = (fds.pop(), fds.is_empty()) else {
            return Err(HandoverError::Malformed("a session comes with exactly one socket"));
        };
        let size = u32::from_be_bytes(len) as usize;
        if size > MAX_SESSION {
            return Err(HandoverError::Malformed("the session record is too large"));
        }
        let mut text = vec![0u8; size];
        std::io::Read::read_exact(&mut &*stream, &mut text)?;
        let state = parse_record(&text).ok_or(HandoverError::Malformed("the record does not parse"))?;
        Ok(Some((state, fd)))
    }
}

/// A record from its text.
pub(crate) fn parse_record(text: &[u8]) -> Option<Record> {
    let r: Record = toml::from_str(std::str::from_utf8(text).ok()?).ok()?;
    let fine = match &r {
        Record::Client(s) => matches!(s.socket.as_str(), "tcp" | "unix") && !s.user.is_empty(),
        Record::Server(s) => {
            matches!(s.socket.as_str(), "tcp" | "unix")
                && !s.user.is_empty()
                && !s.database.is_empty()
                && !s.host.is_empty()
        }
    };
    fine.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        SessionState {
            user: "app".into(),
            database: "db".into(),
            application_name: "svc".into(),
            socket: "tcp".into(),
            peer: "127.0.0.1:5000".into(),
            cancel_pid: 4_000_001,
            cancel_secret: -7,
            params: vec![("TimeZone".into(), "UTC".into())],
            extra: vec![("search_path".into(), "a, \"b\"".into())],
            dirty: vec!["work_mem".into()],
            statements: vec![("czE=".into(), "U0VMRUNUIDEAAAA=".into())],
            client_key: String::new(),
        }
    }

    fn server() -> ServerState {
        ServerState {
            socket: "tcp".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            user: "app".into(),
            database: "db".into(),
            pid: 4242,
            secret: -1,
            initial_params: vec![("server_version".into(), "15.8".into())],
            age_ms: 1234,
        }
    }

    #[test]
    fn records_and_their_sockets_cross_a_socket_pair_in_order_and_the_end_is_seen() {
        let (a, b) = UnixStream::pair().unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Record::Client(state()).send(&a, &tcp).unwrap();
        Record::Server(server()).send(&a, &tcp).unwrap();
        drop(a);
        let (got, fd) = Record::receive(&b).unwrap().expect("one session");
        assert_eq!(got, Record::Client(state()));
        let l = std::net::TcpListener::from(fd);
        assert_eq!(l.local_addr().unwrap(), tcp.local_addr().unwrap(), "the very socket");
        let (got, _fd) = Record::receive(&b).unwrap().expect("one server connection");
        assert_eq!(got, Record::Server(server()));
        assert!(Record::receive(&b).unwrap().is_none(), "then the end");
    }

    #[test]
    fn a_record_that_does_not_check_out_is_refused() {
        let text = |r: Record| toml::to_string(&r).unwrap().into_bytes();
        assert!(parse_record(b"user = 1").is_none(), "no kind");
        assert!(parse_record(b"kind = \"other\"\nuser = \"a\"").is_none(), "an unknown kind");
        assert!(parse_record(&text(Record::Client(SessionState { socket: "x".into(), ..state() }))).is_none());
        assert!(parse_record(&text(Record::Server(ServerState { host: String::new(), ..server() }))).is_none());
        assert!(parse_record(&text(Record::Server(server()))).is_some());
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, &[0, 0, 0, 3, b'a', b'b', b'c']).unwrap();
        assert!(matches!(Record::receive(&b), Err(HandoverError::Malformed(_))), "no socket with it");
    }
}
