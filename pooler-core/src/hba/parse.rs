//! The hba file's syntax: records (backslash-continued lines, `#` comments),
//! fields split by blanks, comma-separated lists, double quotes that take
//! away a keyword's meaning, `@file` includes; then each record's fields
//! checked and turned into a [`Rule`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{
    AddrMatch, ClientCert, ConnType, DbMatch, HbaError, HbaMethod, HbaOptions, HbaRules, Rule, UserMatch,
    MAX_INCLUDE_DEPTH, MAX_LIST_NAMES,
};

/// Longest regular expression accepted in a user or database field.
const MAX_REGEX_LEN: usize = 1000;

/// One word of a field, with whether any part of it was quoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) text: String,
    pub(super) quoted: bool,
}

impl Token {
    /// True for the unquoted keyword `k`.
    fn is(&self, k: &str) -> bool {
        !self.quoted && self.text == k
    }
}

/// A record: its first line's number and its fields (each a list).
#[derive(Debug)]
pub(super) struct Record {
    pub(super) line: usize,
    pub(super) fields: Vec<Vec<Token>>,
}

/// Splits `text` into records. Errors carry the record's first line.
pub(super) fn records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((i, first)) = lines.next() {
        // A backslash ending a line joins the next one to it, even inside
        // quotes or a comment; the backslash and the newline are dropped.
        let mut logical = first.strip_suffix('\r').unwrap_or(first).to_owned();
        while logical.ends_with('\\') {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.strip_suffix('\r').unwrap_or(next)),
                None => break,
            }
        }
        let fields = fields(&logical).map_err(|e| (i + 1, e))?;
        if !fields.is_empty() {
            out.push(Record { line: i + 1, fields });
        }
    }
    Ok(out)
}

/// The fields of one logical line.
fn fields(line: &str) -> Result<Vec<Vec<Token>>, String> {
    let mut fields = Vec::new();
    let mut field: Vec<Token> = Vec::new();
    let mut tok = String::new();
    let (mut in_tok, mut quoted, mut in_quote, mut after_comma) = (false, false, false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quote {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    tok.push('"');
                } else {
                    in_quote = false;
                }
            } else {
                tok.push(c);
            }
            continue;
        }
        match c {
            '#' => break,
            ' ' | '\t' | '\r' | '\x0b' | '\x0c' => {
                if in_tok {
                    field.push(Token { text: std::mem::take(&mut tok), quoted });
                    fields.push(std::mem::take(&mut field));
                    (in_tok, quoted) = (false, false);
                }
                // After a comma, blanks are allowed before the next item.
            }
            ',' => {
                if !in_tok {
                    return Err("empty item in a comma-separated list".into());
                }
                field.push(Token { text: std::mem::take(&mut tok), quoted });
                (in_tok, quoted, after_comma) = (false, false, true);
            }
            '"' => {
                (in_tok, quoted, in_quote, after_comma) = (true, true, true, false);
            }
            c => {
                tok.push(c);
                (in_tok, after_comma) = (true, false);
            }
        }
    }
    if in_quote {
        return Err("unterminated quoted string".into());
    }
    if in_tok {
        field.push(Token { text: tok, quoted });
        fields.push(field);
    } else if after_comma {
        return Err("a comma-separated list ends with a comma".into());
    }
    Ok(fields)
}

/// Reads an include for [`expand`].
type Reader<'a> = &'a dyn Fn(&Path) -> Result<String, HbaError>;

/// Parses a whole file.
pub(super) fn parse(text: &str, origin: &str, base: &Path, read: Reader<'_>) -> Result<HbaRules, HbaError> {
    let recs = records(text).map_err(|(line, problem)| HbaError::Line { origin: origin.to_owned(), line, problem })?;
    let mut rules = Vec::with_capacity(recs.len());
    for rec in recs {
        let err = |problem: String| HbaError::Line { origin: origin.to_owned(), line: rec.line, problem };
        let rule = rule(&rec, base, read).map_err(|e| match e {
            Problem::Here(p) => err(p),
            Problem::Include(e) => e,
        })?;
        rules.push(rule);
    }
    Ok(HbaRules { origin: origin.to_owned(), rules })
}

/// What went wrong with a record: on its own line, or in an include (whose
/// error names the include).
enum Problem {
    Here(String),
    Include(HbaError),
}

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem::Here(s)
    }
}

impl From<&str> for Problem {
    fn from(s: &str) -> Problem {
        Problem::Here(s.to_owned())
    }
}

/// The single value of a field that takes no list.
fn single<'t>(field: Option<&'t Vec<Token>>, what: &str) -> Result<&'t Token, Problem> {
    match field.map(Vec::as_slice) {
        Some([t]) => Ok(t),
        Some([]) | None => Err(format!("end of line before {what}").into()),
        Some(_) => Err(format!("multiple values specified for {what}").into()),
    }
}

