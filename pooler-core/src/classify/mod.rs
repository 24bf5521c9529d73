//! The query classifier: given SQL text, may it run on a standby?
//!
//! [`Classifier::classify`] reads the text once with the allocation-free
//! lexer in [`crate::sql`] and returns a small `Copy` value: what kind of
//! statement it is (read, write, transaction control, session command) and
//! flags saying why (a call to a function that writes, row locking, SELECT
//! INTO, a data-modifying CTE, several statements, a routing hint...).
//!
//! Safety first: a wrong "read" sends a write to a standby (an error there, or
//! worse, a stale read of the session's own write), a wrong "write" only costs
//! load on the primary. So every rule errs towards "write": an unknown first
//! keyword, a write keyword anywhere in a SELECT outside literals and comments,
//! a function on the write list in any case, schema-qualified or quoted, and
//! anything the lexer cannot make sense of. Nothing here ever fails or panics.

pub(crate) mod catalog;
mod fallback;
mod functions;

use crate::sql::{is, Lexer, Token};

/// What a statement (or a multi-statement string, taken as a whole) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Reads only: may run on a standby.
    Read,
    /// Writes, or may write, or needs the primary for another reason.
    Write,
    /// `BEGIN` / `START TRANSACTION`.
    Begin {
        /// Declared `READ ONLY`.
        read_only: bool,
    },
    /// `COMMIT` / `END` (and `COMMIT AND CHAIN`).
    Commit,
    /// `ROLLBACK` / `ABORT` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// Other transaction control: SAVEPOINT, RELEASE, ROLLBACK TO, SET
    /// TRANSACTION (with `read_only` when it says READ ONLY).
    TransactionOther {
        /// `SET TRANSACTION READ ONLY`.
        read_only: bool,
    },
    /// Session commands: SET, RESET, DISCARD, LISTEN, UNLISTEN, PREPARE,
    /// DEALLOCATE, LOAD. Their effect must reach every node a session uses.
    Session,
    /// Nothing could be made of it (empty, or an unknown command): treat as a write.
    Unknown,
}

/// Why a statement was judged as it was: a small bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// Calls a function on the write list (or not on the read-only list).
    pub const WRITE_FUNCTION: Flags = Flags(1);
    /// `FOR UPDATE / SHARE / NO KEY UPDATE / KEY SHARE`.
    pub const ROW_LOCK: Flags = Flags(1 << 1);
    /// `SELECT ... INTO` (creates a table).
    pub const SELECT_INTO: Flags = Flags(1 << 2);
    /// A data-modifying statement inside `WITH`, or a write keyword inside a
    /// query that otherwise reads.
    pub const MODIFYING_CTE: Flags = Flags(1 << 3);
    /// More than one statement in the text.
    pub const MULTI_STATEMENT: Flags = Flags(1 << 4);
    /// A routing hint in a comment asks for the primary
    /// (`/* pooler: primary */`, or pgpool's `/*NO LOAD BALANCE*/`).
    pub const HINT_PRIMARY: Flags = Flags(1 << 5);
    /// `EXPLAIN ANALYZE` (runs the statement).
    pub const EXPLAIN_ANALYZE: Flags = Flags(1 << 6);
    /// Matches a `primary_routing_query_pattern`.
    pub const PATTERN: Flags = Flags(1 << 7);
    /// Calls a function that changes session state or must stay on one
    /// connection (advisory locks, set_config, ...).
    pub const SESSION_FUNCTION: Flags = Flags(1 << 8);
    /// The fast path could not decide (a write keyword where an identifier
    /// may stand); the SQL parser did.
    pub const PARSED: Flags = Flags(1 << 9);
    /// Calls a function on no list and not known built in: whether it writes
    /// is the catalog's to say (its volatility, see [`Classifier::unlisted_calls`]).
    pub const UNLISTED_FUNCTION: Flags = Flags(1 << 10);

    /// True when every flag in `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn set(&mut self, other: Flags) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The classifier's verdict on one Query or Parse text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    /// What it is.
    pub kind: Kind,
    /// Why.
    pub flags: Flags,
}

impl Classification {
    /// True when the statement may run on a standby.
    pub fn is_read_only(&self) -> bool {
        self.kind == Kind::Read
    }

    /// True when the statement must run on the primary (writes, unknowns,
    /// hints, and anything that is not plainly a read or a transaction or
    /// session command that every node can take).
    pub fn needs_primary(&self) -> bool {
        matches!(self.kind, Kind::Write | Kind::Unknown)
    }
}

