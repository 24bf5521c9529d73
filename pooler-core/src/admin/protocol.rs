//! The console's side of the wire protocol, without I/O: frames in, bytes
//! out, commands run through an [`Executor`]. Simple Query (several
//! commands per Query allowed) and the extended protocol (Parse, Bind,
//! Describe, Execute, Sync, Close, Flush), with PostgreSQL's error rules:
//! after an error in an extended batch, everything up to Sync is skipped.

use std::collections::HashMap;

use bytes::{Buf, BytesMut};

use super::command::{self, Command};
use super::table::{self, Formats, Table};
use crate::config::ConsoleRole;
use crate::control::ShutdownMode;
use crate::protocol::messages::split_cstr;
use crate::protocol::write::{self as w, Severity};
use crate::protocol::{Frame, TransactionStatus};

/// Most prepared statements and portals one console session may hold.
const MAX_NAMED: usize = 64;

/// Why a command failed: the ErrorResponse's SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl CommandError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> CommandError {
        CommandError { code, message: message.into() }
    }
}

/// What a command answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Rows (`SHOW`).
    Rows(Table),
    /// Done, nothing to show.
    Done,
    /// Done, with a notice for the operator (what a RELOAD changed).
    Notice(String),
}

/// Runs commands against the pooler (or a fake, in tests).
pub(crate) trait Executor {
    /// Runs `command` (already checked against the user's role).
    fn run(&self, command: &Command) -> impl std::future::Future<Output = Result<Answer, CommandError>> + Send;
}

/// A statement of the extended protocol: its commands, parsed at Parse.
#[derive(Debug, Clone)]
struct Statement {
    commands: Vec<Command>,
}

/// A portal: the statement's command, the result formats, and the rows
/// computed at Describe (so Execute returns what Describe described).
#[derive(Debug)]
struct Portal {
    command: Option<Command>,
    formats: Formats,
    described: Option<Table>,
}

/// One console session's protocol state.
#[derive(Debug)]
pub(crate) struct Console {
    user: String,
    role: ConsoleRole,
    statements: HashMap<Vec<u8>, Statement>,
    portals: HashMap<Vec<u8>, Portal>,
    /// An extended-protocol error: skip to Sync.
    failed: bool,
    /// A SHUTDOWN answered: the caller stops the pooler once the answer is out.
    pub(crate) shutdown: Option<ShutdownMode>,
}

/// What the caller does after a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read on.
    Continue,
    /// Flush what is queued (Sync, Flush, a simple Query answered).
    Flush,
    /// The client said goodbye (Terminate).
    Terminate,
}