fn rule(rec: &Record, base: &Path, read: Reader<'_>) -> Result<Rule, Problem> {
    let mut fields = rec.fields.iter();
    let kind = single(fields.next(), "connection type")?;
    let conn = match kind.text.as_str() {
        "local" => ConnType::Local,
        "host" => ConnType::Host,
        "hostssl" => ConnType::HostSsl,
        "hostnossl" => ConnType::HostNoSsl,
        "hostgssenc" => ConnType::HostGssEnc,
        "hostnogssenc" => ConnType::HostNoGssEnc,
        "include" | "include_if_exists" | "include_dir" => {
            return Err(format!("\"{}\" directives are not supported by the pooler", kind.text).into())
        }
        other => return Err(format!("invalid connection type \"{other}\"").into()),
    };
    let dbs = fields.next().ok_or("end of line before database specification")?;
    let databases = expand(dbs, base, read, 0)?.into_iter().map(db_match).collect::<Result<Vec<_>, _>>()?;
    let users = fields.next().ok_or("end of line before role specification")?;
    let users = expand(users, base, read, 0)?.into_iter().map(user_match).collect::<Result<Vec<_>, _>>()?;
    let addr = if conn == ConnType::Local {
        None
    } else {
        let a = single(fields.next(), "IP address specification")?;
        Some(address(a, &mut fields)?)
    };
    let m = single(fields.next(), "authentication method")?;
    let method = method(&m.text)?;
    match (method, conn) {
        (HbaMethod::Peer, c) if c != ConnType::Local => {
            return Err("peer authentication is only supported on local sockets".into())
        }
        (HbaMethod::Cert, c) if c != ConnType::HostSsl => {
            return Err("cert authentication is only supported on hostssl connections".into())
        }
        _ => {}
    }
    let mut options = HbaOptions::default();
    let mut clientname_set = false;
    for field in fields {
        for t in field {
            clientname_set |= option(&t.text, conn, method, &mut options)?;
        }
    }
    if method == HbaMethod::Cert {
        options.clientcert = Some(ClientCert::VerifyFull);
    }
    if clientname_set && options.clientcert != Some(ClientCert::VerifyFull) {
        return Err("clientname can only be configured for \"clientcert=verify-full\" or \"cert\" lines".into());
    }
    Ok(Rule { line: rec.line, conn, databases, users, addr, method, options })
}

/// Replaces each unquoted `@file` of a list with the names in that file
/// (read relative to `base`, any layout: names split by blanks, commas
/// or lines, `#` comments), recursively up to [`MAX_INCLUDE_DEPTH`].
fn expand(list: &[Token], base: &Path, read: Reader<'_>, depth: usize) -> Result<Vec<Token>, Problem> {
    let mut out = Vec::new();
    for t in list {
        let Some(name) = t.text.strip_prefix('@').filter(|_| !t.quoted) else {
            out.push(t.clone());
            continue;
        };
        if name.is_empty() {
            return Err("\"@\" must be followed by a file name".into());
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!("@{name}: includes nested more than {MAX_INCLUDE_DEPTH} deep").into());
        }
        let path: PathBuf = if Path::new(name).is_absolute() { PathBuf::from(name) } else { base.join(name) };
        let text = read(&path).map_err(Problem::Include)?;
        let shown = path.display().to_string();
        let recs = records(&text)
            .map_err(|(line, problem)| Problem::Include(HbaError::Line { origin: shown.clone(), line, problem }))?;
        let inner_base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for rec in recs {
            for field in &rec.fields {
                let more = expand(field, &inner_base, read, depth + 1).map_err(|p| match p {
                    Problem::Here(problem) => {
                        Problem::Include(HbaError::Line { origin: shown.clone(), line: rec.line, problem })
                    }
                    inc => inc,
                })?;
                out.extend(more);
                if out.len() > MAX_LIST_NAMES {
                    return Err(format!("more than {MAX_LIST_NAMES} names in one list").into());
                }
            }
        }
    }
    Ok(out)
}

/// A `/regex` item (PostgreSQL 16), quoted or not.
fn regex(t: &Token) -> Result<Option<regex_lite::Regex>, Problem> {
    let Some(pattern) = t.text.strip_prefix('/') else { return Ok(None) };
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!("regular expression longer than {MAX_REGEX_LEN} characters").into());
    }
    regex_lite::Regex::new(pattern)
        .map(Some)
        .map_err(|e| format!("invalid regular expression \"{pattern}\": {e}").into())
}

fn db_match(t: Token) -> Result<DbMatch, Problem> {
    Ok(match () {
        _ if t.is("all") => DbMatch::All,
        _ if t.is("sameuser") => DbMatch::SameUser,
        _ if t.is("samerole") || t.is("samegroup") => DbMatch::SameRole,
        _ if t.is("replication") => DbMatch::Replication,
        _ => match regex(&t)? {
            Some(re) => DbMatch::Regex(re),
            None => DbMatch::Name(t.text),
        },
    })
}

