//! Reading the spanned TOML tree into typed values.
//!
//! Every getter records a [`Problem`], with the key's full path and line, for
//! a missing, mistyped or unknown key and carries on, so one pass finds every
//! problem. This is `#[serde(deny_unknown_fields)]` done by hand: serde stops
//! at the first error and cannot say where an unknown key is. Strings have
//! their `${NAME}` references substituted here, so every string value gets
//! them.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::duration::parse_duration;
use super::env::interpolate;
use super::error::Problem;

/// Byte offsets into the config text.
pub(super) type Span = Range<usize>;
/// A value of the tree with its span.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// Whether a key must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Absent is a problem.
    Required,
    /// Absent means the default.
    Optional,
}

/// Collects problems while values are read out of one config text.
pub(super) struct Reader<'a> {
    text: &'a str,
    file: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

/// A table of the tree and the key path that leads to it.
pub(super) struct Table<'t, 'i> {
    path: String,
    span: Option<Span>,
    entries: Option<&'t DeTable<'i>>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// A section that is not in the file: every key is absent.
    pub(super) fn absent(path: &str) -> Self {
        Table {
            path: path.to_string(),
            span: None,
            entries: None,
        }
    }

    /// The document's top-level table, its keys unchecked.
    pub(super) fn document(doc: &'t Spanned<DeTable<'i>>) -> Self {
        Table {
            path: String::new(),
            span: Some(doc.span()),
            entries: Some(doc.get_ref()),
        }
    }

    /// The key path of the table itself (`bots[0]`).
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The full path of `key` in this table (`bots[0].id`).
    pub(super) fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Where the table starts (its `[header]` or `{`).
    pub(super) fn span(&self) -> Option<Span> {
        self.span.clone()
    }

    /// The value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries?.get(key)
    }

    /// Whether `key` is present.
    pub(super) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every key with its span and value, in file order.
    pub(super) fn entries(&self) -> Vec<(&'t str, Span, &'t Value<'i>)> {
        let mut entries: Vec<_> = self
            .entries
            .into_iter()
            .flat_map(|table| table.iter())
            .map(|(key, value)| (key.get_ref().as_ref(), key.span(), value))
            .collect();
        entries.sort_by_key(|(_, span, _)| span.start);
        entries
    }
}

