//! Host-based access rules: a file in `pg_hba.conf` form, parsed once, and
//! the first-match decision for each client (which method, or refused).
//!
//! Pure logic: the only I/O is reading the file and its `@file` includes
//! ([`HbaRules::load`]). What the pooler cannot know by itself (role
//! membership for `+group` and `samerole`) is asked of a [`Membership`]
//! the caller supplies; an answer it cannot give makes the decision
//! [`Unresolved`], never a silent match or miss.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod parse;
#[cfg(test)]
mod tests;

/// Largest hba file (or `@file` include) read, in bytes.
pub const MAX_FILE_SIZE: u64 = 16 << 20;
/// Deepest nesting of `@file` includes (an include that includes itself
/// stops here with an error instead of looping).
pub const MAX_INCLUDE_DEPTH: usize = 10;
/// Most names in one database or user list after `@file` expansion.
pub const MAX_LIST_NAMES: usize = 100_000;

/// Why an hba file could not be used. Every variant but `Read` names the
/// file and line as `file:line: problem`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HbaError {
    /// The file (or an `@file` include) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed or asks for something the pooler does not offer.
    #[error("{origin}:{line}: {problem}")]
    Line {
        /// The file (as given to [`HbaRules::load`] or [`HbaRules::parse`]).
        origin: String,
        /// 1-based line number (the first line of a continued record).
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// How a client reached the pooler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A Unix-domain socket (`local` lines).
    Local,
    /// TCP (`host*` lines), from `addr`, with or without TLS.
    Host {
        /// The client's address (an IPv4-mapped IPv6 address counts as IPv4).
        addr: IpAddr,
        /// True when the connection is TLS-encrypted.
        tls: bool,
    },
}

/// The client as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    /// How it connected.
    pub transport: Transport,
    /// The database it asked for.
    pub database: &'a str,
    /// The user name it gave.
    pub user: &'a str,
}

/// Authentication method of a matching line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HbaMethod {
    /// Let the client in without a password.
    Trust,
    /// Refuse the connection (28000, "pg_hba.conf rejects connection ...").
    Reject,
    /// MD5 challenge; a user with only a SCRAM secret is asked for SCRAM
    /// instead, as PostgreSQL does.
    Md5,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// Cleartext password (checked against the user's secret).
    Password,
    /// TLS client certificate (only on `hostssl` lines).
    Cert,
    /// The OS user of a Unix-socket peer (only on `local` lines).
    Peer,
}

impl HbaMethod {
    /// The method's keyword in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            HbaMethod::Trust => "trust",
            HbaMethod::Reject => "reject",
            HbaMethod::Md5 => "md5",
            HbaMethod::ScramSha256 => "scram-sha-256",
            HbaMethod::Password => "password",
            HbaMethod::Cert => "cert",
            HbaMethod::Peer => "peer",
        }
    }
}

/// `clientcert=` of a `hostssl` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCert {
    /// A client certificate signed by the CA is required.
    VerifyCa,
    /// As `VerifyCa`, and its common name must be the user.
    VerifyFull,
}

/// The options after the method that the pooler understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HbaOptions {
    /// What is demanded of the client certificate (`None`: nothing). A
    /// `cert` line always says `VerifyFull`. (`clientname=CN` is accepted,
    /// `clientname=DN` refused: the certificate's CN is the user.)
    pub clientcert: Option<ClientCert>,
}

/// What the first matching line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The line's method.
    pub method: HbaMethod,
    /// The line's number in the file.
    pub line: usize,
    /// The line's options.
    pub options: HbaOptions,
}

/// A decision needed a role membership the [`Membership`] could not tell:
/// the caller refuses the login (it cannot know whether the line matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The line whose `+role` (or `samerole`) could not be checked.
    pub line: usize,
    /// The role whose membership is unknown.
    pub role: String,
}

/// Answers "is `user` a member of `role`", directly or through other roles,
/// as PostgreSQL's `+role` and `samerole` ask. A role counts as a member of
/// itself. `None`: unknown (the decision is then [`Unresolved`]).
pub trait Membership {
    /// Whether `user` is a member of `role`; `None` when it cannot be told.
    fn is_member(&self, user: &str, role: &str) -> Option<bool>;
}

