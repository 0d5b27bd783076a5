//! [`ConfigError`] and [`Problem`]: everything wrong with a config file, each
//! with the file, line and key it concerns.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a config file.
///
/// Displays as `config.toml:12: bots[0].webhooks[1].url: <message>`; the line
/// is left out when unknown, the key when the problem concerns the whole file
/// (a syntax error, an unreadable file). Messages are lowercase, name the bad
/// input and never repeat a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config file.
    pub file: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// The full path of the key, e.g. `bots[0].webhooks[1].url`; empty when
    /// the problem is about the file as a whole.
    pub key: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem with `key` (empty for the whole file) at `line` of `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            file: file.into(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A config file that cannot be used, with every [`Problem`] found in it.
///
/// Loading does not stop at the first problem: an operator fixes them all
/// in one pass. Displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The file has nothing but whitespace.
    EmptyFile,
    /// Anything else.
    Invalid,
}

/// The message of an empty (or whitespace-only) config file.
pub(super) const EMPTY_FILE: &str = "the config file is empty";

impl ConfigError {
    /// An error made of `problems`, such as plugins of a valid config that
    /// fail to load.
    pub fn new(problems: Vec<Problem>) -> Self {
        ConfigError {
            problems,
            kind: Kind::Invalid,
        }
    }

    /// The error for an empty file.
    pub(super) fn empty_file(file: PathBuf) -> Self {
        ConfigError {
            problems: vec![Problem::new(file, None, "", EMPTY_FILE)],
            kind: Kind::EmptyFile,
        }
    }

    /// Whether the file was empty or whitespace only. A reloader treats that
    /// as a write in progress and keeps the running config without a word.
    pub fn is_empty_file(&self) -> bool {
        self.kind == Kind::EmptyFile
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