impl<'a> Reader<'a> {
    /// A reader of `text`, the contents of `file`, taking `${NAME}` from `env`.
    pub(super) fn new(
        text: &'a str,
        file: &'a Path,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Reader {
            text,
            file,
            env,
            problems: Vec::new(),
        }
    }

    /// Every problem recorded so far.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// The 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        line_at(self.text, offset)
    }

    /// Records a problem with `key` at `span`.
    pub(super) fn problem(&mut self, key: &str, span: Option<Span>, message: impl Into<String>) {
        let line = span.map(|span| self.line(span.start));
        self.problems
            .push(Problem::new(self.file, line, key, message.into()));
    }

    /// The document's top-level table; keys outside `known` are problems.
    pub(super) fn root<'t, 'i>(
        &mut self,
        doc: &'t Spanned<DeTable<'i>>,
        known: &[&str],
    ) -> Table<'t, 'i> {
        let table = Table::document(doc);
        self.unknown_keys(&table, known);
        table
    }

    /// Records a problem for every key of `table` outside `known`.
    pub(super) fn unknown_keys(&mut self, table: &Table<'_, '_>, known: &[&str]) {
        for (key, span, _) in table.entries() {
            if known.contains(&key) {
                continue;
            }
            let hint = match closest(key, known) {
                Some(close) => format!(" (did you mean {close}?)"),
                None => String::new(),
            };
            let message = match known {
                [] => format!("unknown key{hint}; this table takes no keys"),
                [only] => format!("unknown key{hint}; the only key here is {only}"),
                _ => format!("unknown key{hint}; expected one of {}", known.join(", ")),
            };
            self.problem(&table.key(key), Some(span), message);
        }
    }

    /// Records that `key` of `table` is missing.
    pub(super) fn missing(&mut self, table: &Table<'_, '_>, key: &str, message: &str) {
        self.problem(&table.key(key), table.span(), message);
    }

    /// Reads `key` of `table` with `read`; an absent required key is a
    /// problem. `None`: absent or invalid (and recorded).
    pub(super) fn field<'t, 'i, T>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        need: Need,
        read: impl FnOnce(&mut Self, &str, &'t Value<'i>) -> Option<T>,
    ) -> Option<T> {
        match table.get(key) {
            Some(value) => read(self, &table.key(key), value),
            None => {
                if need == Need::Required {
                    self.missing(table, key, "required key is missing");
                }
                None
            }
        }
    }

    /// A table, checking its keys against `known` unless `None`.
    pub(super) fn table<'t, 'i>(
        &mut self,
        path: &str,
        value: &'t Value<'i>,
        known: Option<&[&str]>,
    ) -> Option<Table<'t, 'i>> {
        let DeValue::Table(entries) = value.get_ref() else {
            self.wrong_type(path, value, "a table");
            return None;
        };
        let table = Table {
            path: path.to_string(),
            span: Some(value.span()),
            entries: Some(entries),
        };
        if let Some(known) = known {
            self.unknown_keys(&table, known);
        }
        Some(table)
    }

    /// An array of tables (`[[bots]]`), each checked against `known`.
    /// Entries that are not tables are problems and left out.
    pub(super) fn tables<'t, 'i>(
        &mut self,
        path: &str,
        value: &'t Value<'i>,
        known: &[&str],
    ) -> Option<Vec<Table<'t, 'i>>> {
        let DeValue::Array(items) = value.get_ref() else {
            // `bots[0].webhooks` is written `[[bots.webhooks]]`.
            let mut header = String::new();
            let mut in_index = false;
            for c in path.chars() {
                match c {
                    '[' => in_index = true,
                    ']' => in_index = false,
                    c if !in_index => header.push(c),
                    _ => {}
                }
            }
            self.wrong_type(path, value, &format!("an array of tables ([[{header}]])"));
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.table(&index(path, i), item, Some(known)))
                .collect(),
        )
    }

    /// An array.
    pub(super) fn array<'t, 'i>(
        &mut self,
        path: &str,
        value: &'t Value<'i>,
    ) -> Option<&'t DeArray<'i>> {
        match value.get_ref() {
            DeValue::Array(items) => Some(items),
            _ => {
                self.wrong_type(path, value, "an array");
                None
            }
        }
    }

    /// A string, with `${NAME}` substituted.
    pub(super) fn string(&mut self, path: &str, value: &Value<'_>) -> Option<Spanned<String>> {
        let DeValue::String(raw) = value.get_ref() else {
            self.wrong_type(path, value, "a string");
            return None;
        };
        match interpolate(raw, self.env) {
            Ok(text) => Some(Spanned::new(value.span(), text)),
            Err(errors) => {
                for error in errors {
                    self.problem(path, Some(value.span()), error.message());
                }
                None
            }
        }
    }

    /// An array of strings, each with its path (`key[1]`); bad entries are
    /// problems and left out.
    pub(super) fn strings(
        &mut self,
        path: &str,
        value: &Value<'_>,
    ) -> Option<Vec<(String, Spanned<String>)>> {
        let items = self.array(path, value)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let path = index(path, i);
                    let text = self.string(&path, item)?;
                    Some((path, text))
                })
                .collect(),
        )
    }

    /// A boolean.
    pub(super) fn boolean(&mut self, path: &str, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(path, value, "true or false");
                None
            }
        }
    }

    /// A whole number greater than zero that fits `T`.
    pub(super) fn positive<T: TryFrom<u64>>(&mut self, path: &str, value: &Value<'_>) -> Option<T> {
        self.whole(path, value, 1)
    }

    /// A whole number of `min` (0 or 1) or more that fits `T`.
    pub(super) fn whole<T: TryFrom<u64>>(
        &mut self,
        path: &str,
        value: &Value<'_>,
        min: u64,
    ) -> Option<T> {
        let DeValue::Integer(int) = value.get_ref() else {
            self.wrong_type(path, value, "a whole number");
            return None;
        };
        let too_small = if min == 0 {
            "must be 0 or more"
        } else {
            "must be greater than 0"
        };
        let number = u64::from_str_radix(int.as_str(), int.radix()).ok();
        match number {
            Some(n) if n < min => self.problem(path, Some(value.span()), too_small),
            Some(n) => match T::try_from(n) {
                Ok(n) => return Some(n),
                Err(_) => self.problem(path, Some(value.span()), format!("{n} is too large")),
            },
            None if int.as_str().starts_with('-') => {
                self.problem(path, Some(value.span()), too_small);
            }
            None => self.problem(path, Some(value.span()), "is too large"),
        }
        None
    }

    /// A duration such as `"10s"`.
    pub(super) fn duration(&mut self, path: &str, value: &Value<'_>) -> Option<Spanned<Duration>> {
        let text = self.string(path, value)?;
        match parse_duration(text.get_ref()) {
            Ok(duration) => Some(Spanned::new(text.span(), duration)),
            Err(message) => {
                self.problem(path, Some(text.span()), message);
                None
            }
        }
    }

    /// An array of durations; bad entries are problems and left out.
    pub(super) fn durations(
        &mut self,
        path: &str,
        value: &Value<'_>,
    ) -> Option<Vec<Spanned<Duration>>> {
        let items = self.array(path, value)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.duration(&index(path, i), item))
                .collect(),
        )
    }

    /// Records that `value` is not `expected`.
    fn wrong_type(&mut self, path: &str, value: &Value<'_>, expected: &str) {
        let found = describe(value.get_ref());
        self.problem(
            path,
            Some(value.span()),
            format!("expected {expected}, found {found}"),
        );
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.matches('\n').count() + 1
}

/// The path of `key` inside the table at `path`: `a.b`, with keys that are
/// not bare TOML keys quoted (`settings."x.y"`).
pub(super) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key: Cow<'_, str> = if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    };
    if path.is_empty() {
        key.into_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of entry `i` of the array at `path`: `bots[0]`.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// "a string", "an integer", ... for messages.
fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The known key a typo most likely meant: same letters in another case, or
/// at most two edits away.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|&candidate| (strsim::levenshtein(&lower, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2.min(candidate.len() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_bare() {
        assert_eq!(join("", "server"), "server");
        assert_eq!(join("bots[0]", "id"), "bots[0].id");
        assert_eq!(join("settings", "a.b"), "settings.\"a.b\"");
        assert_eq!(join("settings", ""), "settings.\"\"");
        assert_eq!(index("bots", 2), "bots[2]");
    }

    #[test]
    fn typos_suggest_the_known_key() {
        let known = [
            "name", "url", "events", "plugin", "auth", "sign", "settings",
        ];
        assert_eq!(closest("evnts", &known), Some("events"));
        assert_eq!(closest("URL", &known), Some("url"));
        assert_eq!(closest("plugins", &known), Some("plugin"));
        assert_eq!(closest("headers", &known), None);
        assert_eq!(closest("x", &known), None);
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 4), 3);
    }
}