/// How calls to functions that are on no list are judged.
#[derive(Clone, Debug, Default)]
enum FunctionPolicy {
    /// Only listed functions write (pgpool's `write_function_list`).
    #[default]
    WriteList,
    /// Every function writes except the listed ones (pgpool's
    /// `read_only_function_list`).
    ReadOnlyList,
}

/// Why a classifier could not be built from its lists.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?} in {list}: {reason}")]
pub struct PatternError {
    /// Which list.
    pub list: &'static str,
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A function-name matcher: exact names (case-insensitive) and regexes.
#[derive(Clone, Debug, Default)]
struct NameList {
    exact: Vec<String>,
    patterns: Vec<regex_lite::Regex>,
}

impl NameList {
    fn new(list: &'static str, entries: &[String]) -> Result<NameList, PatternError> {
        let mut out = NameList::default();
        for e in entries {
            // pgpool's lists take regexes; a plain identifier is an exact name.
            if e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                out.exact.push(e.to_ascii_lowercase());
            } else {
                let anchored = format!("^(?:{e})$");
                let re = regex_lite::RegexBuilder::new(&anchored)
                    .case_insensitive(true)
                    .build()
                    .map_err(|err| PatternError { list, pattern: e.clone(), reason: err.to_string() })?;
                out.patterns.push(re);
            }
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    /// True when `name` (called as `qualifier.name` when qualified) is listed:
    /// an entry `f` matches `f` in any schema, `s.f` only `f` in schema `s`.
    fn matches(&self, name: &[u8], qualifier: Option<&[u8]>) -> bool {
        let exact = self.exact.iter().any(|e| match e.split_once('.') {
            Some((q, n)) => {
                n.as_bytes().eq_ignore_ascii_case(name)
                    && qualifier.is_some_and(|x| q.as_bytes().eq_ignore_ascii_case(x))
            }
            None => e.as_bytes().eq_ignore_ascii_case(name),
        });
        if exact || self.patterns.is_empty() {
            return exact;
        }
        let Ok(bare) = std::str::from_utf8(name) else {
            return false;
        };
        if self.patterns.iter().any(|p| p.is_match(bare)) {
            return true;
        }
        match qualifier.and_then(|q| std::str::from_utf8(q).ok()) {
            Some(q) => {
                let full = format!("{q}.{bare}");
                self.patterns.iter().any(|p| p.is_match(&full))
            }
            None => false,
        }
    }
}

/// Classifies SQL texts by the built-in rules and the configured lists.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    write_functions: NameList,
    read_only_functions: NameList,
    policy: FunctionPolicy,
    primary_patterns: Vec<regex_lite::Regex>,
}

/// Lists that extend the built-in rules (pgpool's names in brackets).
#[derive(Clone, Debug, Default)]
pub struct ClassifierLists {
    /// Functions that write [`write_function_list`]; names or regexes.
    /// `nextval`, `setval`, `currval`, `lastval` and the built-in list always count.
    pub write_functions: Vec<String>,
    /// Functions that only read [`read_only_function_list`]; when given, every
    /// other function call counts as a write. Not with `write_functions`.
    pub read_only_functions: Vec<String>,
    /// Regexes over the whole statement text that send it to the primary
    /// [`primary_routing_query_pattern_list`].
    pub primary_patterns: Vec<String>,
}

impl Classifier {
    /// A classifier with the built-in rules and these lists.
    pub fn new(lists: &ClassifierLists) -> Result<Classifier, PatternError> {
        if !lists.write_functions.is_empty() && !lists.read_only_functions.is_empty() {
            return Err(PatternError {
                list: "read_only_functions",
                pattern: String::new(),
                reason: "write_functions and read_only_functions cannot both be set (as in pgpool)".into(),
            });
        }
        let read_only_functions = NameList::new("read_only_functions", &lists.read_only_functions)?;
        let policy =
            if read_only_functions.is_empty() { FunctionPolicy::WriteList } else { FunctionPolicy::ReadOnlyList };
        let mut primary_patterns = Vec::new();
        for p in &lists.primary_patterns {
            let re = regex_lite::RegexBuilder::new(p).case_insensitive(true).build().map_err(|e| PatternError {
                list: "primary_patterns",
                pattern: p.clone(),
                reason: e.to_string(),
            })?;
            primary_patterns.push(re);
        }
        Ok(Classifier {
            write_functions: NameList::new("write_functions", &lists.write_functions)?,
            read_only_functions,
            policy,
            primary_patterns,
        })
    }

