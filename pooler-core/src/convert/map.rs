//! What both converters share: taking a setting, reading its value as a
//! duration, a boolean or a number, writing our key (or the other program's
//! default when the file relied on it), and turning what is left into notes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::emit::{Slot, Toml, Value};
use super::parse::{Setting, Settings};
use super::values::{self, Unit, FOREVER};

/// What the other program's zero means for a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Zero {
    /// Off; our key takes `"0s"` as off too.
    Off,
    /// No limit; our key needs one, so the longest we accept is written.
    Forever,
    /// Every time (no wait); our key needs more than zero, so 1 ms is written.
    Min,
}

/// The conversion under way.
pub(crate) struct Cx {
    pub t: Toml,
    pub s: Settings,
    /// The section the converter's main settings are in (`pgbouncer`, or empty).
    pub section: &'static str,
    /// The source file's directory, for relative file names.
    pub dir: PathBuf,
    /// `pgbouncer` or `pgpool-II`, in comments.
    pub who: &'static str,
}

impl Cx {
    /// Takes a setting of the main section.
    pub fn take(&mut self, key: &str) -> Option<Setting> {
        self.s.take(self.section, key)
    }

    /// A copy of a setting of the main section, left in place.
    pub fn peek(&self, key: &str) -> Option<Setting> {
        self.s.peek(self.section, key).cloned()
    }

    /// A file name as the other program read it: relative ones relative to
    /// the source file's directory (the converted file may live elsewhere).
    pub fn path(&self, v: &str) -> String {
        if Path::new(v).is_relative() {
            self.dir.join(v).display().to_string()
        } else {
            v.to_owned()
        }
    }

    /// Writes `key` with a comment naming the source line.
    pub fn put(&mut self, table: &str, key: &str, value: Value, s: &Setting) -> Slot {
        let slot = self.t.set(table, key, value);
        self.t.cite_line(slot, s);
        slot
    }

    /// A duration setting. `theirs` is the other program's default when it
    /// differs from ours (written when the file relied on it).
    #[allow(clippy::too_many_arguments)]
    pub fn duration(
        &mut self,
        key: &str,
        table: &str,
        tkey: &str,
        unit: Unit,
        theirs: Option<Duration>,
        zero: Zero,
    ) -> Option<Duration> {
        let Some(s) = self.take(key) else {
            if let Some(d) = theirs {
                let v = values::fmt_duration(d);
                let slot = self.t.set(table, tkey, Value::Str(v.clone()));
                self.t.default_kept(slot, key, format!("{}'s default is {v}; ours differs", self.who));
            }
            return theirs;
        };
        let Some(d) = values::duration(&s.value, unit) else {
            self.t.unmapped(&s, format!("not a duration; {table}.{tkey} keeps our default"));
            return None;
        };
        if d.is_zero() {
            match zero {
                Zero::Off => {
                    self.put(table, tkey, Value::Str("0s".into()), &s);
                }
                Zero::Forever => {
                    let slot = self.t.set(table, tkey, Value::Str(FOREVER.into()));
                    self.t.partial(slot, &s, "0 means no limit; ours needs one: 10 years");
                }
                Zero::Min => {
                    let slot = self.t.set(table, tkey, Value::Str("1ms".into()));
                    self.t.partial(slot, &s, "0 means every time; ours needs more than zero: 1 ms");
                }
            }
            return Some(d);
        }
        if values::too_long(d) {
            let slot = self.t.set(table, tkey, Value::Str(FOREVER.into()));
            self.t.partial(slot, &s, "longer than the 10 years we accept: 10 years");
            return Some(d);
        }
        self.put(table, tkey, Value::Str(values::fmt_duration(d)), &s);
        Some(d)
    }

    /// A boolean setting; `theirs` as for [`Cx::duration`].
    pub fn boolean(&mut self, key: &str, table: &str, tkey: &str, theirs: Option<bool>) -> Option<bool> {
        let Some(s) = self.take(key) else {
            if let Some(b) = theirs {
                let slot = self.t.set(table, tkey, Value::Bool(b));
                let word = if b { "on" } else { "off" };
                self.t.default_kept(slot, key, format!("{}'s default is {word}; ours differs", self.who));
            }
            return theirs;
        };
        match values::boolean(&s.value) {
            Some(b) => {
                self.put(table, tkey, Value::Bool(b), &s);
                Some(b)
            }
            None => {
                self.t.unmapped(&s, format!("not a boolean; {table}.{tkey} keeps our default"));
                None
            }
        }
    }

    /// A whole number in `min..=max`; `theirs` as for [`Cx::duration`].
    #[allow(clippy::too_many_arguments)]
    pub fn number(
        &mut self,
        key: &str,
        table: &str,
        tkey: &str,
        min: u64,
        max: u64,
        theirs: Option<u64>,
    ) -> Option<u64> {
        let Some(s) = self.take(key) else {
            if let Some(n) = theirs {
                let slot = self.t.set(table, tkey, Value::Int(n));
                self.t.default_kept(slot, key, format!("{}'s default is {n}; ours differs", self.who));
            }
            return theirs;
        };
        match values::integer(&s.value) {
            Some(n) if (min..=max).contains(&n) => {
                self.put(table, tkey, Value::Int(n), &s);
                Some(n)
            }
            Some(n) => {
                let c = n.clamp(min, max);
                let slot = self.t.set(table, tkey, Value::Int(c));
                self.t.partial(slot, &s, format!("ours accepts {min} to {max}: {c}"));
                Some(c)
            }
            None => {
                self.t.unmapped(&s, format!("not a whole number; {table}.{tkey} keeps our default"));
                None
            }
        }
    }

    /// A string setting copied as it is (nothing written when empty).
    pub fn string(&mut self, key: &str, table: &str, tkey: &str) -> Option<String> {
        let s = self.take(key)?;
        if !s.value.is_empty() {
            self.put(table, tkey, Value::Str(s.value.clone()), &s);
        }
        Some(s.value)
    }

    /// A file name setting (nothing written when empty).
    pub fn file(&mut self, key: &str, table: &str, tkey: &str) -> Option<String> {
        let s = self.take(key)?;
        if s.value.is_empty() {
            return None;
        }
        let p = self.path(&s.value);
        self.put(table, tkey, Value::Str(p.clone()), &s);
        Some(p)
    }
}

/// Our spelling of one listen address, and what differs.
pub(crate) fn listen_host(a: &str) -> (String, Option<String>) {
    match a {
        "*" => (
            "0.0.0.0".into(),
            Some("`*` also listens on IPv6 in the source; here IPv4 only (use \"[::]:port\" for IPv6)".into()),
        ),
        "localhost" => ("127.0.0.1".into(), None),
        a if a.parse::<std::net::Ipv4Addr>().is_ok() => (a.into(), None),
        a if a.parse::<std::net::Ipv6Addr>().is_ok() => (format!("[{a}]"), None),
        a => (
            "127.0.0.1".into(),
            Some(format!("{a} is a host name; the pooler listens on an IP address: put {a}'s here")),
        ),
    }
}
