//! `[queue]`: the embedded store or Redis, with the keys each one takes.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::model::{QueueBackend, QueueConfig};
use super::reader::{Need, Reader, Table};
use super::validate::positive_duration;

/// The keys of `[queue]`.
pub(super) const QUEUE_KEYS: &[&str] = &["backend", "path", "url", "prefix", "dedup_window"];

const DEFAULT_QUEUE_PATH: &str = "data/queue";
const DEFAULT_REDIS_PREFIX: &str = "statushook";
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `[queue]`; a relative embedded `path` is resolved against `base_dir`.
pub(super) fn queue(r: &mut Reader<'_>, t: &Table<'_, '_>, base_dir: &Path) -> Option<QueueConfig> {
    let backend = r.field(t, "backend", Need::Optional, Reader::string);
    let path = r.field(t, "path", Need::Optional, Reader::string);
    let url = r.field(t, "url", Need::Optional, Reader::string);
    let prefix = r.field(t, "prefix", Need::Optional, Reader::string);
    let dedup_window = r
        .field(t, "dedup_window", Need::Optional, Reader::duration)
        .map(|window| positive_duration(r, &t.key("dedup_window"), window));

    let backend = match backend.as_ref().map(|b| b.get_ref().as_str()) {
        None if t.has("backend") => None,
        None | Some("embedded") => {
            for (key, value) in [("url", &url), ("prefix", &prefix)] {
                if let Some(value) = value {
                    r.problem(
                        &t.key(key),
                        Some(value.span()),
                        "only the redis backend takes this key; set backend = \"redis\" or remove it",
                    );
                }
            }
            match path {
                Some(path) if path.get_ref().is_empty() => {
                    r.problem(&t.key("path"), Some(path.span()), "must not be empty");
                    None
                }
                Some(path) => Some(QueueBackend::Embedded {
                    path: base_dir.join(path.get_ref()),
                }),
                None if t.has("path") => None,
                None => Some(QueueBackend::Embedded {
                    path: base_dir.join(DEFAULT_QUEUE_PATH),
                }),
            }
        }
        Some("redis") => {
            if let Some(path) = &path {
                r.problem(
                    &t.key("path"),
                    Some(path.span()),
                    "only the embedded backend takes this key; remove it for redis",
                );
            }
            let url = match url {
                Some(url) => redis_url(r, &t.key("url"), url),
                None => {
                    if !t.has("url") {
                        r.missing(
                            t,
                            "url",
                            "the redis backend needs a url, e.g. \"redis://127.0.0.1:6379\"",
                        );
                    }
                    None
                }
            };
            let prefix = match prefix {
                Some(prefix) if !is_redis_prefix(prefix.get_ref()) => {
                    r.problem(
                        &t.key("prefix"),
                        Some(prefix.span()),
                        "must be non-empty, without spaces or control characters",
                    );
                    None
                }
                Some(prefix) => Some(prefix.into_inner()),
                None if t.has("prefix") => None,
                None => Some(DEFAULT_REDIS_PREFIX.to_string()),
            };
            Some(QueueBackend::Redis {
                url: url?,
                prefix: prefix?,
            })
        }
        Some(other) => {
            let span = backend.as_ref().map(|b| b.span());
            r.problem(
                &t.key("backend"),
                span,
                format!("unknown backend {other:?}; expected \"embedded\" or \"redis\""),
            );
            None
        }
    };
    Some(QueueConfig {
        backend: backend?,
        dedup_window: match dedup_window {
            Some(window) => window?,
            None if t.has("dedup_window") => return None,
            None => DEFAULT_DEDUP_WINDOW,
        },
    })
}

/// A Redis URL the redis crate accepts.
fn redis_url(r: &mut Reader<'_>, path: &str, url: Spanned<String>) -> Option<String> {
    let message = match url::Url::parse(url.get_ref()) {
        Ok(parsed) if matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {
            return Some(url.into_inner());
        }
        Ok(parsed) => format!(
            "the scheme must be redis, rediss or unix, not {:?}",
            parsed.scheme()
        ),
        Err(e) => format!("not a valid URL ({e}); expected e.g. \"redis://127.0.0.1:6379\""),
    };
    r.problem(path, Some(url.span()), message);
    None
}

fn is_redis_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && !prefix.chars().any(|c| c.is_whitespace() || c.is_control())
}