    /// Classifies one Query or Parse text.
    pub fn classify(&self, sql: &[u8]) -> Classification {
        let mut flags = Flags::default();
        if !self.primary_patterns.is_empty() {
            if let Ok(text) = std::str::from_utf8(sql) {
                if self.primary_patterns.iter().any(|p| p.is_match(text)) {
                    flags.set(Flags::PATTERN);
                }
            }
        }
        let mut combined: Option<Kind> = None;
        let mut statements = 0usize;
        let mut unsure = false;
        let mut st = Statement::default();
        // Tokens of the current statement, kept in a small fixed window: the
        // rules need the first few words and pairs of neighbours, not the text.
        for tok in Lexer::with_comments(sql) {
            match tok {
                Token::Semicolon => {
                    if st.any {
                        statements += 1;
                        let k = self.finish(&mut st, &mut flags);
                        unsure |= st.unsure;
                        combined = Some(combine(combined, k));
                    }
                    st = Statement::default();
                }
                Token::Comment(c) => {
                    if is_primary_hint(c) {
                        flags.set(Flags::HINT_PRIMARY);
                    }
                }
                t => self.feed(&mut st, t),
            }
        }
        if st.any {
            statements += 1;
            let k = self.finish(&mut st, &mut flags);
            unsure |= st.unsure;
            combined = Some(combine(combined, k));
        }
        if statements > 1 {
            flags.set(Flags::MULTI_STATEMENT);
        }
        let mut kind = combined.unwrap_or(Kind::Unknown);
        // A read-like statement that is a write only because a write keyword
        // appears where an identifier may stand: the SQL parser decides.
        if unsure && statements == 1 && kind == Kind::Write && fallback::is_plain_query(sql) {
            kind = Kind::Read;
            flags.set(Flags::PARSED);
            flags.0 &= !Flags::MODIFYING_CTE.0;
        }
        if kind == Kind::Read && (flags.contains(Flags::HINT_PRIMARY) || flags.contains(Flags::PATTERN)) {
            kind = Kind::Write;
        }
        Classification { kind, flags }
    }

    /// Takes one token of the current statement.
    fn feed<'a>(&self, st: &mut Statement<'a>, tok: Token<'a>) {
        st.any = true;
        match tok {
            Token::Word(w) | Token::Quoted(w) => {
                st.qualifier = if st.pending_dot { st.last_name } else { None };
                st.last_name = Some(w);
                st.pending_dot = false;
            }
            // `schema.function(`: the name before the dot qualifies the next one.
            Token::Other(b'.') => st.pending_dot = st.last_name.is_some(),
            Token::Other(b'(') => {
                if let Some(name) = st.last_name {
                    self.judge_call(st, name, st.qualifier);
                }
                st.depth += 1;
                st.last_name = None;
                st.qualifier = None;
                st.pending_dot = false;
            }
            _ => {
                if let Token::Other(b')') = tok {
                    st.depth = st.depth.saturating_sub(1);
                }
                st.last_name = None;
                st.qualifier = None;
                st.pending_dot = false;
            }
        }
        if let Token::Word(w) = tok {
            if st.words < st.first.len() {
                st.first[st.words] = w;
            }
            st.words += 1;
            self.word_rules(st, w);
            st.prev_word = Some(w);
        } else {
            st.prev_word = None;
        }
    }

    fn judge_call(&self, st: &mut Statement<'_>, name: &[u8], qualifier: Option<&[u8]>) {
        if functions::is_session_function(name) {
            st.flags.set(Flags::SESSION_FUNCTION | Flags::WRITE_FUNCTION);
            return;
        }
        if functions::is_primary_function(name) || self.write_functions.matches(name, qualifier) {
            st.flags.set(Flags::WRITE_FUNCTION);
            return;
        }
        match self.policy {
            FunctionPolicy::ReadOnlyList => {
                if !self.read_only_functions.matches(name, qualifier) && !functions::is_syntax_call(name) {
                    st.flags.set(Flags::WRITE_FUNCTION);
                }
            }
            FunctionPolicy::WriteList => {
                if is_unlisted_call(name) {
                    st.flags.set(Flags::UNLISTED_FUNCTION);
                }
            }
        }
    }

    /// Whether this classifier leaves unlisted functions to the catalog
    /// (no `read_only_functions` list is set).
    pub fn asks_catalog(&self) -> bool {
        matches!(self.policy, FunctionPolicy::WriteList)
    }

