//! `[queue]`: the embedded store or Redis, with the keys each one takes.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::model::{QueueBackend, QueueConfig};
use super::reader::{Need, Reader, Table};
use super::validate::positive_duration;
use crate::queue::redis::{RedisOptions, RedisServers};

/// The keys of `[queue]`.
pub(super) const QUEUE_KEYS: &[&str] = &[
    "backend",
    "path",
    "url",
    "cluster_urls",
    "prefix",
    "shards",
    "wait_replicas",
    "dedup_window",
];

/// The keys only the redis backend takes.
const REDIS_ONLY: &[&str] = &["url", "cluster_urls", "prefix", "shards", "wait_replicas"];

/// One shard per Redis Cluster slot at most.
const MAX_SHARDS: u16 = 16_384;

const DEFAULT_QUEUE_PATH: &str = "data/queue";
const DEFAULT_REDIS_PREFIX: &str = "statushook";
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `[queue]`; a relative embedded `path` is resolved against `base_dir`.
pub(super) fn queue(r: &mut Reader<'_>, t: &Table<'_, '_>, base_dir: &Path) -> Option<QueueConfig> {
    let backend = r.field(t, "backend", Need::Optional, Reader::string);
    let path = r.field(t, "path", Need::Optional, Reader::string);
    let dedup_window = r
        .field(t, "dedup_window", Need::Optional, Reader::duration)
        .map(|window| positive_duration(r, &t.key("dedup_window"), window));

    let backend = match backend.as_ref().map(|b| b.get_ref().as_str()) {
        None if t.has("backend") => None,
        None | Some("embedded") => {
            for key in REDIS_ONLY {
                if let Some(value) = t.get(key) {
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
            redis(r, t).map(QueueBackend::Redis)
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

/// The redis backend's keys: `url` or `cluster_urls`, `prefix`, `shards`,
/// `wait_replicas`.
fn redis(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<RedisOptions> {
    let url = r.field(t, "url", Need::Optional, Reader::string);
    let cluster_urls = r.field(t, "cluster_urls", Need::Optional, Reader::strings);
    let prefix = r.field(t, "prefix", Need::Optional, Reader::string);
    let shards = r.field(t, "shards", Need::Optional, Reader::positive::<u16>);
    let wait_replicas = r.field(t, "wait_replicas", Need::Optional, |r, path, value| {
        r.whole::<u16>(path, value, 0)
    });
    let servers = match (url, cluster_urls) {
        (Some(url), Some(_)) => {
            r.problem(
                &t.key("cluster_urls"),
                Some(url.span()),
                "set either url (one Redis server) or cluster_urls (the seed nodes of a Redis Cluster), not both",
            );
            None
        }
        (Some(url), None) => redis_url(r, &t.key("url"), url).map(RedisServers::Standalone),
        (None, Some(urls)) if urls.is_empty() => {
            r.problem(
                &t.key("cluster_urls"),
                t.get("cluster_urls").map(|v| v.span()),
                "needs at least one seed node, e.g. [\"redis://10.0.0.1:7000\"]",
            );
            None
        }
        (None, Some(urls)) => {
            let count = urls.len();
            let good: Vec<String> = urls
                .into_iter()
                .filter_map(|(path, url)| redis_url(r, &path, url))
                .collect();
            (good.len() == count).then_some(RedisServers::Cluster(good))
        }
        (None, None) => {
            if !t.has("url") && !t.has("cluster_urls") {
                r.missing(
                    t,
                    "url",
                    "the redis backend needs a url, e.g. \"redis://127.0.0.1:6379\", or cluster_urls for a Redis Cluster",
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
                "must be non-empty, without spaces, braces or control characters",
            );
            None
        }
        Some(prefix) => Some(prefix.into_inner()),
        None if t.has("prefix") => None,
        None => Some(DEFAULT_REDIS_PREFIX.to_string()),
    };
    let shards = match shards {
        Some(n) if n > MAX_SHARDS => {
            r.problem(
                &t.key("shards"),
                t.get("shards").map(|v| v.span()),
                format!("{n} is more than Redis Cluster's {MAX_SHARDS} slots"),
            );
            None
        }
        Some(n) => Some(n),
        None if t.has("shards") => None,
        None => Some(1),
    };
    let wait_replicas = match wait_replicas {
        Some(n) => Some(n),
        None if t.has("wait_replicas") => None,
        None => Some(0),
    };
    Some(RedisOptions {
        servers: servers?,
        prefix: prefix?,
        shards: shards?,
        wait_replicas: wait_replicas?,
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
    // Braces would change which part of a key Redis Cluster hashes.
    !prefix.is_empty()
        && !prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
}
