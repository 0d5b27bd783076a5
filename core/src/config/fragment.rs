//! One included file: `[[bots]]` only, read and checked on its own.
//!
//! A fragment is checked with the same rules as bots in the main file
//! (`${NAME}` references included); what it may not do is set anything
//! else, since server, queue and delivery settings belong to one file that
//! every tenant shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::bots::bots;
use super::error::{ConfigError, Problem};
use super::load::{parse_document, read_source};
use super::model::BotConfig;
use super::reader::{Reader, Table, line_at};

/// The keys a fragment may have at its top level.
const FRAGMENT_KEYS: &[&str] = &["bots"];

/// A fragment file that passed every check of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The file, as the include pattern found it.
    pub file: PathBuf,
    /// Its bots, in file order.
    pub bots: Vec<Arc<BotConfig>>,
    /// The line of each bot's `id`, for messages about clashes with other
    /// files (same order as `bots`).
    pub id_lines: Vec<Option<usize>>,
}

/// Reads and checks the fragment at `path`, taking `${NAME}` from the
/// process environment.
///
/// # Errors
///
/// [`ConfigError`] with every problem: unreadable, empty
/// ([`ConfigError::is_empty_file`]), not TOML, a key other than `bots`, or
/// an invalid bot or webhook.
pub fn load_fragment(path: &Path) -> Result<Fragment, ConfigError> {
    let text = read_source(path)?;
    parse_fragment(&text, path, &|name| std::env::var(name).ok())
}

/// Checks fragment `text` read from `path`.
///
/// # Errors
///
/// As [`load_fragment`].
pub fn parse_fragment(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Fragment, ConfigError> {
    let doc = parse_document(text, path)?;
    let mut reader = Reader::new(text, path, env);
    let root = Table::document(&doc);
    for (key, span, value) in root.entries() {
        if FRAGMENT_KEYS.contains(&key) {
            continue;
        }
        let section = if matches!(value.get_ref(), DeValue::Table(_)) {
            " (as a [section] there)"
        } else {
            ""
        };
        reader.problem(
            key,
            Some(span),
            format!(
                "an included file holds [[bots]] only; `{key}` belongs in the main config file{section}"
            ),
        );
    }
    let bots = bots(&mut reader, &root);
    let mut problems = reader.into_problems();
    problems.sort_by_key(|problem| problem.line);
    match bots {
        Some(bots) if problems.is_empty() => {
            let id_lines = id_lines(&doc, text, bots.len());
            Ok(Fragment {
                file: path.to_path_buf(),
                bots,
                id_lines,
            })
        }
        _ if problems.is_empty() => Err(ConfigError::new(vec![Problem::new(
            path,
            None,
            "",
            "the file is invalid but no problem was recorded (a statushook bug)",
        )])),
        _ => Err(ConfigError::new(problems)),
    }
}

/// The line of each `[[bots]]` entry's `id` (the entry's own line when it
/// has none), for `count` bots.
fn id_lines(doc: &toml::Spanned<DeTable<'_>>, text: &str, count: usize) -> Vec<Option<usize>> {
    let entries = match doc.get_ref().get("bots").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items.iter().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    (0..count)
        .map(|i| {
            let entry = entries.get(i)?;
            let span = match entry.get_ref() {
                DeValue::Table(t) => t.get("id").map_or(entry.span(), |id| id.span()),
                _ => entry.span(),
            };
            Some(line_at(text, span.start))
        })
        .collect()
}
