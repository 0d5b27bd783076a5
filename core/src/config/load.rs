//! Reading a config file and turning its text into a [`Config`].

use std::path::Path;

use toml::de::DeTable;

use super::error::{ConfigError, Problem};
use super::model::Config;
use super::reader::{Reader, line_at};
use super::validate;

/// Reads and validates the config file at `path`, taking `${NAME}` from the
/// process environment.
///
/// # Errors
///
/// [`ConfigError`] with every problem: the file cannot be read, is empty
/// ([`ConfigError::is_empty_file`]), is not TOML, or breaks a rule.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_source(path)?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// The text of the config file at `path`.
///
/// # Errors
///
/// A one-problem [`ConfigError`]: the file cannot be read or is not UTF-8.
pub(crate) fn read_source(path: &Path) -> Result<String, ConfigError> {
    let problem =
        |line, message: String| ConfigError::new(vec![Problem::new(path, line, "", message)]);
    let bytes =
        std::fs::read(path).map_err(|e| problem(None, format!("cannot read config file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        problem(Some(line), "the config file is not UTF-8 text".to_string())
    })
}

/// Validates config `text` read from `path` (which only names the file in
/// problems and anchors relative paths), taking `${NAME}` from `env`.
///
/// # Errors
///
/// [`ConfigError`] with every problem found: syntax errors alone if the text
/// is not TOML, else every unknown key, missing or invalid value and broken
/// rule across keys. An empty or whitespace-only text is its own error
/// ([`ConfigError::is_empty_file`]).
///
/// # Examples
///
/// ```
/// use std::path::Path;
///
/// let text = r#"
/// [[bots]]
/// id = "acme-support"
///
///   [[bots.webhooks]]
///   name = "crm"
///   url = "https://crm.example.com/whatsapp/status"
///   events = ["read", "failed"]
///   plugin = "jelou"
///   auth = { type = "bearer", token = "${CRM_TOKEN}" }
/// "#;
/// let env = |name: &str| (name == "CRM_TOKEN").then(|| "s3cret".to_string());
/// let config = statushook::config::parse(text, Path::new("config.toml"), &env)?;
/// assert_eq!(config.bots[0].webhooks[0].name, "crm");
/// # Ok::<(), statushook::config::ConfigError>(())
/// ```
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let doc = parse_document(text, path)?;
    let mut reader = Reader::new(text, path, env);
    let config = validate::config(&mut reader, &doc, path);
    let mut problems = reader.into_problems();
    // File order reads best; the sort is stable, and a problem without a
    // line (none so far) comes first.
    problems.sort_by_key(|problem| problem.line);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        Some(_) | None if !problems.is_empty() => Err(ConfigError::new(problems)),
        _ => Err(ConfigError::new(vec![Problem::new(
            path,
            None,
            "",
            "the config is invalid but no problem was recorded (a statushook bug)",
        )])),
    }
}

/// The TOML tree of `text` (the contents of `path`).
///
/// # Errors
///
/// The empty-file error ([`ConfigError::is_empty_file`]) for an empty or
/// whitespace-only text, else one problem per syntax error.
pub(super) fn parse_document<'i>(
    text: &'i str,
    path: &Path,
) -> Result<toml::Spanned<DeTable<'i>>, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::empty_file(path.to_path_buf()));
    }
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(ConfigError::new(syntax_problems(text, path, &errors)));
    }
    Ok(doc)
}

/// One problem per TOML syntax error, with its line and column.
fn syntax_problems(text: &str, path: &Path, errors: &[toml::de::Error]) -> Vec<Problem> {
    errors
        .iter()
        .map(|error| {
            let (line, message) = match error.span() {
                Some(span) => {
                    let column = column_at(text, span.start);
                    (
                        Some(line_at(text, span.start)),
                        format!("syntax error at column {column}: {}", error.message()),
                    )
                }
                None => (None, format!("syntax error: {}", error.message())),
            };
            Problem::new(path, line, "", message)
        })
        .collect()
}

/// The 1-based column (in characters) of byte `offset` in `text`.
fn column_at(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().count() + 1
}
