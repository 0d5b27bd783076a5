//! [`Snapshot`]: the routing table of one config.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::scope::{Access, MetaApps, Scope, Tokens};
use crate::config::{BotConfig, Config, WebhookConfig};
use crate::ingest::meta::Signature;
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
    /// Who may post events for which bots.
    ingest_tokens: Tokens,
    /// Who may use which bots' admin routes.
    admin_tokens: Tokens,
    /// Who may read `/metrics` besides server-wide admin tokens.
    metrics_tokens: Tokens,
    /// Which Meta apps may sign for which bots.
    meta_apps: MetaApps,
    /// Plugins this build compiled rather than reused from the previous
    /// snapshot (for the reload log).
    pub compiled: Vec<String>,
    /// Plugins whose new bytes need a compile of seconds: the webhooks that
    /// use them keep their previous plugin in this snapshot, and the
    /// reloader compiles these in the background, then reloads again.
    pub deferred: Vec<PluginSource>,
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
    /// Who its plugin instances belong to, `bot/webhook`: an instance kept
    /// warm is reused for this webhook only.
    pub owner: String,
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
    /// On a reload (`previous` given), a webhook whose plugin's new bytes
    /// would compile for seconds ([`PluginHost::compiles_slowly`]) keeps the
    /// plugin it has, and the bytes are listed in [`Snapshot::deferred`]: a
    /// reload is not held up by a JavaScript or Python compile. A new
    /// webhook has no plugin to keep, so its plugin compiles here.
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
        let mut deferred: HashMap<String, PluginSource> = HashMap::new();
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
                let error = |source| SnapshotError {
                    bot_index,
                    webhook_index,
                    bot: bot.id.clone(),
                    webhook: webhook.name.clone(),
                    source,
                };
                if let Some(plugin) = loaded.get(&webhook.plugin) {
                    plugins.push(plugin.clone());
                    continue;
                }
                let serving = running
                    .and_then(|r| r.webhooks.iter().find(|w| w.config.name == webhook.name))
                    .map(|w| &w.plugin);
                // Already deferred for another webhook: not read and hashed
                // again (a JavaScript plugin is 12 MB, and may serve hundreds).
                if let (true, Some(serving)) = (deferred.contains_key(&webhook.plugin), serving) {
                    plugins.push(serving.clone());
                    continue;
                }
                let plugin = match load(host, &webhook.plugin, &config, &reusable, serving)
                    .map_err(error)?
                {
                    Loaded::Reused(plugin) => plugin,
                    Loaded::Compiled(plugin) => {
                        compiled.push(webhook.plugin.clone());
                        plugin
                    }
                    Loaded::Deferred { serving, source } => {
                        deferred.entry(webhook.plugin.clone()).or_insert(source);
                        plugins.push(serving);
                        continue; // other webhooks keep their own plugin
                    }
                };
                loaded.insert(webhook.plugin.clone(), plugin.clone());
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
                    owner: format!("{}/{}", bot.id, webhook.name),
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
        let server = &config.server;
        let ingest_tokens = Tokens::build(&config, &server.ingest_tokens, |b| &b.ingest_tokens);
        let admin_tokens = Tokens::build(&config, &server.admin_tokens, |b| &b.admin_tokens);
        let metrics_tokens = Tokens::build(&config, &server.metrics_tokens, |_| &[]);
        let meta_apps = MetaApps::build(&config);
        Ok(Snapshot {
            config: Arc::new(config),
            bots,
            by_phone,
            ingest_tokens,
            admin_tokens,
            metrics_tokens,
            meta_apps,
            compiled,
            deferred: deferred.into_values().collect(),
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

    /// What ingest `token` may do for `bot`: a server-wide token posts for
    /// any bot, a bot's own token for that bot only.
    pub fn ingest_access(&self, token: &str, bot: &str) -> Access {
        self.ingest_tokens.access(token, bot)
    }

    /// Whether `token` may post events for at least one bot.
    pub fn is_ingest_token(&self, token: &str) -> bool {
        self.ingest_tokens.scope(token).is_some()
    }

    /// What admin `token` may do for `bot`.
    pub fn admin_access(&self, token: &str, bot: &str) -> Access {
        self.admin_tokens.access(token, bot)
    }

    /// The bots admin `token` may see (`None`: not an admin token).
    pub fn admin_scope(&self, token: &str) -> Option<&Scope> {
        self.admin_tokens.scope(token)
    }

    /// Whether `/metrics` asks for a token (`[server] metrics_tokens`).
    pub fn metrics_need_token(&self) -> bool {
        !self.config.server.metrics_tokens.is_empty()
    }

    /// Whether `token` may read `/metrics`: a metrics token or a
    /// server-wide admin token (a bot's admin token may not: the metrics
    /// name every bot).
    pub fn may_read_metrics(&self, token: &str) -> bool {
        self.metrics_tokens.scope(token).is_some()
            || self.admin_tokens.scope(token) == Some(&Scope::AnyBot)
    }

    /// The bots the Meta app that signed `body` may speak for; `None` when
    /// no configured app secret made `signature`.
    pub fn meta_signer(&self, signature: &Signature, body: &[u8]) -> Option<Scope> {
        self.meta_apps.signer(signature, body)
    }
}

/// What [`load`] did with a webhook's plugin.
enum Loaded {
    /// The previous snapshot's plugin: same name, same bytes.
    Reused(Plugin),
    /// Loaded afresh (compiled, or from the compile cache).
    Compiled(Plugin),
    /// New bytes that compile slowly: the webhook keeps `serving` while
    /// `source` compiles in the background.
    Deferred {
        serving: Plugin,
        source: PluginSource,
    },
}

/// Loads `plugin`, reusing the previous snapshot's instance when the bytes
/// are the same: an unchanged plugin is not compiled again on reload. A
/// webhook that has a plugin `serving` keeps it while new bytes that
/// compile slowly compile in the background.
fn load(
    host: &PluginHost,
    plugin: &str,
    config: &Config,
    reusable: &HashMap<(&str, String), &Plugin>,
    serving: Option<&Plugin>,
) -> Result<Loaded, LoadError> {
    let source = PluginSource::read(plugin, config.base_dir())?;
    if let Some(previous) = reusable.get(&(plugin, source.sha256())) {
        return Ok(Loaded::Reused((*previous).clone()));
    }
    if let Some(serving) = serving
        && host.compiles_slowly(&source)?
    {
        return Ok(Loaded::Deferred {
            serving: serving.clone(),
            source,
        });
    }
    Ok(Loaded::Compiled(
        host.load_bytes(&source.name, &source.wasm)?,
    ))
}