    /// The names (lowercased, schema dropped, each once) of the calls in
    /// `sql` that [`Flags::UNLISTED_FUNCTION`] stands for: on no list and
    /// not known built in. Allocates; meant for statements that have the flag.
    pub fn unlisted_calls(&self, sql: &[u8]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut last: Option<&[u8]> = None;
        let mut qualifier: Option<&[u8]> = None;
        let mut pending_dot = false;
        for tok in Lexer::new(sql) {
            match tok {
                Token::Word(w) | Token::Quoted(w) => {
                    qualifier = if pending_dot { last } else { None };
                    last = Some(w);
                    pending_dot = false;
                    continue;
                }
                Token::Other(b'.') => {
                    pending_dot = last.is_some();
                    continue;
                }
                Token::Other(b'(') => {
                    if let Some(name) = last {
                        let listed = functions::is_session_function(name)
                            || functions::is_primary_function(name)
                            || self.write_functions.matches(name, qualifier);
                        if !listed && is_unlisted_call(name) {
                            let n = String::from_utf8_lossy(name).to_ascii_lowercase();
                            if !out.contains(&n) {
                                out.push(n);
                            }
                        }
                    }
                }
                _ => {}
            }
            last = None;
            qualifier = None;
            pending_dot = false;
        }
        out
    }

    /// Rules that look at one word and its predecessor.
    fn word_rules<'a>(&self, st: &mut Statement<'a>, w: &'a [u8]) {
        let prev = st.prev_word;
        // Row locks: FOR UPDATE, FOR SHARE, FOR NO KEY UPDATE, FOR KEY SHARE.
        if let Some(p) = prev {
            if is(p, "for") && (is(w, "update") || is(w, "share") || is(w, "no") || is(w, "key")) {
                st.flags.set(Flags::ROW_LOCK);
            }
        }
        if is(w, "into") {
            // At any depth: SELECT INTO is valid only at the top, and
            // anything else with INTO in a would-be read is no read.
            st.top_level_into = true;
        }
        if is(w, "analyze") || is(w, "analyse") {
            st.analyze = true;
        }
        if is(w, "read") {
            st.saw_read = true;
        }
        if is(w, "only") && st.saw_read && prev.is_some_and(|p| is(p, "read")) {
            st.read_only = true;
        }
        let lock_clause = prev.is_some_and(|p| is(p, "for") || is(p, "no") || is(p, "key"));
        if WRITE_KEYWORDS.iter().any(|k| is(w, k)) && !(lock_clause && (is(w, "update") || is(w, "share"))) {
            st.write_keyword = true;
        }
        if st.words > 1 && st.explain_target.is_none() && st.depth == 0 && COMMANDS.iter().any(|c| is(w, c)) {
            st.explain_target = Some(w);
        }
        if is(w, "to") && st.depth == 0 {
            st.top_level_to = true;
        }
        if is(w, "from") && st.depth == 0 {
            st.top_level_from = true;
        }
    }

    /// Decides the kind of a finished statement.
    fn finish(&self, st: &mut Statement<'_>, flags: &mut Flags) -> Kind {
        flags.set(st.flags);
        if st.words == 0 {
            return Kind::Unknown;
        }
        let first = st.first[0];
        let second = st.first.get(1).copied().filter(|_| st.words > 1);
        let kw = |k: &str| is(first, k);
        let kind = if kw("select") || kw("values") || kw("table") || kw("with") {
            if st.top_level_into {
                // SELECT ... INTO, also after WITH: creates a table.
                flags.set(Flags::SELECT_INTO);
            }
            if st.write_keyword {
                // INSERT/UPDATE/DELETE/MERGE inside WITH (or anywhere in a read).
                flags.set(Flags::MODIFYING_CTE);
            }
            if st.flags.contains(Flags::ROW_LOCK)
                || st.flags.contains(Flags::WRITE_FUNCTION)
                || st.write_keyword
                || st.top_level_into
            {
                // Only the keyword speaks for a write: worth asking the parser.
                st.unsure = st.write_keyword
                    && !st.flags.contains(Flags::ROW_LOCK)
                    && !st.flags.contains(Flags::WRITE_FUNCTION)
                    && !st.flags.contains(Flags::SESSION_FUNCTION)
                    && !st.top_level_into;
                Kind::Write
            } else {
                Kind::Read
            }
        } else if kw("show") {
            Kind::Read
        } else if kw("explain") {
            if st.analyze {
                flags.set(Flags::EXPLAIN_ANALYZE);
                // Runs the statement: a write inside makes it a write.
                let reads =
                    st.explain_target.is_some_and(|t| ["select", "values", "table", "with"].iter().any(|k| is(t, k)));
                if reads
                    && !st.write_keyword
                    && !st.flags.contains(Flags::WRITE_FUNCTION)
                    && !st.flags.contains(Flags::ROW_LOCK)
                    && !st.top_level_into
                {
                    Kind::Read
                } else {
                    Kind::Write
                }
            } else {
                // Plans only; nothing runs.
                Kind::Read
            }
        } else if kw("copy") {
            // COPY ... TO reads (unless its query writes); COPY ... FROM writes.
            if st.top_level_to
                && !st.top_level_from
                && !st.top_level_into
                && !st.write_keyword
                && !st.flags.contains(Flags::WRITE_FUNCTION)
                && !st.flags.contains(Flags::ROW_LOCK)
            {
                Kind::Read
            } else {
                Kind::Write
            }
        } else if kw("begin") || (kw("start") && second.is_some_and(|s| is(s, "transaction"))) {
            Kind::Begin { read_only: st.read_only }
        } else if kw("commit") || kw("end") {
            if second.is_some_and(|s| is(s, "prepared")) {
                Kind::Write
            } else {
                Kind::Commit
            }
        } else if kw("rollback") || kw("abort") {
            match second {
                Some(s) if is(s, "to") => Kind::TransactionOther { read_only: false },
                Some(s) if is(s, "prepared") => Kind::Write,
                _ => Kind::Rollback,
            }
        } else if kw("savepoint") || kw("release") {
            Kind::TransactionOther { read_only: false }
        } else if kw("set") {
            match second {
                Some(s) if is(s, "transaction") => Kind::TransactionOther { read_only: st.read_only },
                Some(s) if is(s, "session") && st.first.get(2).is_some_and(|t| is(t, "characteristics")) => {
                    Kind::Session
                }
                _ => Kind::Session,
            }
        } else if kw("prepare") {
            if second.is_some_and(|s| is(s, "transaction")) {
                Kind::Write
            } else {
                Kind::Session
            }
        } else if kw("reset") || kw("discard") || kw("listen") || kw("unlisten") || kw("deallocate") || kw("load") {
            Kind::Session
        } else {
            // INSERT, UPDATE, DELETE, MERGE, CREATE, DROP, ALTER, CALL, DO, LOCK,
            // VACUUM, NOTIFY, EXECUTE, FETCH, DECLARE, and anything unknown.
            Kind::Write
        };
        if kind == Kind::Read && st.flags.contains(Flags::SESSION_FUNCTION) {
            return Kind::Write;
        }
        kind
    }
}

