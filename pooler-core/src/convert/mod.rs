//! Migration: turns a pgbouncer.ini or a pgpool.conf into this pooler's TOML.
//!
//! [`from_pgbouncer`] and [`from_pgpool`] read the other program's file and
//! return a [`Conversion`]: the TOML text, with a comment for every setting
//! that has no equivalent or maps only partly, and the same remarks as a
//! list of [`Note`]s, each naming the source line. Nothing is dropped
//! silently: a setting the converter does not know becomes a note too.
//!
//! Where the other program's default differs from ours and the file relied
//! on it, the output sets the value explicitly (with a comment), so the
//! pooler behaves as the old setup did.
//!
//! The conversion reads no file but pgbouncer's `%include`s; it checks
//! nothing on the network. The output is meant to be checked with
//! `pooler check --config FILE` before use.

use std::path::{Path, PathBuf};

mod emit;
mod map;
mod parse;
mod pgbouncer;
mod pgpool;
mod values;

/// Which program a configuration file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// pgbouncer's ini file (`[databases]`, `[pgbouncer]`, `[users]`).
    Pgbouncer,
    /// pgpool-II's `pgpool.conf` (`key = value` lines, `backend_hostname0`...).
    Pgpool,
}

impl Source {
    /// Guesses the program from the text (pgbouncer's sections, pgpool's
    /// `backend_hostname`), then from the file name (`pgbouncer*`, `*.ini`,
    /// `pgpool*`). `None`: neither looks likely.
    pub fn detect(text: &str, file: &Path) -> Option<Source> {
        let mut pgpool = false;
        let mut pgbouncer = false;
        for line in text.lines() {
            let l = line.trim().to_ascii_lowercase();
            if l.starts_with("[pgbouncer]") || l.starts_with("[databases]") {
                pgbouncer = true;
            }
            if l.starts_with("backend_hostname") || l.starts_with("backend_clustering_mode") {
                pgpool = true;
            }
        }
        match (pgbouncer, pgpool) {
            (true, false) => return Some(Source::Pgbouncer),
            (false, true) => return Some(Source::Pgpool),
            _ => {}
        }
        let name = file.file_name()?.to_str()?.to_ascii_lowercase();
        if name.contains("pgbouncer") || name.ends_with(".ini") {
            Some(Source::Pgbouncer)
        } else if name.contains("pgpool") {
            Some(Source::Pgpool)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Pgbouncer => "pgbouncer",
            Source::Pgpool => "pgpool-II",
        })
    }
}

/// What a [`Note`] says about a source setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteKind {
    /// The setting has no equivalent: nothing in the output does what it did.
    Unmapped,
    /// The setting became a key that does only part of what it did, or does
    /// it differently; the comment next to the key says how.
    Partial,
    /// Nothing needs setting: the pooler already behaves as the setting asked.
    NotNeeded,
    /// The file relied on the other program's default, which differs from
    /// ours: the output sets it explicitly.
    DefaultKept,
    /// The same setting appears again later in the file; the later one wins,
    /// as in the other program.
    Overridden,
}

/// One remark about the conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// What kind of remark it is.
    pub kind: NoteKind,
    /// The source setting, e.g. `query_wait_timeout`, `[databases] app: user`.
    pub setting: String,
    /// Where it was: `file:line`; `None` for a default the file relied on.
    pub location: Option<String>,
    /// What happened to it and why.
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}: {}", self.setting, self.message),
            None => write!(f, "{} (not set: default): {}", self.setting, self.message),
        }
    }
}

/// The converted configuration.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The program the file came from.
    pub source: Source,
    /// The TOML text, comments included.
    pub toml: String,
    /// Every remark, in the order of the source file (defaults last).
    pub notes: Vec<Note>,
}

impl Conversion {
    /// How many source settings have no equivalent.
    pub fn unmapped(&self) -> usize {
        self.notes.iter().filter(|n| n.kind == NoteKind::Unmapped).count()
    }

    /// How many source settings map only partly.
    pub fn partial(&self) -> usize {
        self.notes.iter().filter(|n| n.kind == NoteKind::Partial).count()
    }
}

/// Why a file could not be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A line is not of the file's form.
    #[error("{location}: {problem}")]
    Syntax {
        /// `file:line`.
        location: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A pgbouncer `%include` could not be read.
    #[error("{location}: cannot read included file {}: {source}", path.display())]
    Include {
        /// `file:line` of the `%include`.
        location: String,
        /// The file it names.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file names no server to put in `[[nodes]]`.
    #[error("{file}: {problem}")]
    NoServer {
        /// The file.
        file: String,
        /// What is missing.
        problem: String,
    },
}

/// Converts a pgbouncer ini file. `file` is its path: it names the file in
/// the notes, and `%include`s and relative file names (auth_file, TLS
/// files) are taken relative to its directory. Included files are read.
pub fn from_pgbouncer(text: &str, file: &Path) -> Result<Conversion, ConvertError> {
    pgbouncer::convert(text, file)
}

/// Converts a pgpool-II `pgpool.conf`. `file` is its path: it names the
/// file in the notes, and relative file names (`pool_passwd`,
/// `pool_hba.conf`, TLS files) are taken relative to its directory. Nothing
/// is read.
pub fn from_pgpool(text: &str, file: &Path) -> Result<Conversion, ConvertError> {
    pgpool::convert(text, file)
}

/// Converts `text` as a file of `source` (see [`from_pgbouncer`] and
/// [`from_pgpool`]).
pub fn convert(source: Source, text: &str, file: &Path) -> Result<Conversion, ConvertError> {
    match source {
        Source::Pgbouncer => from_pgbouncer(text, file),
        Source::Pgpool => from_pgpool(text, file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_told_by_content_then_by_name() {
        let p = Path::new("x.conf");
        assert_eq!(Source::detect("[databases]\n* = host=h\n", p), Some(Source::Pgbouncer));
        assert_eq!(Source::detect("backend_hostname0 = 'h'\n", p), Some(Source::Pgpool));
        assert_eq!(Source::detect("", Path::new("/etc/pgbouncer/pgbouncer.ini")), Some(Source::Pgbouncer));
        assert_eq!(Source::detect("port = 9999\n", Path::new("/etc/pgpool-II/pgpool.conf")), Some(Source::Pgpool));
        assert_eq!(Source::detect("port = 9999\n", p), None);
    }
}
