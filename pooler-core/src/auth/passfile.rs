//! The password file: pgbouncer `"user" "secret"` and pgpool `user:secret`
//! lines with plaintext, md5 or SCRAM-SHA-256 secrets.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::md5::{md5_answer, md5_secret_hex};

/// Why a password file could not be used. Messages name the line and never
/// contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed (in text given to [`PasswordFile::parse`]).
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A line of a file read by [`PasswordFile::load`] is malformed.
    #[error("{path}: line {line}: {problem}")]
    FileLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// A parsed `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt bytes.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramSecret {
    /// Parses a verifier as stored in `pg_authid.rolpassword`.
    pub fn parse(s: &str) -> Result<ScramSecret, String> {
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or("SCRAM secret must start with SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$').ok_or("SCRAM secret lacks the '$' before the keys")?;
        let (iter, salt) = params.split_once(':').ok_or("SCRAM secret lacks '<iterations>:<salt>'")?;
        let (stored, server) = keys.split_once(':').ok_or("SCRAM secret lacks '<StoredKey>:<ServerKey>'")?;
        let iterations: u32 = iter.parse().map_err(|_| "SCRAM iteration count is not a number")?;
        if iterations == 0 {
            return Err("SCRAM iteration count must be positive".into());
        }
        let salt = STANDARD.decode(salt).map_err(|_| "SCRAM salt is not valid base64")?;
        if salt.is_empty() {
            return Err("SCRAM salt is empty".into());
        }
        let key = |k: &str, what: &str| -> Result<[u8; 32], String> {
            let v = STANDARD.decode(k).map_err(|_| format!("SCRAM {what} is not valid base64"))?;
            v.try_into().map_err(|_| format!("SCRAM {what} is not 32 bytes"))
        };
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }

    /// Derives a verifier from a plaintext password (random salt, 4096
    /// iterations), as PostgreSQL does for `password_encryption = scram-sha-256`.
    pub fn from_password(password: &str) -> ScramSecret {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        match ScramSecret::parse(&text) {
            Ok(s) => s,
            // postgres-protocol always produces the documented format; should it
            // ever not, fail closed with a verifier nothing can match.
            Err(_) => ScramSecret { iterations: 4096, salt: vec![0; 16], stored_key: [0; 32], server_key: [0; 32] },
        }
    }
}

#[derive(Clone)]
enum Kind {
    Plain(String),
    Md5(String),
    Scram,
}

/// What the pooler knows about one user's password.
#[derive(Clone)]
pub struct UserSecret {
    kind: Kind,
    /// The SCRAM verifier: parsed from the file, or derived once from a
    /// plaintext (PBKDF2 per login would be slow).
    scram: Option<ScramSecret>,
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Plain(_) => "plaintext",
            Kind::Md5(_) => "md5",
            Kind::Scram => "scram-sha-256",
        };
        write!(f, "UserSecret({kind}, redacted)")
    }
}

impl UserSecret {
    /// Parses one secret as written in the file.
    ///
    /// Anything starting with `md5` or `SCRAM-SHA-256$` is a hashed secret
    /// and must be well formed: a typo in a hash must not turn it into a
    /// plaintext password that nobody knows.
    pub fn parse(secret: &str) -> Result<UserSecret, String> {
        if secret.starts_with("SCRAM-SHA-256$") {
            return Ok(UserSecret { kind: Kind::Scram, scram: Some(ScramSecret::parse(secret)?) });
        }
        if let Some(h) = secret.strip_prefix("md5") {
            if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(UserSecret { kind: Kind::Md5(h.to_ascii_lowercase()), scram: None });
            }
            return Err("md5 secret must be 'md5' followed by 32 hex digits \
                 (a plaintext password cannot start with 'md5')"
                .into());
        }
        Ok(UserSecret::plaintext_secret(secret))
    }

    /// A secret known in plaintext.
    pub fn plaintext_secret(password: &str) -> UserSecret {
        UserSecret { kind: Kind::Plain(password.to_owned()), scram: Some(ScramSecret::from_password(password)) }
    }

    /// The plaintext password, when the file holds one.
    pub fn plaintext(&self) -> Option<&str> {
        match &self.kind {
            Kind::Plain(p) => Some(p),
            _ => None,
        }
    }

    /// The stored md5 hash (32 hex digits, without the `md5` prefix), when the
    /// file holds an md5 secret.
    pub fn md5(&self) -> Option<&str> {
        match &self.kind {
            Kind::Md5(h) => Some(h),
            _ => None,
        }
    }

    /// hex(md5(password || user)), from the plaintext or the stored hash.
    pub fn md5_hex(&self, user: &str) -> Option<String> {
        match &self.kind {
            Kind::Plain(p) => Some(md5_secret_hex(p, user)),
            Kind::Md5(h) => Some(h.clone()),
            Kind::Scram => None,
        }
    }

    /// The answer to a server's md5 challenge with `salt`.
    pub fn md5_response(&self, user: &str, salt: [u8; 4]) -> Option<String> {
        self.md5_hex(user).map(|h| md5_answer(&h, salt))
    }

    /// The SCRAM verifier, when one is known or derivable.
    pub fn scram(&self) -> Option<&ScramSecret> {
        self.scram.as_ref()
    }
}

