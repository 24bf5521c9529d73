//! The console's command language: text in, [`Command`] out. No I/O.
//!
//! Words are case-insensitive, a statement may end with `;`, and one Query
//! may hold several statements (`SHOW STATS; SHOW POOLS`). Names may be
//! bare words or double-quoted; `SET` values may be single-quoted.

use crate::control::ShutdownMode;

/// What `SHOW` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    Help,
    Pools,
    Clients,
    Servers,
    Stats,
    StatsTotals,
    StatsAverages,
    Databases,
    Users,
    Config,
    Lists,
    Mem,
    Version,
    State,
    PreparedStatements,
    Nodes,
    PoolNodes,
    PoolProcesses,
    Ha,
    HaViews,
}

impl Show {
    /// Every view, with the word that names it.
    pub(crate) const ALL: &'static [(&'static str, Show)] = &[
        ("help", Show::Help),
        ("pools", Show::Pools),
        ("clients", Show::Clients),
        ("servers", Show::Servers),
        ("stats", Show::Stats),
        ("stats_totals", Show::StatsTotals),
        ("stats_averages", Show::StatsAverages),
        ("databases", Show::Databases),
        ("users", Show::Users),
        ("config", Show::Config),
        ("lists", Show::Lists),
        ("mem", Show::Mem),
        ("version", Show::Version),
        ("state", Show::State),
        ("prepared_statements", Show::PreparedStatements),
        ("nodes", Show::Nodes),
        ("pool_nodes", Show::PoolNodes),
        ("pool_processes", Show::PoolProcesses),
        ("ha", Show::Ha),
        ("ha_views", Show::HaViews),
    ];
}

/// One console command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Suspend,
    Disable(String),
    Enable(String),
    Reconnect(Option<String>),
    Kill(String),
    KillClient(u64),
    WaitClose(Option<String>),
    Reload,
    Shutdown(ShutdownMode),
    Set { key: String, value: String },
    AttachNode(usize),
    DetachNode(usize),
    PromoteNode { node: usize, switchover: bool },
    RecoverNode(usize),
}

impl Command {
    /// Only reads: stats users may run it.
    pub(crate) fn is_show(&self) -> bool {
        matches!(self, Command::Show(_))
    }

    /// The command's name, as its CommandComplete tag and in logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Suspend => "SUSPEND",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Reload => "RELOAD",
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Set { .. } => "SET",
            Command::AttachNode(_) => "ATTACH NODE",
            Command::DetachNode(_) => "DETACH NODE",
            Command::PromoteNode { .. } => "PROMOTE NODE",
            Command::RecoverNode(_) => "RECOVER NODE",
        }
    }
}

/// Why a statement is not a command (a syntax error, 42601).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Nothing the console knows.
    #[error("unrecognized admin command {0:?}; SHOW HELP lists the commands")]
    Unknown(String),
    /// `SHOW` of something the console does not show.
    #[error("unrecognized SHOW {0:?}; SHOW HELP lists what can be shown")]
    UnknownShow(String),
    /// Known command, wrong arguments.
    #[error("{command}: {problem}")]
    Usage { command: &'static str, problem: &'static str },
    /// An unterminated quote.
    #[error("unterminated quoted string")]
    Unterminated,
    /// A character that has no place in a console command.
    #[error("syntax error at or near {0:?}")]
    Unexpected(char),
}

/// A token of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A bare word (case-insensitive) or a double-quoted name (exact).
    Word {
        text: String,
        quoted: bool,
    },
    /// A single-quoted string.
    Literal(String),
    Equals,
    Semicolon,
}

/// Longest command text the console reads (anything longer is refused
/// before it is tokenized).
pub(crate) const MAX_COMMAND: usize = 64 * 1024;

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '-' if text_starts(&chars, "--") => {
                // A comment to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '\'' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(ParseError::Unterminated),
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                                s.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(other) => s.push(other),
                    }
                }
                out.push(if c == '"' { Token::Word { text: s, quoted: true } } else { Token::Literal(s) });
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/') => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/') {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word { text: s, quoted: false });
            }
            other => return Err(ParseError::Unexpected(other)),
        }
    }
    Ok(out)
}

fn text_starts(chars: &std::iter::Peekable<std::str::Chars<'_>>, prefix: &str) -> bool {
    chars.clone().take(prefix.len()).eq(prefix.chars())
}

/// Splits a Query's text into its commands. An empty text gives none.
pub(crate) fn parse(text: &str) -> Result<Vec<Command>, ParseError> {
    let tokens = tokenize(text)?;
    let mut commands = Vec::new();
    for statement in tokens.split(|t| *t == Token::Semicolon) {
        if !statement.is_empty() {
            commands.push(parse_one(statement)?);
        }
    }
    Ok(commands)
}

