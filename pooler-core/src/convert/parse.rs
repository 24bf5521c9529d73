//! Line parsers: pgbouncer's ini file (sections, `%include`) and pgpool's
//! `key = value` file (PostgreSQL's configuration-file syntax).

use std::path::Path;

use super::ConvertError;

/// How deep pgbouncer `%include`s may nest before the converter refuses.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One `key = value` line of a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    /// Section, lowercased (`pgbouncer`, `databases`, `users`); empty in pgpool.conf.
    pub section: String,
    /// The key: lowercased, except database and user names in pgbouncer's
    /// `[databases]` and `[users]`.
    pub key: String,
    /// The value, unquoted.
    pub value: String,
    /// `file:line`.
    pub at: String,
}

impl Setting {
    /// The value, or `(hidden)` when the key names a secret.
    pub fn shown(&self) -> &str {
        if is_secret(&self.key) {
            "(hidden)"
        } else {
            &self.value
        }
    }
}

/// Keys whose value must never be copied into comments.
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("passphrase") || k.contains("pass_")
}

fn syntax(file: &str, line: usize, problem: impl Into<String>) -> ConvertError {
    ConvertError::Syntax { location: format!("{file}:{line}"), problem: problem.into() }
}

/// The display name of `file` in notes: the path as given.
pub(crate) fn name_of(file: &Path) -> String {
    file.display().to_string()
}

/// Parses a pgbouncer ini file, following `%include` (relative to the
/// including file's directory).
pub(crate) fn ini(text: &str, file: &Path) -> Result<Vec<Setting>, ConvertError> {
    let mut out = Vec::new();
    let mut section = String::new();
    ini_into(text, file, 0, &mut section, &mut out)?;
    Ok(out)
}

fn ini_into(
    text: &str,
    file: &Path,
    depth: usize,
    section: &mut String,
    out: &mut Vec<Setting>,
) -> Result<(), ConvertError> {
    let name = name_of(file);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("%include") {
            let target = unquote_ini(rest.trim()).map_err(|p| syntax(&name, n, p))?;
            if target.is_empty() {
                return Err(syntax(&name, n, "%include needs a file name"));
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(syntax(&name, n, format!("%include nested more than {MAX_INCLUDE_DEPTH} deep")));
            }
            let path = match file.parent() {
                Some(dir) if Path::new(&target).is_relative() => dir.join(&target),
                _ => Path::new(&target).to_path_buf(),
            };
            let inner = std::fs::read_to_string(&path).map_err(|source| ConvertError::Include {
                location: format!("{name}:{n}"),
                path: path.clone(),
                source,
            })?;
            ini_into(&inner, &path, depth + 1, section, out)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(s) = rest.strip_suffix(']') else {
                return Err(syntax(&name, n, format!("{line:?}: a section header must end with ']'")));
            };
            *section = s.trim().to_ascii_lowercase();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(syntax(&name, n, format!("{line:?} is neither `key = value` nor a [section]")));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(syntax(&name, n, "a setting without a name"));
        }
        // Database and user names keep their case; settings do not.
        let key = if section == "databases" || section == "users" {
            unquote_ini(k).map_err(|p| syntax(&name, n, p))?
        } else {
            k.to_ascii_lowercase()
        };
        let value = unquote_ini(v.trim()).map_err(|p| syntax(&name, n, p))?;
        out.push(Setting { section: section.clone(), key, value, at: format!("{name}:{n}") });
    }
    Ok(())
}

/// A pgbouncer value: as written, or inside double quotes (`""` is a quote).
/// A connection string (`host=a dbname='x'`) is kept as written.
fn unquote_ini(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else { return Ok(v.to_owned()) };
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
                continue;
            }
            let rest: String = chars.collect();
            if !rest.trim().is_empty() {
                return Err(format!("text after the closing quote: {:?}", rest.trim()));
            }
            return Ok(out);
        }
        out.push(c);
    }
    Err("a quoted value without its closing quote".into())
}

