//! The validated config: what the rest of the dispatcher reads.
//!
//! Values here have passed every check of this module, defaults are filled
//! in, environment variables are substituted and relative paths are resolved
//! against the config file's folder. Their `Debug` output hides secrets (see
//! `redact.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::deliver::sign::Encoding;
use crate::event::Status;
use crate::plugin::PluginLimits;
use crate::queue::Order;
use crate::queue::redis::RedisOptions;

/// A validated config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: the ingest and admin HTTP server.
    pub server: ServerConfig,
    /// `[queue]`: where events wait for delivery.
    pub queue: QueueConfig,
    /// `[delivery]`: timeouts, retries and the SSRF guard.
    pub delivery: DeliveryConfig,
    /// `[plugins]`: limits for every plugin call and the compiled-plugin cache.
    pub plugins: PluginsConfig,
    /// `[meta]`: Meta's webhook, when configured.
    pub meta: Option<MetaConfig>,
    /// `[history]`: what the delivery log keeps.
    pub history: crate::queue::History,
    /// `[[bots]]`: the tenants and their webhooks, in file order; after
    /// [`Fragments::compose`](super::Fragments::compose), the main file's
    /// bots followed by every included file's.
    ///
    /// Shared (`Arc`): a reload that leaves a bot as it was reuses it, and
    /// the routing table built from it, without copying.
    pub bots: Vec<Arc<BotConfig>>,
    /// `include`: patterns naming fragment files of more `[[bots]]`.
    pub include: Vec<super::Include>,
    /// The file this config was read from, as given.
    pub path: PathBuf,
}

impl Config {
    /// The folder of the config file: plugin paths, the embedded queue path
    /// and `cache_dir` are relative to it. `.` for a bare file name.
    pub fn base_dir(&self) -> &Path {
        base_dir_of(&self.path)
    }

    /// The bot with this id.
    pub fn bot(&self, id: &str) -> Option<&BotConfig> {
        self.bots.iter().find(|bot| bot.id == id).map(|bot| &**bot)
    }
}

/// The folder of `path`, `.` when it has none.
pub(crate) fn base_dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `[server]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address and port to listen on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where `/metrics`, the admin routes and `/readyz` with detail are
    /// served instead of on `listen` (`admin_listen`), so they need not face
    /// the internet; unset: everything on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer tokens that may post events for any bot.
    pub ingest_tokens: Vec<String>,
    /// Bearer tokens for the admin API of every bot.
    pub admin_tokens: Vec<String>,
    /// Bearer tokens that may read `/metrics` (`metrics_tokens`); when
    /// empty, `/metrics` is open (serve it on `admin_listen` then). A
    /// server-wide admin token may read it too.
    pub metrics_tokens: Vec<String>,
    /// The largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers
    /// (`header_read_timeout`, default 10 s); then the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit without a request
    /// (`idle_timeout`, default 60 s).
    pub idle_timeout: Duration,
    /// How long a client may take to send a request's body
    /// (`body_read_timeout`, default 30 s); then it gets `408`.
    pub body_read_timeout: Duration,
    /// The most client connections open at once (`max_connections`, default
    /// 1,000); more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Where queued deliveries are stored.
    pub backend: QueueBackend,
    /// How long an accepted event id is remembered to drop duplicates
    /// (`dedup_window`, default 24 h).
    pub dedup_window: Duration,
}

/// The queue store (`backend`).
#[derive(Clone, PartialEq, Eq)]
pub enum QueueBackend {
    /// `"embedded"`: a durable file store for a single node.
    Embedded {
        /// The store's location, resolved against the config file's folder
        /// (`path`, default `data/queue`).
        path: PathBuf,
    },
    /// `"redis"`: shared by any number of dispatchers, on one server or a
    /// Redis Cluster.
    Redis(RedisOptions),
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Time limit of one attempt (default 10 s).
    pub timeout: Duration,
    /// Waits before attempts 2, 3, ...; after the last one the delivery
    /// becomes a dead letter. Empty: a single attempt. Default 5 s, 1 m,
    /// 10 m, 1 h, 6 h.
    pub retry_schedule: Vec<Duration>,
    /// Whether loopback, private and link-local targets are allowed
    /// (default false).
    pub allow_private_networks: bool,
    /// Attempts in flight at once across all endpoints (default 256).
    pub max_in_flight: usize,
    /// Attempts in flight at once to one endpoint (default 16).
    pub max_in_flight_per_endpoint: usize,
}

/// `[plugins]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginsConfig {
    /// Limits for every plugin call (`timeout`, `max_memory_bytes`,
    /// `max_output_bytes`, `max_concurrent_instances`); unset keys keep
    /// [`PluginLimits::default`].
    pub limits: PluginLimits,
    /// Where compiled plugins are cached, resolved against the config file's
    /// folder; `None`: the host's default
    /// ([`HostOptions::default`](crate::plugin::HostOptions)).
    pub cache_dir: Option<PathBuf>,
}

/// `[meta]`: receiving Meta's WhatsApp webhooks.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// The token Meta's verification handshake must present.
    pub verify_token: String,
    /// App secrets that `X-Hub-Signature-256` may be made with, for any
    /// bot's phone numbers (several during a rotation). May be empty when
    /// bots list their own [`BotConfig::meta_app_secrets`].
    pub app_secrets: Vec<String>,
}

