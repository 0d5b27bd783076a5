//! [`Snapshot`]: the routing table of one config.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BotConfig, Config, WebhookConfig};
use crate::plugin::{LoadError, Plugin, PluginHost, PluginSource, Settings};

/// The routing table built from one config, with every plugin loaded.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Shared: a reload reuses the entry of a bot whose config and plugins
    /// are unchanged.
    bots: HashMap<String, Arc<Bot>>,
    by_phone: HashMap<String, String>,
    /// Ingest tokens by their SHA-256: one lookup per request whatever the
    /// number of bots, and nothing compared but digests (no timing leak).
    ingest_tokens: HashMap<[u8; 32], TokenScope>,
    admin_tokens: HashSet<[u8; 32]>,
    /// Plugins this build compiled rather than reused from the previous
    /// snapshot (for the reload log).
    pub compiled: Vec<String>,
}

/// A bot and its webhooks, ready to route to.
#[derive(Debug, Clone)]
pub struct Bot {
    /// The bot's config.
    pub config: Arc<BotConfig>,
    /// Its webhooks, in config order.
    pub webhooks: Vec<Webhook>,
}

/// A webhook with its loaded plugin.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The webhook's config (URL, auth and signing are read at send time).
    pub config: WebhookConfig,
    /// The plugin that renders its bodies.
    pub plugin: Plugin,
    /// Its settings, as handed to the plugin.
    pub settings: Settings,
    /// What in-flight caps and circuit breakers are keyed by: scheme, host
    /// and port of the URL, so webhooks sharing a server share its limits.
    pub endpoint: String,
}

/// A plugin that failed to load while building a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("bots[{bot_index}].webhooks[{webhook_index}] ({bot}/{webhook}): {source}")]
pub struct SnapshotError {
    /// The bot's position in config.
    pub bot_index: usize,
    /// The webhook's position in its bot.
    pub webhook_index: usize,
    /// The bot's id.
    pub bot: String,
    /// The webhook's name.
    pub webhook: String,
    /// Why its plugin could not be loaded.
    #[source]
    pub source: LoadError,
}

/// Which bots an ingest token may post for.
#[derive(Debug)]
enum TokenScope {
    /// A `[server]` token: every bot.
    AnyBot,
    /// Bot tokens: these bots only.
    Bots(HashSet<String>),
}

/// What an ingest token may do for a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The token may post events for the bot.
    Allowed,
    /// The token is valid, but for other bots only (`403`).
    OtherBot,
    /// The token is not valid at all (`401`).
    Invalid,
}

impl Snapshot {
    /// Builds the table, loading every plugin the webhooks name.
    ///
    /// Plugins already loaded by `previous` are reused when their bytes are
    /// unchanged (built-ins always are), so a reload recompiles only what
    /// changed; within one config each distinct plugin is loaded once.
    /// Bots named in `kept` are taken from `previous` as they run there
    /// (their config in `config` must be the one they run with): an included
    /// file whose new version is refused keeps serving its last good one.
    ///
    /// # Errors
    ///
    /// The first [`SnapshotError`]: a plugin that cannot be loaded.
    pub fn build(
        config: Config,
        host: &PluginHost,
        previous: Option<&Snapshot>,
        kept: &HashSet<String>,
    ) -> Result<Self, SnapshotError> {
        let mut loaded: HashMap<String, Plugin> = HashMap::new();
        let mut reusable: HashMap<(&str, String), &Plugin> = HashMap::new();
        if let Some(previous) = previous {
            for webhook in previous.bots.values().flat_map(|b| &b.webhooks) {
                reusable.insert(
                    (webhook.config.plugin.as_str(), webhook.plugin.sha256()),
                    &webhook.plugin,
                );
            }
        }
        let mut bots = HashMap::new();
        let mut by_phone = HashMap::new();
        let mut compiled = Vec::new();
        for (bot_index, bot) in config.bots.iter().enumerate() {
            for phone in &bot.phone_number_ids {
                by_phone.insert(phone.clone(), bot.id.clone());
            }
            let running = previous.and_then(|p| p.bots.get(&bot.id));
            if kept.contains(&bot.id)
                && let Some(running) = running
            {
                bots.insert(bot.id.clone(), Arc::clone(running));
                continue;
            }
            let mut plugins = Vec::with_capacity(bot.webhooks.len());
            for (webhook_index, webhook) in bot.webhooks.iter().enumerate() {
                let plugin = match loaded.get(&webhook.plugin) {
                    Some(plugin) => plugin.clone(),
                    None => {
                        let (plugin, fresh) = load(host, &webhook.plugin, &config, &reusable)
                            .map_err(|source| SnapshotError {
                                bot_index,
                                webhook_index,
                                bot: bot.id.clone(),
                                webhook: webhook.name.clone(),
                                source,
                            })?;
                        if fresh {
                            compiled.push(webhook.plugin.clone());
                        }
                        loaded.insert(webhook.plugin.clone(), plugin.clone());
                        plugin
                    }
                };
                plugins.push(plugin);
            }
            // Unchanged config and the very same plugins: the running entry
            // serves as it is (a reload of 1,000 bots rebuilds only what changed).
            if let Some(running) = running
                && (Arc::ptr_eq(&running.config, bot) || running.config == *bot)
                && running.webhooks.len() == plugins.len()
                && running
                    .webhooks
                    .iter()
                    .zip(&plugins)
                    .all(|(w, p)| w.plugin.is(p))
            {
                bots.insert(bot.id.clone(), Arc::clone(running));
                continue;
            }
            let webhooks = bot
                .webhooks
                .iter()
                .zip(plugins)
                .map(|(webhook, plugin)| Webhook {
                    settings: webhook
                        .settings
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    endpoint: crate::deliver::endpoint::endpoint_key(&webhook.url),
                    config: webhook.clone(),
                    plugin,
                })
                .collect();
            bots.insert(
                bot.id.clone(),
                Arc::new(Bot {
                    config: Arc::clone(bot),
                    webhooks,
                }),
            );
        }
        let mut ingest_tokens = HashMap::new();
        for bot in &config.bots {
            for token in &bot.ingest_tokens {
                let scope = ingest_tokens
                    .entry(digest(token))
                    .or_insert_with(|| TokenScope::Bots(HashSet::new()));
                if let TokenScope::Bots(bots) = scope {
                    bots.insert(bot.id.clone());
                }
            }
        }
        // A server token is valid for every bot, whatever a bot also lists.
        for token in &config.server.ingest_tokens {
            ingest_tokens.insert(digest(token), TokenScope::AnyBot);
        }
        let admin_tokens = config
            .server
            .admin_tokens
            .iter()
            .map(|t| digest(t))
            .collect();
        Ok(Snapshot {
            config: Arc::new(config),
            bots,
            by_phone,
            ingest_tokens,
            admin_tokens,
            compiled,
        })
    }