/// A client sent something the console cannot go on from: a FATAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fatal {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Console {
    pub(crate) fn new(user: &str, role: ConsoleRole) -> Console {
        Console {
            user: user.to_owned(),
            role,
            statements: HashMap::new(),
            portals: HashMap::new(),
            failed: false,
            shutdown: None,
        }
    }

    /// Handles one client frame, appending the answers to `out`.
    pub(crate) async fn frame(&mut self, f: &Frame, out: &mut BytesMut, exec: &impl Executor) -> Result<Flow, Fatal> {
        let body = f.body();
        match f.tag() {
            b'Q' => {
                let text = cstr_text(body).map_err(protocol_violation)?;
                self.simple(text, out, exec).await;
                w::ready_for_query(out, TransactionStatus::Idle);
                Ok(Flow::Flush)
            }
            b'S' => {
                self.failed = false;
                self.portals.remove(&b""[..]);
                w::ready_for_query(out, TransactionStatus::Idle);
                Ok(Flow::Flush)
            }
            b'H' => Ok(Flow::Flush),
            b'X' => Ok(Flow::Terminate),
            b'P' | b'B' | b'D' | b'E' | b'C' if self.failed => Ok(Flow::Continue),
            b'P' => {
                if let Err(e) = self.parse(body) {
                    self.fail(out, &e);
                } else {
                    table::empty_message(out, b'1');
                }
                Ok(Flow::Continue)
            }
            b'B' => {
                match self.bind(body) {
                    Ok(()) => table::empty_message(out, b'2'),
                    Err(e) => self.fail(out, &e),
                }
                Ok(Flow::Continue)
            }
            b'D' => {
                if let Err(e) = self.describe(body, out, exec).await {
                    self.fail(out, &e);
                }
                Ok(Flow::Continue)
            }
            b'E' => {
                if let Err(e) = self.execute(body, out, exec).await {
                    self.fail(out, &e);
                }
                Ok(Flow::Continue)
            }
            b'C' => {
                let t = crate::protocol::messages::Target::parse(body).map_err(protocol_violation)?;
                match t.kind {
                    b'S' => self.statements.remove(t.name),
                    _ => self.portals.remove(t.name).map(|_| Statement { commands: Vec::new() }),
                };
                table::empty_message(out, b'3');
                Ok(Flow::Continue)
            }
            // COPY data outside COPY is ignored, as PostgreSQL does.
            b'd' | b'c' | b'f' => Ok(Flow::Continue),
            other => Err(Fatal { code: "08P01", message: format!("invalid frontend message type {other}") }),
        }
    }

    fn fail(&mut self, out: &mut BytesMut, e: &CommandError) {
        w::error_response(out, Severity::Error, e.code, &e.message);
        self.failed = true;
    }

    /// A simple Query: each command in turn; the first error ends the
    /// Query (as in PostgreSQL's implicit transaction of a multi-statement Query).
    async fn simple(&mut self, text: &str, out: &mut BytesMut, exec: &impl Executor) {
        let commands = match parse_text(text) {
            Ok(c) => c,
            Err(e) => return w::error_response(out, Severity::Error, e.code, &e.message),
        };
        if commands.is_empty() {
            return table::empty_message(out, b'I');
        }
        for c in &commands {
            match self.run(c, exec).await {
                Ok(answer) => {
                    if let Answer::Rows(t) = &answer {
                        table::row_description(out, t, &Formats::default());
                    }
                    self.complete(c, answer, out, &Formats::default());
                }
                Err(e) => return w::error_response(out, Severity::Error, e.code, &e.message),
            }
        }
    }

    /// Runs `c` if the user's role allows it.
    async fn run(&mut self, c: &Command, exec: &impl Executor) -> Result<Answer, CommandError> {
        if !c.is_show() && self.role != ConsoleRole::Admin {
            tracing::warn!(actor = %self.user, command = c.name(), "admin command refused: not an admin user");
            return Err(CommandError::new(
                "42501",
                format!(
                    "permission denied to run {}: user \"{}\" may only run SHOW commands (admin.stats_users)",
                    c.name(),
                    self.user
                ),
            ));
        }
        let answer = exec.run(c).await?;
        if let Command::Shutdown(mode) = c {
            self.shutdown = Some(*mode);
        }
        Ok(answer)
    }

    /// Writes an answer's rows (already described) and CommandComplete.
    fn complete(&self, c: &Command, answer: Answer, out: &mut BytesMut, formats: &Formats) {
        match answer {
            Answer::Rows(t) => {
                table::data_rows(out, &t, formats);
                table::command_complete(out, "SHOW");
            }
            Answer::Done => table::command_complete(out, c.name()),
            Answer::Notice(text) => {
                w::notice(out, &text);
                table::command_complete(out, c.name());
            }
        }
    }

    fn parse(&mut self, body: &[u8]) -> Result<(), CommandError> {
        let (name, rest) = split_cstr(body).map_err(bad_message)?;
        let (query, _types) = split_cstr(rest).map_err(bad_message)?;
        let text = std::str::from_utf8(query).map_err(|_| CommandError::new("22021", "invalid UTF-8 in query"))?;
        let commands = parse_text(text)?;
        if commands.len() > 1 {
            return Err(CommandError::new("42601", "cannot insert multiple commands into a prepared statement"));
        }
        if !name.is_empty() && self.statements.contains_key(name) {
            let shown = String::from_utf8_lossy(name);
            return Err(CommandError::new("42P05", format!("prepared statement \"{shown}\" already exists")));
        }
        if self.statements.len() >= MAX_NAMED && !self.statements.contains_key(name) {
            return Err(CommandError::new("53400", "too many prepared statements on the admin console"));
        }
        self.statements.insert(name.to_vec(), Statement { commands });
        Ok(())
    }

    fn bind(&mut self, body: &[u8]) -> Result<(), CommandError> {
        let (portal, rest) = split_cstr(body).map_err(bad_message)?;
        let (statement, mut rest) = split_cstr(rest).map_err(bad_message)?;
        let Some(s) = self.statements.get(statement) else {
            let shown = String::from_utf8_lossy(statement);
            return Err(CommandError::new("26000", format!("prepared statement \"{shown}\" does not exist")));
        };
        let command = s.commands.first().cloned();
        // Parameter formats, then parameters (the console takes none).
        let n = take_i16(&mut rest)?;
        skip(&mut rest, 2 * n)?;
        let params = take_i16(&mut rest)?;
        if params > 0 {
            return Err(CommandError::new("08P01", "admin console commands take no parameters"));
        }
        let n = take_i16(&mut rest)?;
        let mut formats = Vec::with_capacity(n);
        for _ in 0..n {
            formats.push(take_i16_raw(&mut rest)? == 1);
        }
        if !portal.is_empty() && self.portals.len() >= MAX_NAMED && !self.portals.contains_key(portal) {
            return Err(CommandError::new("53400", "too many portals on the admin console"));
        }
        self.portals.insert(portal.to_vec(), Portal { command, formats: Formats(formats), described: None });
        Ok(())
    }

    async fn describe(&mut self, body: &[u8], out: &mut BytesMut, exec: &impl Executor) -> Result<(), CommandError> {
        let t = crate::protocol::messages::Target::parse(body).map_err(bad_message)?;
        if t.kind == b'S' {
            let Some(s) = self.statements.get(t.name) else {
                let shown = String::from_utf8_lossy(t.name);
                return Err(CommandError::new("26000", format!("prepared statement \"{shown}\" does not exist")));
            };
            table::no_parameters(out);
            match s.commands.first() {
                // The columns of a SHOW do not depend on its rows: a look
                // now gives them (SHOW is allowed to every console user).
                Some(c @ Command::Show(_)) => match exec.run(c).await? {
                    Answer::Rows(t) => table::row_description(out, &t, &Formats::default()),
                    Answer::Done | Answer::Notice(_) => table::empty_message(out, b'n'),
                },
                _ => table::empty_message(out, b'n'),
            }
            return Ok(());
        }
        let Some(p) = self.portals.get_mut(t.name) else {
            let shown = String::from_utf8_lossy(t.name);
            return Err(CommandError::new("34000", format!("portal \"{shown}\" does not exist")));
        };
        match &p.command {
            Some(c @ Command::Show(_)) => {
                if let Answer::Rows(t) = exec.run(c).await? {
                    table::row_description(out, &t, &p.formats);
                    p.described = Some(t);
                }
            }
            _ => table::empty_message(out, b'n'),
        }
        Ok(())
    }

    async fn execute(&mut self, body: &[u8], out: &mut BytesMut, exec: &impl Executor) -> Result<(), CommandError> {
        let (name, _max_rows) = split_cstr(body).map_err(bad_message)?;
        let Some(p) = self.portals.get_mut(name) else {
            let shown = String::from_utf8_lossy(name);
            return Err(CommandError::new("34000", format!("portal \"{shown}\" does not exist")));
        };
        let Some(c) = p.command.clone() else {
            table::empty_message(out, b'I');
            return Ok(());
        };
        let formats = p.formats.clone();
        // A portal runs once; rows described are the rows returned.
        let answer = match p.described.take() {
            Some(t) => Answer::Rows(t),
            None => self.run(&c, exec).await?,
        };
        self.complete(&c, answer, out, &formats);
        Ok(())
    }
}