fn keyword(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word { text, quoted: false }) => Some(text.to_ascii_lowercase()),
        _ => None,
    }
}

/// A database or other name: a bare word (as written) or a quoted one.
fn name(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word { text, .. }) => Some(text.clone()),
        _ => None,
    }
}

fn parse_one(tokens: &[Token]) -> Result<Command, ParseError> {
    let first = keyword(tokens.first()).ok_or_else(|| ParseError::Unknown(describe(tokens)))?;
    let rest = &tokens[1..];
    let usage = |command, problem| ParseError::Usage { command, problem };
    // Commands with an optional database name.
    let optional_db = |command: &'static str| -> Result<Option<String>, ParseError> {
        match rest {
            [] => Ok(None),
            [t] => name(Some(t)).map(Some).ok_or(usage(command, "expects at most a database name")),
            _ => Err(usage(command, "expects at most a database name")),
        }
    };
    let db = |command: &'static str| -> Result<String, ParseError> {
        match rest {
            [t] => name(Some(t)).ok_or(usage(command, "expects a database name")),
            _ => Err(usage(command, "expects a database name")),
        }
    };
    let node = |command: &'static str, args: &[Token]| -> Result<usize, ParseError> {
        match args.first() {
            Some(Token::Word { text, quoted: false }) => {
                text.parse().map_err(|_| usage(command, "expects a node number (its index in [[nodes]])"))
            }
            _ => Err(usage(command, "expects a node number (its index in [[nodes]])")),
        }
    };
    match first.as_str() {
        "show" => {
            let what = match rest {
                [t] => keyword(Some(t)).ok_or(usage("SHOW", "expects what to show, e.g. SHOW POOLS"))?,
                _ => return Err(usage("SHOW", "expects one word, e.g. SHOW POOLS")),
            };
            Show::ALL
                .iter()
                .find(|(w, _)| *w == what)
                .map(|(_, s)| Command::Show(*s))
                .ok_or(ParseError::UnknownShow(what))
        }
        "pause" => optional_db("PAUSE").map(Command::Pause),
        "resume" => optional_db("RESUME").map(Command::Resume),
        "reconnect" => optional_db("RECONNECT").map(Command::Reconnect),
        "wait_close" => optional_db("WAIT_CLOSE").map(Command::WaitClose),
        "disable" => db("DISABLE").map(Command::Disable),
        "enable" => db("ENABLE").map(Command::Enable),
        "kill" => db("KILL").map(Command::Kill),
        "suspend" if rest.is_empty() => Ok(Command::Suspend),
        "reload" if rest.is_empty() => Ok(Command::Reload),
        "kill_client" => match rest {
            [Token::Word { text, quoted: false }] => text
                .parse()
                .map(Command::KillClient)
                .map_err(|_| usage("KILL_CLIENT", "expects a client id (SHOW CLIENTS)")),
            _ => Err(usage("KILL_CLIENT", "expects a client id (SHOW CLIENTS)")),
        },
        "shutdown" => match keyword(rest.first()).as_deref() {
            None if rest.is_empty() => Ok(Command::Shutdown(ShutdownMode::Immediate)),
            Some("wait_for_servers") if rest.len() == 1 => Ok(Command::Shutdown(ShutdownMode::WaitForServers)),
            Some("wait_for_clients") if rest.len() == 1 => Ok(Command::Shutdown(ShutdownMode::WaitForClients)),
            _ => Err(usage("SHUTDOWN", "expects nothing, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS")),
        },
        "set" => match rest {
            [k, Token::Equals, v] | [k, v] if !matches!(v, Token::Equals) => {
                let key = name(Some(k)).ok_or(usage("SET", "expects SET key = value"))?.to_ascii_lowercase();
                let value = match v {
                    Token::Literal(s) | Token::Word { text: s, .. } => s.clone(),
                    _ => return Err(usage("SET", "expects SET key = value")),
                };
                Ok(Command::Set { key, value })
            }
            _ => Err(usage("SET", "expects SET key = value")),
        },
        "attach" | "detach" | "promote" | "recover" => {
            let command = match first.as_str() {
                "attach" => "ATTACH NODE",
                "detach" => "DETACH NODE",
                "promote" => "PROMOTE NODE",
                _ => "RECOVER NODE",
            };
            if keyword(rest.first()).as_deref() != Some("node") {
                return Err(usage(command, "expects NODE and a node number"));
            }
            let n = node(command, &rest[1..])?;
            let tail = &rest[2..];
            match (first.as_str(), tail) {
                ("attach", []) => Ok(Command::AttachNode(n)),
                ("detach", []) => Ok(Command::DetachNode(n)),
                ("recover", []) => Ok(Command::RecoverNode(n)),
                ("promote", []) => Ok(Command::PromoteNode { node: n, switchover: false }),
                ("promote", [t]) if keyword(Some(t)).as_deref() == Some("switchover") => {
                    Ok(Command::PromoteNode { node: n, switchover: true })
                }
                _ => Err(usage(command, "has trailing words")),
            }
        }
        _ => Err(ParseError::Unknown(describe(tokens))),
    }
}