/// Parses a pgpool.conf: `name = value` or `name value`, values bare or in
/// single quotes (`''` and `\'` are quotes), `#` comments outside quotes.
pub(crate) fn conf(text: &str, file: &Path) -> Result<Vec<Setting>, ConvertError> {
    let name = name_of(file);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key_len = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(line.len());
        if key_len == 0 {
            return Err(syntax(&name, n, format!("{:?} does not start with a setting name", line.trim_end())));
        }
        let key = line[..key_len].to_ascii_lowercase();
        let mut rest = line[key_len..].trim_start();
        if let Some(r) = rest.strip_prefix('=') {
            rest = r.trim_start();
        }
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let (v, after) =
                single_quoted(quoted).ok_or_else(|| syntax(&name, n, "a quoted value without its closing quote"))?;
            let after = after.trim();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(syntax(&name, n, format!("text after the closing quote: {after:?}")));
            }
            v
        } else {
            let end = rest.find('#').unwrap_or(rest.len());
            let v = rest[..end].trim();
            if v.is_empty() {
                return Err(syntax(&name, n, format!("{key} has no value")));
            }
            if v.contains(char::is_whitespace) {
                return Err(syntax(&name, n, format!("{key} = {v}: a value with spaces must be in single quotes")));
            }
            v.to_owned()
        };
        out.push(Setting { section: String::new(), key, value, at: format!("{name}:{n}") });
    }
    Ok(out)
}

