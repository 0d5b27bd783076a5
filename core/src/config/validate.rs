//! Building the validated [`Config`] from the tree: the top level and the
//! `[server]`, `[delivery]`, `[plugins]` and `[meta]` sections. The queue,
//! bots and webhooks are in `queue.rs`, `bots.rs` and `webhook.rs`.
//!
//! Every builder reads all of its keys and records every problem; it returns
//! `None` when anything was wrong, and the caller carries on with the next
//! section.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeTable;

use super::bots::bots;
use super::include::includes;
use super::model::{
    BotConfig, Config, DeliveryConfig, MetaConfig, PluginsConfig, ServerConfig, base_dir_of,
};
use super::queue::{QUEUE_KEYS, queue};
use super::reader::{Need, Reader, Span, Table};
use crate::plugin::PluginLimits;
use crate::queue::History;

const ROOT_KEYS: &[&str] = &[
    "include", "server", "queue", "delivery", "plugins", "meta", "history", "bots",
];
const HISTORY_KEYS: &[&str] = &["retention", "max_per_bot"];
/// Three days: a partner's "did you send it?" usually comes within a day or
/// two; at 1,000 deliveries/s and about 1 KiB each, a day is some 86 GB,
/// which is why `max_per_bot` bounds it too.
const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 3600);
const DEFAULT_MAX_PER_BOT: usize = 100_000;
const SERVER_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "ingest_tokens",
    "admin_tokens",
    "metrics_tokens",
    "max_body_bytes",
    "header_read_timeout",
    "idle_timeout",
    "body_read_timeout",
    "max_connections",
];
const DELIVERY_KEYS: &[&str] = &[
    "timeout",
    "retry_schedule",
    "allow_private_networks",
    "max_in_flight",
    "max_in_flight_per_endpoint",
];
const PLUGINS_KEYS: &[&str] = &[
    "timeout",
    "max_memory_bytes",
    "max_output_bytes",
    "max_concurrent_instances",
    "warm_memory_bytes",
    "cache_dir",
];
const META_KEYS: &[&str] = &["verify_token", "app_secrets"];

const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Well under the usual `ulimit -n` of 1,024, leaving room for the
/// connections to receivers and Redis.
const DEFAULT_MAX_CONNECTIONS: usize = 1_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_SCHEDULE: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
];
const DEFAULT_MAX_IN_FLIGHT: usize = 256;
const DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT: usize = 16;

/// The whole config; `None` when any problem was recorded.
pub(super) fn config(
    r: &mut Reader<'_>,
    doc: &Spanned<DeTable<'_>>,
    path: &Path,
) -> Option<Config> {
    let root = r.root(doc, ROOT_KEYS);
    let base_dir = base_dir_of(path);
    let server = section(r, &root, "server", SERVER_KEYS).and_then(|t| server(r, &t));
    let queue = section(r, &root, "queue", QUEUE_KEYS).and_then(|t| queue(r, &t, base_dir));
    let delivery = section(r, &root, "delivery", DELIVERY_KEYS).and_then(|t| delivery(r, &t));
    let plugins = section(r, &root, "plugins", PLUGINS_KEYS).and_then(|t| plugins(r, &t, base_dir));
    let meta = match root.get("meta") {
        None => Some(None),
        Some(value) => r
            .table("meta", value, Some(META_KEYS))
            .and_then(|t| meta(r, &t))
            .map(Some),
    };
    let history = section(r, &root, "history", HISTORY_KEYS).and_then(|t| history(r, &t));
    let bots = bots(r, &root);
    // Absolute, so the files found match the paths a watcher reports.
    let include_base = base_dir
        .canonicalize()
        .unwrap_or_else(|_| base_dir.to_path_buf());
    let include = includes(r, &root, &include_base);
    if let Some(bots) = &bots {
        // Included files may hold the only bots with secrets of their own.
        let may_have_more = !include.is_empty();
        meta_secrets_somewhere(r, &root, bots, may_have_more);
    }
    Some(Config {
        server: server?,
        queue: queue?,
        delivery: delivery?,
        plugins: plugins?,
        meta: meta?,
        history: history?,
        bots: bots?,
        include,
        path: path.to_path_buf(),
    })
}

/// The section `key` of the root, or an empty one when the file has none.
fn section<'t, 'i>(
    r: &mut Reader<'_>,
    root: &Table<'t, 'i>,
    key: &str,
    known: &[&str],
) -> Option<Table<'t, 'i>> {
    match root.get(key) {
        Some(value) => r.table(key, value, Some(known)),
        None => Some(Table::absent(key)),
    }
}