/// One `[[bots]]` entry: a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct BotConfig {
    /// The bot id events carry in `bot_id`: `[A-Za-z0-9_.-]{1,128}`, unique.
    pub id: String,
    /// Fills an event's `channel_name` when absent.
    pub channel_name: Option<String>,
    /// Meta phone number ids this bot owns; each belongs to one bot only.
    pub phone_number_ids: Vec<String>,
    /// Bearer tokens that may post events for this bot only.
    pub ingest_tokens: Vec<String>,
    /// Bearer tokens valid for this bot's admin routes only.
    pub admin_tokens: Vec<String>,
    /// Meta app secrets that may sign webhooks for this bot's phone numbers
    /// only (a tenant's own Meta app); `[meta] app_secrets` sign for any bot.
    pub meta_app_secrets: Vec<String>,
    /// The most events a second or minute this dispatcher accepts for the
    /// bot (`ingest_rate_limit`); more are answered `429`.
    pub ingest_rate_limit: Option<crate::rate::Rate>,
    /// Where the bot's events go, in file order.
    pub webhooks: Vec<WebhookConfig>,
}

/// One `[[bots.webhooks]]` entry: a notification URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Unique within its bot.
    pub name: String,
    /// An `http` or `https` URL with a host.
    pub url: url::Url,
    /// Which statuses it receives.
    pub events: EventFilter,
    /// A built-in plugin name, or a path to a `.wasm` component relative to
    /// the config file's folder (load it with
    /// [`PluginHost::load`](crate::plugin::PluginHost::load) and
    /// [`Config::base_dir`]).
    pub plugin: String,
    /// How the dispatcher authenticates to the receiver.
    pub auth: Auth,
    /// How the body is signed.
    pub sign: Sign,
    /// String key/values handed to the plugin.
    pub settings: BTreeMap<String, String>,
    /// The most deliveries a second or minute this dispatcher sends to the
    /// webhook (`rate_limit`, the partner's capacity); the rest wait.
    pub rate_limit: Option<crate::rate::Rate>,
    /// How its deliveries of one message go out (`order = "per-message"`,
    /// `suppress_regressions`; default: each on its own).
    pub order: Order,
}

impl WebhookConfig {
    /// The headers this webhook's `auth` and `sign` set, which its plugin
    /// may not set too (lowercase where the name is fixed; compare without
    /// case). Checked for every plugin header at render and at send, so it
    /// allocates nothing.
    pub fn own_headers(&self) -> impl Iterator<Item = &str> {
        let auth = match &self.auth {
            Auth::Header { name, .. } => Some(name.as_str()),
            Auth::Basic { .. } | Auth::Bearer { .. } => Some("authorization"),
            Auth::None => None,
        };
        let sign = match &self.sign {
            Sign::Hmac { header, .. } => Some(header.as_str()),
            Sign::StandardWebhooks { .. } => Some("webhook-signature"),
            Sign::None => None,
        };
        auth.into_iter().chain(sign)
    }

    /// Whether `header` is one of [`WebhookConfig::own_headers`].
    pub fn owns_header(&self, header: &str) -> bool {
        self.own_headers()
            .any(|own| own.eq_ignore_ascii_case(header))
    }
}

/// The statuses a webhook subscribes to (`events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `["all"]`.
    All,
    /// The listed statuses; never empty.
    Only(BTreeSet<Status>),
}

impl std::fmt::Display for EventFilter {
    /// `all`, or the statuses joined with `, `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventFilter::All => f.write_str("all"),
            EventFilter::Only(statuses) => {
                let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

impl EventFilter {
    /// Whether a `status` event goes to this webhook.
    pub fn matches(&self, status: Status) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(statuses) => statuses.contains(&status),
        }
    }
}

/// Who the dispatcher is to a receiver (`auth`).
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Basic ...`.
    Basic {
        /// Not empty, no `:`.
        username: String,
        /// May be empty.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Not empty.
        token: String,
    },
    /// A custom header, e.g. `X-Api-Key`.
    Header {
        /// A valid header name the host does not own.
        name: String,
        /// A valid, non-empty header value.
        value: String,
    },
}

/// How the body is signed (`sign`).
#[derive(Clone, PartialEq, Eq)]
pub enum Sign {
    /// No signature.
    None,
    /// `webhook-signature` as Standard Webhooks defines it.
    StandardWebhooks {
        /// The keys (the base64 after `whsec_`, decoded), never empty: one
        /// `secret`, or `secrets` while a receiver rolls from one to the
        /// next (one `v1,` signature per key in the header).
        secrets: Vec<Vec<u8>>,
    },
    /// HMAC-SHA256 of the body bytes in a header of the receiver's choosing.
    Hmac {
        /// The key: the UTF-8 bytes of the configured string.
        secret: Vec<u8>,
        /// The header that carries the signature.
        header: String,
        /// How the digest is written (default hex).
        encoding: Encoding,
        /// Written before the digest, e.g. `sha256=` (default none).
        prefix: String,
    },
}