fn describe(tokens: &[Token]) -> String {
    let mut s = String::new();
    for t in tokens.iter().take(4) {
        if !s.is_empty() {
            s.push(' ');
        }
        match t {
            Token::Word { text, .. } | Token::Literal(text) => s.push_str(text),
            Token::Equals => s.push('='),
            Token::Semicolon => s.push(';'),
        }
    }
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_commands_are_case_insensitive_and_may_end_with_a_semicolon() {
        assert_eq!(parse("show pools").unwrap(), vec![Command::Show(Show::Pools)]);
        assert_eq!(parse("SHOW Stats_Totals;").unwrap(), vec![Command::Show(Show::StatsTotals)]);
        assert_eq!(parse("  SHOW pool_nodes ;  ").unwrap(), vec![Command::Show(Show::PoolNodes)]);
        for (word, show) in Show::ALL {
            assert_eq!(parse(&format!("SHOW {word}")).unwrap(), vec![Command::Show(*show)], "{word}");
        }
    }

    #[test]
    fn one_query_may_hold_several_commands() {
        assert_eq!(
            parse("show stats; show pools;").unwrap(),
            vec![Command::Show(Show::Stats), Command::Show(Show::Pools)]
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" ; -- nothing\n").unwrap().is_empty());
    }

    #[test]
    fn actions_take_their_arguments() {
        assert_eq!(parse("PAUSE").unwrap(), vec![Command::Pause(None)]);
        assert_eq!(parse("pause app").unwrap(), vec![Command::Pause(Some("app".into()))]);
        assert_eq!(parse("DISABLE \"My Db\"").unwrap(), vec![Command::Disable("My Db".into())]);
        assert_eq!(parse("KILL_CLIENT 42").unwrap(), vec![Command::KillClient(42)]);
        assert_eq!(parse("shutdown wait_for_clients").unwrap(), vec![Command::Shutdown(ShutdownMode::WaitForClients)]);
        assert_eq!(parse("SHUTDOWN").unwrap(), vec![Command::Shutdown(ShutdownMode::Immediate)]);
        assert_eq!(parse("attach node 2").unwrap(), vec![Command::AttachNode(2)]);
        assert_eq!(
            parse("PROMOTE NODE 1 SWITCHOVER").unwrap(),
            vec![Command::PromoteNode { node: 1, switchover: true }]
        );
        assert_eq!(
            parse("SET server.log_connections = 'off'").unwrap(),
            vec![Command::Set { key: "server.log_connections".into(), value: "off".into() }]
        );
        assert_eq!(parse("set a b").unwrap(), vec![Command::Set { key: "a".into(), value: "b".into() }]);
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert!(matches!(parse("SHOW"), Err(ParseError::Usage { command: "SHOW", .. })));
        assert!(matches!(parse("SHOW everything"), Err(ParseError::UnknownShow(w)) if w == "everything"));
        assert!(matches!(parse("SELECT 1"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse("KILL_CLIENT x"), Err(ParseError::Usage { command: "KILL_CLIENT", .. })));
        assert!(matches!(parse("KILL_CLIENT -1"), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("KILL"), Err(ParseError::Usage { command: "KILL", .. })));
        assert!(matches!(parse("DETACH NODE"), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("DETACH 1"), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("ATTACH NODE 1 now"), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("SHUTDOWN NOW"), Err(ParseError::Usage { .. })));
        assert!(matches!(parse("SET a ="), Err(ParseError::Usage { .. })));
        assert_eq!(parse("SET a = 'x"), Err(ParseError::Unterminated));
        assert_eq!(parse("SHOW (pools)"), Err(ParseError::Unexpected('(')));
    }

    #[test]
    fn only_show_is_a_read() {
        assert!(Command::Show(Show::Clients).is_show());
        for c in ["PAUSE", "RESUME", "SUSPEND", "RELOAD", "KILL app", "KILL_CLIENT 1", "SHUTDOWN", "SET a = 1"] {
            assert!(!parse(c).unwrap()[0].is_show(), "{c}");
        }
    }
}