fn parse_text(text: &str) -> Result<Vec<Command>, CommandError> {
    if text.len() > command::MAX_COMMAND {
        return Err(CommandError::new("54000", "admin command too long"));
    }
    command::parse(text).map_err(|e| CommandError::new("42601", e.to_string()))
}

fn cstr_text(body: &[u8]) -> Result<&str, &'static str> {
    let (text, _) = split_cstr(body).map_err(|_| "Query without a terminating NUL")?;
    std::str::from_utf8(text).map_err(|_| "invalid UTF-8 in Query")
}

fn protocol_violation(e: impl std::fmt::Display) -> Fatal {
    Fatal { code: "08P01", message: format!("invalid message: {e}") }
}

fn bad_message(e: crate::protocol::ProtocolError) -> CommandError {
    CommandError::new("08P01", format!("invalid message: {e}"))
}

fn take_i16_raw(b: &mut &[u8]) -> Result<i16, CommandError> {
    if b.len() < 2 {
        return Err(CommandError::new("08P01", "invalid message: Bind too short"));
    }
    Ok(b.get_i16())
}

fn take_i16(b: &mut &[u8]) -> Result<usize, CommandError> {
    usize::try_from(take_i16_raw(b)?).map_err(|_| CommandError::new("08P01", "invalid message: negative count in Bind"))
}