impl<F: Fn(&str, &str) -> Option<bool>> Membership for F {
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        self(user, role)
    }
}

/// The membership the pooler knows without asking a server: a role is a
/// member of itself; anything else is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfOnly;

impl Membership for SelfOnly {
    fn is_member(&self, user: &str, role: &str) -> Option<bool> {
        (user == role).then_some(true)
    }
}

/// The kind of a line (its first field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnType {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
    /// Never matches: the pooler offers no GSSAPI encryption.
    HostGssEnc,
    /// Matches every TCP connection: none is GSSAPI-encrypted.
    HostNoGssEnc,
}

/// One entry of a database list.
#[derive(Debug)]
pub(crate) enum DbMatch {
    All,
    SameUser,
    SameRole,
    /// Matches only replication connections, which the pooler refuses.
    Replication,
    Name(String),
    Regex(regex_lite::Regex),
}

/// One entry of a user list.
#[derive(Debug)]
pub(crate) enum UserMatch {
    All,
    Name(String),
    /// `+role`: members of the role.
    Member(String),
    Regex(regex_lite::Regex),
}

/// The address field of a `host*` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddrMatch {
    All,
    Net { addr: IpAddr, prefix: u8 },
}

/// One parsed line.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) line: usize,
    pub(crate) conn: ConnType,
    pub(crate) databases: Vec<DbMatch>,
    pub(crate) users: Vec<UserMatch>,
    /// `None` on `local` lines.
    pub(crate) addr: Option<AddrMatch>,
    pub(crate) method: HbaMethod,
    pub(crate) options: HbaOptions,
}

/// The rules of one hba file, in file order.
#[derive(Debug)]
pub struct HbaRules {
    origin: String,
    rules: Vec<Rule>,
}