    /// The bot with `id`.
    pub fn bot(&self, id: &str) -> Option<&Bot> {
        self.bots.get(id).map(|bot| &**bot)
    }

    /// What rendering `events` for every webhook that takes them should
    /// cost, from each plugin's recent renders; `None` while a plugin that
    /// would run has not been measured yet.
    pub fn render_cost(&self, events: &[crate::event::StatusEvent]) -> Option<Duration> {
        let mut total = Duration::ZERO;
        for event in events {
            let Some(bot) = self.bot(&event.bot_id) else {
                continue;
            };
            for webhook in &bot.webhooks {
                if webhook.config.events.matches(event.status) {
                    total += webhook.plugin.typical_cost()?;
                }
            }
        }
        Some(total)
    }

    /// The bot that owns Meta phone number id `phone_number_id`.
    pub fn bot_for_phone(&self, phone_number_id: &str) -> Option<&Bot> {
        self.by_phone
            .get(phone_number_id)
            .and_then(|id| self.bots.get(id))
            .map(|bot| &**bot)
    }

    /// The webhook `name` of bot `bot`.
    pub fn webhook(&self, bot: &str, name: &str) -> Option<&Webhook> {
        self.bots
            .get(bot)?
            .webhooks
            .iter()
            .find(|w| w.config.name == name)
    }

    /// Every bot.
    pub fn bots(&self) -> impl Iterator<Item = &Bot> {
        self.bots.values().map(|bot| &**bot)
    }

    /// Whether `token` may post events for `bot`: a server-wide ingest token
    /// may post for any bot, a bot's own token only for that bot.
    pub fn ingest_access(&self, token: &str, bot: &str) -> Access {
        match self.ingest_tokens.get(&digest(token)) {
            None => Access::Invalid,
            Some(TokenScope::AnyBot) => Access::Allowed,
            Some(TokenScope::Bots(bots)) if bots.contains(bot) => Access::Allowed,
            Some(TokenScope::Bots(_)) => Access::OtherBot,
        }
    }

    /// Whether `token` is valid for posting events to at least one bot.
    pub fn is_ingest_token(&self, token: &str) -> bool {
        self.ingest_tokens.contains_key(&digest(token))
    }

    /// Whether `token` is an admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        self.admin_tokens.contains(&digest(token))
    }
}

/// Loads `plugin`, reusing the previous snapshot's instance when the bytes
/// are the same: an unchanged plugin is not compiled again on reload.
/// Returns the plugin and whether it was loaded afresh.
fn load(
    host: &PluginHost,
    plugin: &str,
    config: &Config,
    reusable: &HashMap<(&str, String), &Plugin>,
) -> Result<(Plugin, bool), LoadError> {
    let source = PluginSource::read(plugin, config.base_dir())?;
    if let Some(previous) = reusable.get(&(plugin, source.sha256())) {
        return Ok(((*previous).clone(), false));
    }
    Ok((host.load_bytes(&source.name, &source.wasm)?, true))
}

/// The SHA-256 of a token: what token lookups compare.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