/// Users and their secrets.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, UserSecret>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordFile({} users)", self.users.len())
    }
}

impl PasswordFile {
    /// Reads and parses a file. Errors name the file (and the line).
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Read { path: path.display().to_string(), source })?;
        PasswordFile::parse(&text).map_err(|e| match e {
            PasswordFileError::Line { line, problem } => {
                PasswordFileError::FileLine { path: path.display().to_string(), line, problem }
            }
            other => other,
        })
    }

    /// Parses the text of a file. A user listed twice: the last line wins.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let err = |problem: String| PasswordFileError::Line { line: i + 1, problem };
            let (user, secret) =
                if line.starts_with('"') { parse_quoted(line) } else { parse_colon(line) }.map_err(err)?;
            if user.is_empty() {
                return Err(err("empty user name".into()));
            }
            let secret = UserSecret::parse(&secret).map_err(err)?;
            users.insert(user, secret);
        }
        Ok(PasswordFile { users })
    }

    /// The secret of `user`.
    pub(crate) fn get(&self, user: &str) -> Option<&UserSecret> {
        self.users.get(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `"user" "secret"`, with `""` standing for a quote inside quotes.
fn parse_quoted(line: &str) -> Result<(String, String), String> {
    let (user, rest) = take_quoted(line)?;
    let rest = rest.trim_start();
    if !rest.starts_with('"') {
        return Err("expected a quoted secret after the quoted user name".into());
    }
    let (secret, tail) = take_quoted(rest)?;
    let tail = tail.trim();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err("unexpected text after the secret".into());
    }
    Ok((user, secret))
}

fn take_quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if let Some((_, '"')) = chars.peek() {
                chars.next();
                out.push('"');
                continue;
            }
            return Ok((out, &s[i + 1..]));
        }
        out.push(c);
    }
    Err("unterminated quoted string".into())
}

/// `user:secret` (the first colon separates).
fn parse_colon(line: &str) -> Result<(String, String), String> {
    let (user, secret) = line.split_once(':').ok_or("expected \"user\" \"secret\" or user:secret")?;
    Ok((user.trim().to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_line_formats_and_all_secret_kinds_parse() {
        let md5 = postgres_protocol::password::md5(b"pw", "bob");
        let scram = postgres_protocol::password::scram_sha_256(b"pw");
        let text = format!(
            "# comment\n; also a comment\n\n\"alice\" \"pl\"\"ain\"\nbob:{md5}\n\"carol\" \"{scram}\"\ndave:a:b:c\n"
        );
        let f = PasswordFile::parse(&text).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f.get("alice").unwrap().plaintext(), Some("pl\"ain"));
        assert!(f.get("alice").unwrap().scram().is_some());
        assert_eq!(f.get("bob").unwrap().md5(), Some(&md5[3..]));
        assert!(f.get("bob").unwrap().scram().is_none());
        let c = f.get("carol").unwrap();
        assert!(c.plaintext().is_none() && c.md5().is_none());
        assert_eq!(c.scram().unwrap().iterations, 4096);
        assert_eq!(f.get("dave").unwrap().plaintext(), Some("a:b:c"));
    }

    #[test]
    fn malformed_secrets_are_refused_with_the_line_number() {
        let bad = [
            "u:SCRAM-SHA-256$4096:c2FsdA==$bm90MzJieXRlcw==:bm90MzJieXRlcw==",
            "u:SCRAM-SHA-256$x:c2FsdA==$a:b",
            "u:SCRAM-SHA-256$4096",
            "u:md5zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "bob:md5zzzz",
            "bob:md5",
            "\"bob\" \"md5zzzz\"",
            "bob:md50123456789abcdef0123456789abcde",
            "bob:md50123456789abcdef0123456789abcdef0",
            "bob:md50123456789abcdef0123456789abcdeg",
            "bob:md5 0123456789abcdef0123456789abcdef",
            "u:SCRAM-SHA-256$",
            "u:SCRAM-SHA-256$4096:c2FsdA==$",
            "\"u\" \"SCRAM-SHA-256$4096:!!!$a:b\"",
            "\"u\" \"unterminated",
            "just-a-name",
        ];
        for line in bad {
            let err = PasswordFile::parse(&format!("# first\n{line}\n")).unwrap_err().to_string();
            assert!(err.starts_with("line 2:"), "{line}: {err}");
            assert!(!err.contains("c2FsdA"), "secret leaked: {err}");
        }
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("pooler-passfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users.txt");
        std::fs::write(&file, "a:b\nbob:md5zzzz\n").unwrap();
        let err = PasswordFile::load(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: line 2: md5 secret", file.display())), "{err}");
        let err = PasswordFile::load(&dir).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {}", dir.display())), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let f = PasswordFile::parse("\"alice\" \"hunter2\"\n").unwrap();
        let shown = format!("{f:?} {:?} {:?}", f.get("alice").unwrap(), f.get("alice").unwrap().scram());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn last_entry_for_a_user_wins() {
        let f = PasswordFile::parse("a:one\na:two\n").unwrap();
        assert_eq!(f.get("a").unwrap().plaintext(), Some("two"));
    }
}