fn skip(b: &mut &[u8], n: usize) -> Result<(), CommandError> {
    if b.len() < n {
        return Err(CommandError::new("08P01", "invalid message: Bind too short"));
    }
    b.advance(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::table::Kind;
    use bytes::BufMut;
    use std::sync::Mutex;

    /// Answers SHOW VERSION with one row and records every command run.
    #[derive(Default)]
    struct Fake(Mutex<Vec<Command>>);

    impl Executor for Fake {
        async fn run(&self, c: &Command) -> Result<Answer, CommandError> {
            self.0.lock().unwrap().push(c.clone());
            match c {
                Command::Show(_) => {
                    let mut t = Table::new(&[("version", Kind::Text), ("n", Kind::Int)]);
                    t.push(vec!["x".into(), 5i64.into()]);
                    Ok(Answer::Rows(t))
                }
                Command::Pause(_) => Err(CommandError::new("0A000", "PAUSE is not available yet")),
                _ => Ok(Answer::Done),
            }
        }
    }

    fn frame(tag: u8, body: &[u8]) -> Frame {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_u32(body.len() as u32 + 4);
        b.put_slice(body);
        crate::protocol::split_frame(&mut b, 1 << 20).unwrap().unwrap()
    }

    fn tags(out: &[u8]) -> String {
        let mut b = out;
        let mut s = String::new();
        while b.len() >= 5 {
            s.push(b[0] as char);
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            b = &b[1 + len..];
        }
        s
    }

    fn run(console: &mut Console, frames: &[Frame], exec: &Fake) -> BytesMut {
        let mut out = BytesMut::new();
        futures_lite(async {
            for f in frames {
                console.frame(f, &mut out, exec).await.unwrap();
            }
        });
        out
    }

    /// Runs a future that never waits (the fake executor does not).
    fn futures_lite(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn a_simple_query_gets_rows_then_ready() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Stats);
        let out = run(&mut c, &[frame(b'Q', b"SHOW VERSION; SHOW POOLS\0")], &exec);
        assert_eq!(tags(&out), "TDCTDCZ");
        assert_eq!(exec.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_stats_user_is_refused_every_action_and_nothing_runs() {
        let exec = Fake::default();
        let mut c = Console::new("grafana", ConsoleRole::Stats);
        for q in ["KILL_CLIENT 1", "SHUTDOWN", "RECONNECT", "DISABLE app", "DETACH NODE 1", "SET a = b"] {
            let out = run(&mut c, &[frame(b'Q', format!("{q}\0").as_bytes())], &exec);
            assert_eq!(tags(&out), "EZ", "{q}");
            assert!(out.windows(5).any(|w| w == b"42501"), "{q}");
        }
        assert!(exec.0.lock().unwrap().is_empty());
        assert_eq!(c.shutdown, None);
    }

    #[test]
    fn an_admin_shutdown_is_answered_before_it_happens() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Admin);
        let out = run(&mut c, &[frame(b'Q', b"SHUTDOWN WAIT_FOR_CLIENTS\0")], &exec);
        assert_eq!(tags(&out), "CZ");
        assert_eq!(c.shutdown, Some(ShutdownMode::WaitForClients));
    }

    #[test]
    fn errors_and_empty_queries_are_answered_as_postgresql_does() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Admin);
        assert_eq!(tags(&run(&mut c, &[frame(b'Q', b"\0")], &exec)), "IZ");
        let out = run(&mut c, &[frame(b'Q', b"SELECT 1\0")], &exec);
        assert_eq!(tags(&out), "EZ");
        assert!(out.windows(5).any(|w| w == b"42601"));
        // The first failing command ends the Query.
        assert_eq!(tags(&run(&mut c, &[frame(b'Q', b"PAUSE; SHOW POOLS\0")], &exec)), "EZ");
    }

    fn bind(portal: &str, statement: &str, formats: &[i16]) -> Frame {
        let mut b = BytesMut::new();
        b.put_slice(portal.as_bytes());
        b.put_u8(0);
        b.put_slice(statement.as_bytes());
        b.put_u8(0);
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(formats.len() as i16);
        for f in formats {
            b.put_i16(*f);
        }
        frame(b'B', &b)
    }

    #[test]
    fn the_extended_protocol_describes_and_executes_in_the_formats_asked_for() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Stats);
        let out = run(
            &mut c,
            &[
                frame(b'P', b"s1\0SHOW VERSION\0\0\0"),
                frame(b'D', b"Ss1\0"),
                frame(b'S', b""),
                bind("", "s1", &[1]),
                frame(b'E', b"\0\0\0\0\0"),
                frame(b'S', b""),
            ],
            &exec,
        );
        assert_eq!(tags(&out), "1tTZ2DCZ");
        // The binary int8: length 8 then 5.
        assert!(out.windows(12).any(|w| w == [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5]));
    }

    #[test]
    fn after_an_extended_error_everything_up_to_sync_is_skipped() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Admin);
        let out = run(
            &mut c,
            &[
                frame(b'P', b"\0NONSENSE\0\0\0"),
                bind("", "", &[]),
                frame(b'E', b"\0\0\0\0\0"),
                frame(b'S', b""),
                frame(b'P', b"\0SHOW STATE\0\0\0"),
                bind("", "", &[]),
                frame(b'D', b"P\0"),
                frame(b'E', b"\0\0\0\0\0"),
                frame(b'S', b""),
            ],
            &exec,
        );
        assert_eq!(tags(&out), "EZ12TDCZ");
        // Described once, run once.
        assert_eq!(exec.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn malformed_extended_messages_get_errors_not_panics() {
        let exec = Fake::default();
        let mut c = Console::new("ops", ConsoleRole::Admin);
        for f in [frame(b'P', b"no-nul"), frame(b'B', b"\0\0\xff"), frame(b'D', b"X\0"), frame(b'E', b"nope\0\0\0\0\0")]
        {
            let out = run(&mut c, &[f, frame(b'S', b"")], &exec);
            assert!(tags(&out).starts_with('E'), "{:?}", tags(&out));
        }
        let mut out = BytesMut::new();
        futures_lite(async {
            assert!(c.frame(&frame(b'p', b"x\0"), &mut out, &exec).await.is_err());
            assert!(c.frame(&frame(b'Q', b"no nul"), &mut out, &exec).await.is_err());
        });
    }
}