fn server(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<ServerConfig> {
    let listen = match address(r, t, "listen") {
        Some(listen) => listen.map(|(addr, _)| addr),
        None if t.has("listen") => None,
        None => Some(DEFAULT_LISTEN),
    };
    let admin_listen = match address(r, t, "admin_listen") {
        Some(Some((addr, span))) if Some(addr) == listen && addr.port() != 0 => {
            r.problem(
                &t.key("admin_listen"),
                span,
                "is the same address as listen; give the operations listener its own port, or remove the key",
            );
            None
        }
        Some(parsed) => parsed.map(|(addr, _)| Some(addr)),
        None if t.has("admin_listen") => None,
        None => Some(None),
    };
    let ingest_tokens = tokens(r, t, "ingest_tokens");
    let admin_tokens = tokens(r, t, "admin_tokens");
    let metrics_tokens = tokens(r, t, "metrics_tokens");
    let max_body_bytes = r
        .field(
            t,
            "max_body_bytes",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let header_read_timeout =
        optional_duration(r, t, "header_read_timeout", DEFAULT_HEADER_READ_TIMEOUT);
    let idle_timeout = optional_duration(r, t, "idle_timeout", DEFAULT_IDLE_TIMEOUT);
    let body_read_timeout = optional_duration(r, t, "body_read_timeout", DEFAULT_BODY_READ_TIMEOUT);
    let max_connections = r
        .field(
            t,
            "max_connections",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    Some(ServerConfig {
        listen: listen?,
        admin_listen: admin_listen?,
        ingest_tokens,
        admin_tokens,
        metrics_tokens,
        max_body_bytes,
        header_read_timeout: header_read_timeout?,
        idle_timeout: idle_timeout?,
        body_read_timeout: body_read_timeout?,
        max_connections,
    })
}

/// The socket address under `key`, with where it was written: `None` when
/// absent, `Some(None)` when invalid (and recorded).
fn address(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    key: &str,
) -> Option<Option<(SocketAddr, Option<Span>)>> {
    let text = r.field(t, key, Need::Optional, Reader::string)?;
    match text.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(Some((addr, Some(text.span())))),
        Err(_) => {
            r.problem(
                &t.key(key),
                Some(text.span()),
                format!(
                    "{:?} is not an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\"",
                    text.get_ref()
                ),
            );
            Some(None)
        }
    }
}

/// An optional list of bearer tokens under `key`; each must be non-empty.
pub(super) fn tokens(r: &mut Reader<'_>, t: &Table<'_, '_>, key: &str) -> Vec<String> {
    let list = r
        .field(t, key, Need::Optional, Reader::strings)
        .unwrap_or_default();
    non_empty_strings(r, list)
}

/// The strings of `list`; an empty one is a problem (often an environment
/// variable set to nothing).
pub(super) fn non_empty_strings(
    r: &mut Reader<'_>,
    list: Vec<(String, Spanned<String>)>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(list.len());
    for (path, item) in list {
        if item.get_ref().is_empty() {
            r.problem(&path, Some(item.span()), "must not be an empty string");
        } else {
            out.push(item.into_inner());
        }
    }
    out
}

fn delivery(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<DeliveryConfig> {
    let timeout = optional_duration(r, t, "timeout", DEFAULT_TIMEOUT);
    let retry_schedule = r
        .field(t, "retry_schedule", Need::Optional, Reader::durations)
        .map(|list| list.into_iter().map(Spanned::into_inner).collect())
        .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_vec());
    let allow_private_networks = r
        .field(t, "allow_private_networks", Need::Optional, Reader::boolean)
        .unwrap_or(false);
    let max_in_flight = r
        .field(
            t,
            "max_in_flight",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    let max_in_flight_per_endpoint = r
        .field(
            t,
            "max_in_flight_per_endpoint",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT);
    Some(DeliveryConfig {
        timeout: timeout?,
        retry_schedule,
        allow_private_networks,
        max_in_flight,
        max_in_flight_per_endpoint,
    })
}

fn plugins(r: &mut Reader<'_>, t: &Table<'_, '_>, base_dir: &Path) -> Option<PluginsConfig> {
    let defaults = PluginLimits::default();
    let timeout = optional_duration(r, t, "timeout", defaults.timeout);
    let max_memory_bytes = r
        .field(
            t,
            "max_memory_bytes",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(defaults.max_memory_bytes);
    let max_output_bytes = r
        .field(
            t,
            "max_output_bytes",
            Need::Optional,
            Reader::positive::<usize>,
        )
        .unwrap_or(defaults.max_output_bytes);
    let max_concurrent_instances = r
        .field(
            t,
            "max_concurrent_instances",
            Need::Optional,
            Reader::positive::<u32>,
        )
        .unwrap_or(defaults.max_concurrent_instances);
    // 0 is allowed: it turns warm instances off.
    let warm_memory_bytes = r
        .field(t, "warm_memory_bytes", Need::Optional, |r, path, value| {
            r.whole::<usize>(path, value, 0)
        })
        .unwrap_or(defaults.warm_memory_bytes);
    let cache_dir = match r.field(t, "cache_dir", Need::Optional, Reader::string) {
        Some(dir) if dir.get_ref().is_empty() => {
            r.problem(
                &t.key("cache_dir"),
                Some(dir.span()),
                "must not be empty; remove the key to use the default cache folder",
            );
            None
        }
        Some(dir) => Some(Some(base_dir.join(dir.get_ref()))),
        None if t.has("cache_dir") => None,
        None => Some(None),
    };
    Some(PluginsConfig {
        limits: PluginLimits {
            timeout: timeout?,
            max_memory_bytes,
            max_output_bytes,
            max_concurrent_instances,
            warm_memory_bytes,
            ..defaults
        },
        cache_dir: cache_dir?,
    })
}

fn history(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<History> {
    // "0s" is allowed here: it turns the log off.
    let retention = match r.field(t, "retention", Need::Optional, Reader::duration) {
        Some(value) => Some(value.into_inner()),
        None if t.has("retention") => None,
        None => Some(DEFAULT_RETENTION),
    };
    let max_per_bot = r
        .field(t, "max_per_bot", Need::Optional, Reader::positive::<usize>)
        .unwrap_or(DEFAULT_MAX_PER_BOT);
    Some(History {
        retention: retention?,
        max_per_bot,
    })
}

fn meta(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<MetaConfig> {
    let verify_token = match r.field(t, "verify_token", Need::Required, Reader::string) {
        Some(token) if token.get_ref().is_empty() => {
            r.problem(
                &t.key("verify_token"),
                Some(token.span()),
                "must not be an empty string",
            );
            None
        }
        other => other.map(Spanned::into_inner),
    };
    // Whether any secret is listed at all is checked with the bots', whose
    // `meta_app_secrets` may be the only ones.
    let app_secrets = r
        .field(t, "app_secrets", Need::Optional, Reader::strings)
        .map(|list| non_empty_strings(r, list));
    Some(MetaConfig {
        verify_token: verify_token?,
        app_secrets: app_secrets.unwrap_or_default(),
    })
}

/// Meta webhooks need a secret to verify with, in `[meta] app_secrets` or a
/// bot's `meta_app_secrets`; and a bot's secrets need `[meta]` (its
/// `verify_token` answers Meta's handshake).
fn meta_secrets_somewhere(
    r: &mut Reader<'_>,
    root: &Table<'_, '_>,
    bots: &[Arc<BotConfig>],
    may_have_more: bool,
) {
    let bot_secrets = bots.iter().position(|b| !b.meta_app_secrets.is_empty());
    let Some(meta) = root.get("meta") else {
        if let Some(index) = bot_secrets {
            let span = root
                .get("bots")
                .and_then(|bots| bots.get_ref().as_array()?.get(index))
                .and_then(|bot| bot.get_ref().as_table()?.get("meta_app_secrets"))
                .map(|secrets| secrets.span());
            r.problem(
                &format!("bots[{index}].meta_app_secrets"),
                span,
                "needs a [meta] section with verify_token: Meta's verification handshake answers with it",
            );
        }
        return;
    };
    // Not a table: that problem is recorded already.
    let Some(table) = meta.get_ref().as_table() else {
        return;
    };
    // Entries count even when invalid: those have their own problems.
    let listed = table
        .get("app_secrets")
        .and_then(|v| v.get_ref().as_array())
        .is_some_and(|a| !a.is_empty());
    if !listed
        && bot_secrets.is_none()
        && !may_have_more
        && let Some(t) = r.table("meta", meta, None)
    {
        r.missing(
            &t,
            "app_secrets",
            "must list at least one app secret (from the Meta app's settings), or bots must list their own meta_app_secrets",
        );
    }
}

/// `key` as a duration greater than zero, `default` when absent; `None`
/// when invalid.
fn optional_duration(
    r: &mut Reader<'_>,
    t: &Table<'_, '_>,
    key: &str,
    default: Duration,
) -> Option<Duration> {
    match r.field(t, key, Need::Optional, Reader::duration) {
        Some(value) => positive_duration(r, &t.key(key), value),
        None if t.has(key) => None,
        None => Some(default),
    }
}

pub(super) fn positive_duration(
    r: &mut Reader<'_>,
    path: &str,
    value: Spanned<Duration>,
) -> Option<Duration> {
    if value.get_ref().is_zero() {
        r.problem(path, Some(value.span()), "must be longer than 0");
        return None;
    }
    Some(value.into_inner())
}