/// The inside of a single-quoted value and what follows its closing quote.
fn single_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        match c {
            '\'' if iter.peek().map(|&(_, c)| c) == Some('\'') => {
                iter.next();
                out.push('\'');
            }
            '\'' => return Some((out, &s[i + 1..])),
            // `\'` is a quote; any other backslash stays, as pgpool keeps it
            // (its regular-expression lists need `\*`, `\;`).
            '\\' if iter.peek().map(|&(_, c)| c) == Some('\'') => {
                iter.next();
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    None
}

/// A pgbouncer connection string (`host=a port=5432 dbname='my db'`) as
/// `(key, value)` pairs in order. Values may be single-quoted (`\'` and
/// `\\` escape).
pub(crate) fn connstring(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| format!("{rest:?} is not key=value"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{:?} is not key=value", rest.split_whitespace().next().unwrap_or(rest)));
        }
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('\'') {
            let mut v = String::new();
            let mut end = None;
            let mut it = q.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = it.next() {
                            v.push(e);
                        }
                    }
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("{key}: a quoted value without its closing quote"))?;
            (v, &q[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((key.to_ascii_lowercase(), value));
        rest = next.trim_start();
    }
    Ok(out)
}

/// Settings not yet converted, in file order; the converters take what they
/// map, and whatever is left becomes a note, so nothing is dropped.
pub(crate) struct Settings(Vec<Option<Setting>>);

impl Settings {
    /// Keeps the last of settings set more than once (as both programs do)
    /// and returns the earlier ones with the line that overrides them.
    pub fn new(list: Vec<Setting>) -> (Settings, Vec<(Setting, String)>) {
        let mut keep: Vec<Option<Setting>> = Vec::with_capacity(list.len());
        let mut overridden = Vec::new();
        for s in list {
            if let Some(i) =
                keep.iter().position(|k| k.as_ref().is_some_and(|k| k.section == s.section && k.key == s.key))
            {
                if let Some(old) = keep[i].take() {
                    overridden.push((old, s.at.clone()));
                }
            }
            keep.push(Some(s));
        }
        (Settings(keep), overridden)
    }

    /// The setting `key` of `section`, taken out.
    pub fn take(&mut self, section: &str, key: &str) -> Option<Setting> {
        self.0.iter_mut().find(|s| s.as_ref().is_some_and(|s| s.section == section && s.key == key))?.take()
    }

    /// The setting `key` of `section`, left in place.
    pub fn peek(&self, section: &str, key: &str) -> Option<&Setting> {
        self.0.iter().flatten().find(|s| s.section == section && s.key == key)
    }

    /// Every setting `f` accepts, taken out, in file order.
    pub fn take_where(&mut self, f: impl Fn(&Setting) -> bool) -> Vec<Setting> {
        self.0.iter_mut().filter(|s| s.as_ref().is_some_and(&f)).filter_map(Option::take).collect()
    }

    /// What no converter took, in file order.
    pub fn rest(self) -> Vec<Setting> {
        self.0.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_keys_quotes_and_comments() {
        let s = ini(
            "; comment\n[databases]\nMyDb = host=10.0.0.1 dbname='my db'\n\n[PgBouncer]\nListen_Port=6433\n\
             auth_query = \"SELECT a, \"\"b\"\" FROM t WHERE u=$1\"\n# another\n",
            Path::new("pgb.ini"),
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].section.as_str(), s[0].key.as_str()), ("databases", "MyDb"));
        assert_eq!(s[0].value, "host=10.0.0.1 dbname='my db'");
        assert_eq!(
            (s[1].section.as_str(), s[1].key.as_str(), s[1].value.as_str()),
            ("pgbouncer", "listen_port", "6433")
        );
        assert_eq!(s[1].at, "pgb.ini:6");
        assert_eq!(s[2].value, "SELECT a, \"b\" FROM t WHERE u=$1");
    }

    #[test]
    fn ini_errors_name_the_line() {
        let e = ini("[pgbouncer]\nlisten_port\n", Path::new("a.ini")).unwrap_err().to_string();
        assert!(e.starts_with("a.ini:2:"), "{e}");
        let e = ini("[pgbouncer\n", Path::new("a.ini")).unwrap_err().to_string();
        assert!(e.contains("a.ini:1"), "{e}");
        let e = ini("%include /nonexistent/x.ini\n", Path::new("a.ini")).unwrap_err().to_string();
        assert!(e.contains("a.ini:1") && e.contains("/nonexistent/x.ini"), "{e}");
    }

    #[test]
    fn pgpool_values_with_and_without_quotes_and_equals() {
        let s = conf(
            "port=9999\nlisten_addresses = '*'   # all\nnum_init_children 32\n\
             failover_command = '/x.sh %d ''a'' \\'b\\' # not a comment'\n  # indented comment\nhealth_check_period = 10s # unit\n",
            Path::new("pgpool.conf"),
        )
        .unwrap();
        let kv: Vec<(&str, &str)> = s.iter().map(|s| (s.key.as_str(), s.value.as_str())).collect();
        assert_eq!(
            kv,
            [
                ("port", "9999"),
                ("listen_addresses", "*"),
                ("num_init_children", "32"),
                ("failover_command", "/x.sh %d 'a' 'b' # not a comment"),
                ("health_check_period", "10s"),
            ]
        );
        assert_eq!(s[3].at, "pgpool.conf:4");
        for bad in ["x = 'open\n", "x =\n", "x = a b\n", "= 3\n", "x = 'a' b\n"] {
            let e = conf(bad, Path::new("p.conf")).unwrap_err().to_string();
            assert!(e.starts_with("p.conf:1:"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn connection_strings_split_with_quotes() {
        let kv = connstring("host=a port=5433  dbname='my \\'db\\'' user=u").unwrap();
        assert_eq!(
            kv,
            [("host", "a"), ("port", "5433"), ("dbname", "my 'db'"), ("user", "u")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(connstring("").unwrap().is_empty());
        assert!(connstring("host").is_err());
        assert!(connstring("dbname='x").is_err());
    }

    #[test]
    fn secrets_are_hidden() {
        let s = Setting {
            section: String::new(),
            key: "sr_check_password".into(),
            value: "s3cret".into(),
            at: String::new(),
        };
        assert_eq!(s.shown(), "(hidden)");
    }
}