fn user_match(t: Token) -> Result<UserMatch, Problem> {
    if t.is("all") {
        return Ok(UserMatch::All);
    }
    if let Some(role) = t.text.strip_prefix('+').filter(|_| !t.quoted) {
        if role.is_empty() {
            return Err("\"+\" must be followed by a role name".into());
        }
        return Ok(UserMatch::Member(role.to_owned()));
    }
    Ok(match regex(&t)? {
        Some(re) => UserMatch::Regex(re),
        None => UserMatch::Name(t.text),
    })
}

/// The address field, and the mask field after a bare address.
fn address<'a>(a: &Token, rest: &mut impl Iterator<Item = &'a Vec<Token>>) -> Result<AddrMatch, Problem> {
    if a.is("all") {
        return Ok(AddrMatch::All);
    }
    if a.is("samehost") || a.is("samenet") {
        return Err(format!("\"{}\" is not supported by the pooler; write the addresses as CIDR", a.text).into());
    }
    if let Some((ip, bits)) = a.text.split_once('/') {
        let addr = ip_addr(ip)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = bits
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max && !bits.starts_with('+'))
            .ok_or_else(|| format!("invalid CIDR mask in address \"{}\"", a.text))?;
        return Ok(AddrMatch::Net { addr, prefix });
    }
    let addr = ip_addr(&a.text)?;
    let m = single(rest.next(), "netmask specification")?;
    let mask: IpAddr = m.text.parse().map_err(|_| {
        format!(
            "invalid IP mask \"{}\" (an address without /prefix needs a netmask field: \"{}/32\" or \"{} 255.255.255.255\")",
            m.text, a.text, a.text
        )
    })?;
    let prefix = match (addr, mask) {
        (IpAddr::V4(_), IpAddr::V4(m4)) => contiguous(u128::from(u32::from(m4)) << 96),
        (IpAddr::V6(_), IpAddr::V6(m6)) => contiguous(u128::from(m6)),
        _ => return Err("IP address and mask do not match".into()),
    }
    .ok_or_else(|| format!("invalid IP mask \"{}\": the one bits must come first", m.text))?;
    let prefix = if addr.is_ipv4() { prefix.min(32) } else { prefix };
    Ok(AddrMatch::Net { addr, prefix })
}

/// The prefix length of a mask whose one bits are all leading (`None`
/// when they are not).
fn contiguous(mask: u128) -> Option<u8> {
    let ones = mask.leading_ones();
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn ip_addr(s: &str) -> Result<IpAddr, Problem> {
    // A zone index (fe80::1%eth0) names an interface, not an address.
    s.parse().map_err(|_| {
        Problem::from(format!(
            "invalid IP address \"{s}\" (host names, samehost and samenet are not supported by the pooler)"
        ))
    })
}

fn method(s: &str) -> Result<HbaMethod, Problem> {
    Ok(match s {
        "trust" => HbaMethod::Trust,
        "reject" => HbaMethod::Reject,
        "md5" => HbaMethod::Md5,
        "scram-sha-256" => HbaMethod::ScramSha256,
        "password" => HbaMethod::Password,
        "cert" => HbaMethod::Cert,
        "peer" => HbaMethod::Peer,
        "ident" | "gss" | "sspi" | "pam" | "ldap" | "radius" | "bsd" | "oauth" | "krb5" | "crypt" => {
            return Err(format!("authentication method \"{s}\" is not supported by the pooler").into())
        }
        other => return Err(format!("invalid authentication method \"{other}\"").into()),
    })
}

/// Applies one `name=value` option; true when it was `clientname`.
fn option(t: &str, conn: ConnType, method: HbaMethod, o: &mut HbaOptions) -> Result<bool, Problem> {
    let (name, value) =
        t.split_once('=').ok_or_else(|| format!("authentication option not in name=value format: {t}"))?;
    match name {
        "clientcert" => {
            if conn != ConnType::HostSsl {
                return Err("clientcert can only be configured for \"hostssl\" lines".into());
            }
            o.clientcert = match value {
                "verify-full" => Some(ClientCert::VerifyFull),
                "verify-ca" if method == HbaMethod::Cert => {
                    return Err("clientcert only accepts \"verify-full\" when using \"cert\" authentication".into())
                }
                "verify-ca" => Some(ClientCert::VerifyCa),
                v => return Err(format!("invalid value for clientcert: \"{v}\" (verify-ca or verify-full)").into()),
            };
            Ok(false)
        }
        "clientname" => match value {
            "CN" => Ok(true),
            "DN" => Err("clientname=DN is not supported by the pooler (the certificate's CN is the user)".into()),
            v => Err(format!("invalid value for clientname: \"{v}\" (CN or DN)").into()),
        },
        "map" => Err("user name maps (map=, pg_ident.conf) are not supported by the pooler".into()),
        other => Err(format!("unrecognized authentication option name: \"{other}\"").into()),
    }
}
