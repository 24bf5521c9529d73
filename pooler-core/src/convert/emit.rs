//! Writing the TOML: tables in our documented order, keys with the comments
//! that explain them, and the notes gathered on the way.

use super::parse::Setting;
use super::{Conversion, Note, NoteKind, Source};

/// A TOML value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(u64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Str(s) => quote(s),
            Value::Int(n) => n.to_string(),
            Value::Float(f) => {
                let s = f.to_string();
                if s.contains(['.', 'e', 'E']) || !f.is_finite() {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Value::Bool(b) => b.to_string(),
            Value::List(items) => {
                format!("[{}]", items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key, bare when it can be, else quoted.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// Where a key was written, to hang comments on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    table: usize,
    line: usize,
}

struct Line {
    key: String,
    value: Value,
    comments: Vec<String>,
}

struct Table {
    /// Dotted name, parts already quoted where needed (`pool.databases."my db"`).
    name: String,
    array: bool,
    /// Written commented out: something the operator may copy, not in force.
    disabled: bool,
    comments: Vec<String>,
    lines: Vec<Line>,
}

/// The TOML being written and the notes so far.
pub(crate) struct Toml {
    source: Source,
    file: String,
    tables: Vec<Table>,
    notes: Vec<Note>,
}

/// Our tables in the order docs/CONFIG.md gives them.
fn rank(name: &str) -> usize {
    let order = [
        "server",
        "pool",
        "pool.databases",
        "pool.users",
        "auth",
        "routing",
        "health",
        "failover",
        "client_tls",
        "server_tls",
        "admin",
        "metrics",
        "nodes",
    ];
    order.iter().rposition(|o| name == *o || name.starts_with(&format!("{o}."))).unwrap_or(order.len())
}

/// One line of a comment: no line breaks may end it early.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl Toml {
    pub fn new(source: Source, file: &str) -> Toml {
        Toml { source, file: file.to_owned(), tables: Vec::new(), notes: Vec::new() }
    }

    /// The (non-array) table `name`, created if needed.
    pub fn table(&mut self, name: &str) -> usize {
        if let Some(i) = self.tables.iter().position(|t| !t.array && t.name == name) {
            return i;
        }
        self.tables.push(Table {
            name: name.to_owned(),
            array: false,
            disabled: false,
            comments: Vec::new(),
            lines: Vec::new(),
        });
        self.tables.len() - 1
    }

    /// A new element of the array of tables `name`; `disabled` writes it
    /// commented out.
    pub fn array(&mut self, name: &str, disabled: bool) -> usize {
        self.tables.push(Table {
            name: name.to_owned(),
            array: true,
            disabled,
            comments: Vec::new(),
            lines: Vec::new(),
        });
        self.tables.len() - 1
    }

    /// Sets `key` in table `name` (replacing an earlier value and its comments).
    pub fn set(&mut self, name: &str, k: &str, value: Value) -> Slot {
        let t = self.table(name);
        self.set_in(t, k, value)
    }

    /// Sets `key` in the table at index `t`.
    pub fn set_in(&mut self, t: usize, k: &str, value: Value) -> Slot {
        let lines = &mut self.tables[t].lines;
        if let Some(i) = lines.iter().position(|l| l.key == k) {
            lines[i] = Line { key: k.to_owned(), value, comments: Vec::new() };
            return Slot { table: t, line: i };
        }
        lines.push(Line { key: k.to_owned(), value, comments: Vec::new() });
        Slot { table: t, line: lines.len() - 1 }
    }

    /// Whether `key` is set in table `name`.
    pub fn get(&self, name: &str, k: &str) -> Option<&Value> {
        self.tables.iter().find(|t| !t.array && t.name == name)?.lines.iter().find(|l| l.key == k).map(|l| &l.value)
    }

    /// Every value of `k` in any table (to compare pool sizes).
    pub fn values_of_key<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.tables
            .iter()
            .filter(|t| !t.array)
            .flat_map(|t| t.lines.iter())
            .filter(move |l| l.key == k)
            .map(|l| &l.value)
    }

    /// A comment line above the key.
    pub fn comment(&mut self, slot: Slot, text: &str) {
        self.tables[slot.table].lines[slot.line].comments.push(one_line(text));
    }

    /// A comment line under the table's header.
    pub fn table_comment(&mut self, t: usize, text: &str) {
        self.tables[t].comments.push(one_line(text));
    }

    /// A note with no key to hang it on (listed at the top of the file).
    pub fn note(&mut self, kind: NoteKind, s: &Setting, setting: &str, message: impl Into<String>) {
        self.notes.push(Note {
            kind,
            setting: setting.to_owned(),
            location: Some(s.at.clone()),
            message: one_line(&message.into()),
        });
    }

    /// `s` has no equivalent.
    pub fn unmapped(&mut self, s: &Setting, message: impl Into<String>) {
        let name = setting_name(s);
        self.note(NoteKind::Unmapped, s, &name, message);
    }

    /// `s` needs nothing here.
    pub fn not_needed(&mut self, s: &Setting, message: impl Into<String>) {
        let name = setting_name(s);
        self.note(NoteKind::NotNeeded, s, &name, message);
    }

    /// `s` became the key at `slot`, with a difference the comment states.
    pub fn partial(&mut self, slot: Slot, s: &Setting, message: impl Into<String>) {
        let message = one_line(&message.into());
        // Replaces the plain "from this line" comment, if any.
        let plain = format!("{} = {} ({})", s.key, s.shown(), s.at);
        self.tables[slot.table].lines[slot.line].comments.retain(|c| *c != plain);
        self.comment(slot, &format!("{plain}: {message}"));
        self.notes.push(Note {
            kind: NoteKind::Partial,
            setting: setting_name(s),
            location: Some(s.at.clone()),
            message,
        });
    }

    /// The file relied on the other program's default `setting`, which the
    /// key at `slot` now states.
    pub fn default_kept(&mut self, slot: Slot, setting: &str, message: impl Into<String>) {
        let message = one_line(&message.into());
        self.comment(slot, &format!("{setting} not set: {message}"));
        self.notes.push(Note { kind: NoteKind::DefaultKept, setting: setting.to_owned(), location: None, message });
    }

    /// A comment naming the source line above the key at `slot`.
    pub fn cite_line(&mut self, slot: Slot, s: &Setting) {
        self.comment(slot, &format!("{} = {} ({})", s.key, s.shown(), s.at));
    }

    /// The TOML text and the notes.
    pub fn finish(mut self) -> Conversion {
        // Notes in source order (file, then line), defaults last.
        self.notes.sort_by(|a, b| match (&a.location, &b.location) {
            (Some(x), Some(y)) => location_order(x).cmp(&location_order(y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let mut out = String::new();
        out.push_str(&format!("# Converted from {} ({}) by `pooler convert`.\n", self.file, self.source));
        out.push_str("# Check it with `pooler check --config FILE` before use (docs/MIGRATION.md).\n");
        let count = |k: NoteKind| self.notes.iter().filter(|n| n.kind == k).count();
        out.push_str(&format!(
            "# {} settings have no equivalent (listed below); {} map only partly and {} defaults of {} \
             that differ from ours are set explicitly (see the comments next to the keys).\n",
            count(NoteKind::Unmapped),
            count(NoteKind::Partial),
            count(NoteKind::DefaultKept),
            self.source,
        ));
        for (kind, title) in [
            (NoteKind::Unmapped, "No equivalent (nothing below does what these did):"),
            (NoteKind::NotNeeded, "Nothing to set (the pooler already behaves so):"),
            (NoteKind::Overridden, "Set again later in the file (the later one is used, as before):"),
        ] {
            let notes: Vec<&Note> = self.notes.iter().filter(|n| n.kind == kind).collect();
            if notes.is_empty() {
                continue;
            }
            out.push_str("#\n");
            out.push_str(&format!("# {title}\n"));
            for n in notes {
                out.push_str(&format!("#   {n}\n"));
            }
        }
        // Sort by our documented order, keeping insertion order within a rank.
        let mut order: Vec<usize> = (0..self.tables.len()).collect();
        order.sort_by_key(|&i| rank(&self.tables[i].name));
        for i in order {
            let t = &self.tables[i];
            if t.lines.is_empty() && t.comments.is_empty() && !t.array {
                continue;
            }
            let p = if t.disabled { "# " } else { "" };
            out.push('\n');
            for c in &t.comments {
                out.push_str(&format!("# {c}\n"));
            }
            if t.array {
                out.push_str(&format!("{p}[[{}]]\n", t.name));
            } else {
                out.push_str(&format!("{p}[{}]\n", t.name));
            }
            for l in &t.lines {
                for c in &l.comments {
                    out.push_str(&format!("# {c}\n"));
                }
                out.push_str(&format!("{p}{} = {}\n", key(&l.key), l.value.render()));
            }
        }
        Conversion { source: self.source, toml: out, notes: self.notes }
    }
}

/// `file:line` sorted by file name, then line number.
fn location_order(at: &str) -> (&str, usize) {
    match at.rsplit_once(':') {
        Some((f, n)) => (f, n.parse().unwrap_or(0)),
        None => (at, 0),
    }
}

/// How a setting is named in notes: `key`, or `[section] key` outside
/// pgbouncer's main section.
pub(crate) fn setting_name(s: &Setting) -> String {
    if s.section.is_empty() || s.section == "pgbouncer" {
        s.key.clone()
    } else {
        format!("[{}] {}", s.section, s.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_are_valid_toml() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(key("app_db-1"), "app_db-1");
        assert_eq!(key("my db"), "\"my db\"");
        let mut t = Toml::new(Source::Pgbouncer, "x.ini");
        let s = t.set("pool.databases.\"my db\"", "size", Value::Int(3));
        t.comment(s, "a comment\nwith a break");
        t.set("server", "listen", Value::Str("0.0.0.0:6432".into()));
        let n = t.array("nodes", false);
        t.set_in(n, "host", Value::Str("/tmp".into()));
        t.set_in(n, "weight", Value::Float(1.0));
        let off = t.array("nodes", true);
        t.set_in(off, "host", Value::Str("other".into()));
        t.set("routing", "write_functions", Value::List(vec!["a\"".into(), "b".into()]));
        let c = t.finish();
        let v: toml::Value = toml::from_str(&c.toml).unwrap();
        assert_eq!(v["pool"]["databases"]["my db"]["size"].as_integer(), Some(3));
        assert_eq!(v["nodes"].as_array().map(|a| a.len()), Some(1), "{}", c.toml);
        assert_eq!(v["nodes"][0]["weight"].as_float(), Some(1.0));
        assert!(c.toml.find("[server]") < c.toml.find("[pool.databases"), "{}", c.toml);
        assert!(c.toml.contains("# [[nodes]]\n# host = \"other\""), "{}", c.toml);
        assert!(c.toml.contains("# a comment with a break\n"), "{}", c.toml);
    }
}