/// Keywords that, appearing anywhere in a would-be read (outside literals and
/// comments), make it a write. Conservative: an identifier spelled like one
/// costs load on the primary, never a wrong read.
const WRITE_KEYWORDS: &[&str] = &["insert", "update", "delete", "merge", "truncate", "nextval", "setval"];

/// Words that start a statement EXPLAIN can explain.
const COMMANDS: &[&str] =
    &["select", "values", "table", "with", "insert", "update", "delete", "merge", "execute", "declare", "create"];

/// The state of the statement being read.
#[derive(Default)]
struct Statement<'a> {
    /// The first words (for the command and its modifiers).
    first: [&'a [u8]; 4],
    words: usize,
    prev_word: Option<&'a [u8]>,
    /// Any token at all (a statement of only literals is not empty).
    any: bool,
    /// The last name token and the name qualifying it (`schema.name`), to
    /// recognise function calls.
    last_name: Option<&'a [u8]>,
    qualifier: Option<&'a [u8]>,
    pending_dot: bool,
    /// EXPLAIN's statement: the first command word after its options.
    explain_target: Option<&'a [u8]>,
    depth: usize,
    flags: Flags,
    top_level_into: bool,
    top_level_to: bool,
    top_level_from: bool,
    analyze: bool,
    saw_read: bool,
    read_only: bool,
    write_keyword: bool,
    /// Judged a write on a keyword alone: the parser may know better.
    unsure: bool,
}

/// A call to `name` is not syntax and not a built-in known to only read.
fn is_unlisted_call(name: &[u8]) -> bool {
    !functions::is_syntax_call(name) && !functions::is_builtin_read(name)
}

/// Combines the kinds of the statements of one string: all reads stay a read;
/// anything else makes the whole a write (it goes to one node, the primary).
fn combine(acc: Option<Kind>, next: Kind) -> Kind {
    match (acc, next) {
        (None, k) => k,
        (Some(Kind::Read), Kind::Read) => Kind::Read,
        _ => Kind::Write,
    }
}

/// `/* pooler: primary */`, `/*NO LOAD BALANCE*/` (pgpool), `-- pooler:primary`.
fn is_primary_hint(comment: &[u8]) -> bool {
    let t: Vec<u8> = comment.iter().filter(|b| !b.is_ascii_whitespace()).map(|b| b.to_ascii_lowercase()).collect();
    t == b"pooler:primary" || t == b"noloadbalance"
}

#[cfg(test)]
mod tests;