impl HbaRules {
    /// Reads and parses `path`; `@file` includes are read relative to its
    /// directory. Errors name the file and line.
    pub fn load(path: &Path) -> Result<HbaRules, HbaError> {
        let text = read_limited(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        parse::parse(&text, &path.display().to_string(), &base, &read_limited)
    }

    /// Re-reads the file for a reload: a fresh set of rules the caller swaps
    /// in whole (clients already connected are not affected). On error the
    /// caller keeps the rules it has.
    pub fn reload(path: &Path) -> Result<HbaRules, HbaError> {
        HbaRules::load(path)
    }

    /// Parses `text`; `origin` names it in errors and, taken as a path,
    /// gives the directory `@file` includes are read from.
    pub fn parse(text: &str, origin: &str) -> Result<HbaRules, HbaError> {
        let base = Path::new(origin).parent().map(Path::to_path_buf).unwrap_or_default();
        parse::parse(text, origin, &base, &read_limited)
    }

    /// Parses `text` with includes read by `read` (tests and fuzzing).
    pub(crate) fn parse_with(
        text: &str,
        origin: &str,
        read: &dyn Fn(&Path) -> Result<String, HbaError>,
    ) -> Result<HbaRules, HbaError> {
        parse::parse(text, origin, &PathBuf::new(), read)
    }

    /// The file the rules came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of lines with a rule.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the file has no rule (every client is then refused).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some line names a `+role` or `samerole`: deciding may need
    /// role memberships from the server.
    pub fn needs_membership(&self) -> bool {
        self.rules.iter().any(|r| {
            r.databases.iter().any(|d| matches!(d, DbMatch::SameRole))
                || r.users.iter().any(|u| matches!(u, UserMatch::Member(_)))
        })
    }

    /// The first line matching `conn`, PostgreSQL's way: connection type,
    /// then database, then user, then address. `Ok(None)`: no line matches
    /// (refuse with [`no_entry_message`]). A matching `reject` line is
    /// returned like any other (refuse with [`rejects_message`]).
    pub fn decide(&self, conn: &Connection<'_>, members: &dyn Membership) -> Result<Option<Decision>, Unresolved> {
        for r in &self.rules {
            if !conn_matches(r.conn, conn.transport) {
                continue;
            }
            if let (Some(AddrMatch::Net { addr, prefix }), Transport::Host { addr: client, .. }) =
                (r.addr, conn.transport)
            {
                if !in_net(normalize(client), addr, prefix) {
                    continue;
                }
            }
            if !database_matches(r, conn, members)? || !user_matches(r, conn, members)? {
                continue;
            }
            return Ok(Some(Decision { method: r.method, line: r.line, options: r.options }));
        }
        Ok(None)
    }
}

fn conn_matches(kind: ConnType, t: Transport) -> bool {
    match (kind, t) {
        (ConnType::Local, Transport::Local) => true,
        (ConnType::Host | ConnType::HostNoGssEnc, Transport::Host { .. }) => true,
        (ConnType::HostSsl, Transport::Host { tls, .. }) => tls,
        (ConnType::HostNoSsl, Transport::Host { tls, .. }) => !tls,
        _ => false,
    }
}

fn database_matches(r: &Rule, c: &Connection<'_>, members: &dyn Membership) -> Result<bool, Unresolved> {
    for d in &r.databases {
        let hit = match d {
            DbMatch::All => true,
            DbMatch::SameUser => c.database == c.user,
            DbMatch::SameRole => member(members, r.line, c.user, c.database)?,
            DbMatch::Replication => false,
            DbMatch::Name(n) => n == c.database,
            DbMatch::Regex(re) => re.is_match(c.database),
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

fn user_matches(r: &Rule, c: &Connection<'_>, members: &dyn Membership) -> Result<bool, Unresolved> {
    for u in &r.users {
        let hit = match u {
            UserMatch::All => true,
            UserMatch::Name(n) => n == c.user,
            UserMatch::Member(role) => member(members, r.line, c.user, role)?,
            UserMatch::Regex(re) => re.is_match(c.user),
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

fn member(members: &dyn Membership, line: usize, user: &str, role: &str) -> Result<bool, Unresolved> {
    if user == role {
        return Ok(true);
    }
    members.is_member(user, role).ok_or_else(|| Unresolved { line, role: role.to_owned() })
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports for IPv4 clients) as the IPv4 address it is.
fn normalize(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    }
}

/// True when `a` is in `net`/`prefix` (families must agree).
pub(crate) fn in_net(a: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `host "…", user "…", database "…", no encryption` as PostgreSQL ends
/// its hba messages (`[local]` for a Unix socket).
fn who(c: &Connection<'_>) -> String {
    let (host, enc) = match c.transport {
        Transport::Local => ("[local]".to_owned(), "no encryption"),
        Transport::Host { addr, tls } => {
            (normalize(addr).to_string(), if tls { "SSL encryption" } else { "no encryption" })
        }
    };
    format!("host \"{host}\", user \"{}\", database \"{}\", {enc}", c.user, c.database)
}

/// SQLSTATE of both refusals (invalid_authorization_specification).
pub const REFUSAL_SQLSTATE: &str = "28000";

/// PostgreSQL's words when no line matches (SQLSTATE 28000):
/// `no pg_hba.conf entry for host "10.0.0.1", user "u", database "d", no encryption`.
pub fn no_entry_message(c: &Connection<'_>) -> String {
    format!("no pg_hba.conf entry for {}", who(c))
}

/// PostgreSQL's words when a `reject` line matches (SQLSTATE 28000):
/// `pg_hba.conf rejects connection for host "10.0.0.1", user "u", database "d", no encryption`.
pub fn rejects_message(c: &Connection<'_>) -> String {
    format!("pg_hba.conf rejects connection for {}", who(c))
}

/// Reads a file of at most [`MAX_FILE_SIZE`] bytes.
fn read_limited(path: &Path) -> Result<String, HbaError> {
    use std::io::Read;
    let err = |source| HbaError::Read { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    file.take(MAX_FILE_SIZE + 1).read_to_string(&mut text).map_err(err)?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_SIZE} bytes"),
        )));
    }
    Ok(text)
}
