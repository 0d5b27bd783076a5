//! Prometheus metrics, served at `GET /metrics`.
//!
//! Names follow `statushook_<noun>_<verb>_total` for counters and `_seconds`
//! for histograms. Labels are bounded: bot and webhook come from config, and
//! every `reason`/`code` label is a fixed machine word.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-bot series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BotLabels {
    /// The bot id.
    pub bot: String,
}

/// Labels of per-webhook series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The bot id.
    pub bot: String,
    /// The webhook name.
    pub webhook: String,
}

/// Labels of per-webhook series with a reason word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookReasonLabels {
    /// The bot id.
    pub bot: String,
    /// The webhook name.
    pub webhook: String,
    /// A fixed machine word.
    pub reason: String,
}

/// Labels of series counted by reason only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A fixed machine word.
    pub reason: String,
}

/// Labels of a config reload: which file, and how it went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The main config as given, or an included file relative to its
    /// folder.
    pub file: String,
    /// `ok`, `error` or `ignored`.
    pub reason: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Events accepted (and queued) per bot.
    pub events_ingested: Family<BotLabels, Counter>,
    /// Events answered as duplicates per bot.
    pub events_duplicate: Family<BotLabels, Counter>,
    /// Requests or Meta updates refused or skipped, by reason.
    pub ingest_rejected: Family<ReasonLabels, Counter>,
    /// Deliveries a receiver accepted (2xx).
    pub deliveries_delivered: Family<WebhookLabels, Counter>,
    /// Attempts that failed (non-2xx, timeout, connection error).
    pub deliveries_failed: Family<WebhookLabels, Counter>,
    /// Deliveries scheduled for another attempt.
    pub deliveries_retried: Family<WebhookLabels, Counter>,
    /// Deliveries that became dead letters, by reason.
    pub deliveries_dead_lettered: Family<WebhookReasonLabels, Counter>,
    /// Due deliveries put back without an attempt (endpoint busy, breaker
    /// open, shutdown), by reason.
    pub deliveries_postponed: Family<WebhookReasonLabels, Counter>,
    /// Deliveries not sent because a later status of their message had
    /// already been delivered (`suppress_regressions`).
    pub deliveries_suppressed: Family<WebhookLabels, Counter>,
    /// Events a plugin dropped (the format has no such status).
    pub plugin_dropped: Family<WebhookLabels, Counter>,
    /// Plugin failures, by error code.
    pub plugin_errors: Family<WebhookReasonLabels, Counter>,
    /// Time of one HTTP attempt.
    pub attempt_seconds: Family<WebhookLabels, Histogram>,
    /// Time of one plugin render, per event.
    pub plugin_render_seconds: Family<WebhookLabels, Histogram>,
    /// Plugin instances kept warm between renders (read at scrape time).
    pub plugin_warm_instances: Gauge,
    /// The linear memory they hold, in bytes.
    pub plugin_warm_memory_bytes: Gauge,
    /// Deliveries not yet delivered nor dead.
    pub queue_pending: Gauge,
    /// Of those, how many are due now.
    pub queue_due: Gauge,
    /// Config reloads, by file (the main config, or an included file whose
    /// change was applied, refused, ignored or removed) and result (`ok`,
    /// `error`, `ignored`).
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Time of one reload (parse, validate, compile changed plugins, swap).
    pub config_reload_seconds: Histogram,
    /// Client connections open on the listener.
    pub server_connections: Gauge,
    /// Times the listener reached `max_connections` and left new
    /// connections waiting in the kernel's backlog.
    pub server_connection_limit_reached: Counter,
    /// Connections closed for being too slow: `reason` is `header_read`
    /// (request headers not complete in time) or `idle`.
    pub server_timeouts: Family<ReasonLabels, Counter>,
    /// The recent activity the console shows (not exported to Prometheus).
    pub activity: crate::activity::Activity,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn render_histogram() -> Histogram {
    // 1 us .. ~65 ms
    Histogram::new(exponential_buckets(0.000_001, 2.0, 17))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            activity: crate::activity::Activity::new(),
            events_ingested: Family::default(),
            events_duplicate: Family::default(),
            ingest_rejected: Family::default(),
            deliveries_delivered: Family::default(),
            deliveries_failed: Family::default(),
            deliveries_retried: Family::default(),
            deliveries_dead_lettered: Family::default(),
            deliveries_postponed: Family::default(),
            deliveries_suppressed: Family::default(),
            plugin_dropped: Family::default(),
            plugin_errors: Family::default(),
            attempt_seconds: Family::new_with_constructor(latency_histogram),
            plugin_render_seconds: Family::new_with_constructor(render_histogram),
            plugin_warm_instances: Gauge::default(),
            plugin_warm_memory_bytes: Gauge::default(),
            queue_pending: Gauge::default(),
            queue_due: Gauge::default(),
            config_reloads: Family::default(),
            config_reload_seconds: latency_histogram(),
            server_connections: Gauge::default(),
            server_connection_limit_reached: Counter::default(),
            server_timeouts: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "statushook_events_ingested",
            "Events accepted and queued",
            m.events_ingested.clone(),
        );
        r.register(
            "statushook_events_duplicate",
            "Events answered as duplicates within the dedup window",
            m.events_duplicate.clone(),
        );
        r.register(
            "statushook_ingest_rejected",
            "Requests refused or Meta updates skipped, by reason",
            m.ingest_rejected.clone(),
        );
        r.register(
            "statushook_deliveries_delivered",
            "Deliveries accepted by the receiver (2xx)",
            m.deliveries_delivered.clone(),
        );
        r.register(
            "statushook_deliveries_failed",
            "Delivery attempts that failed",
            m.deliveries_failed.clone(),
        );
        r.register(
            "statushook_deliveries_retried",
            "Deliveries scheduled for another attempt",
            m.deliveries_retried.clone(),
        );
        r.register(
            "statushook_deliveries_dead_lettered",
            "Deliveries that became dead letters, by reason",
            m.deliveries_dead_lettered.clone(),
        );
        r.register(
            "statushook_deliveries_postponed",
            "Due deliveries put back without an attempt, by reason",
            m.deliveries_postponed.clone(),
        );
        r.register(
            "statushook_deliveries_suppressed",
            "Deliveries not sent: a later status of their message was already delivered",
            m.deliveries_suppressed.clone(),
        );
        r.register(
            "statushook_plugin_dropped",
            "Events a plugin dropped",
            m.plugin_dropped.clone(),
        );
        r.register(
            "statushook_plugin_errors",
            "Plugin failures, by error code",
            m.plugin_errors.clone(),
        );
        r.register(
            "statushook_attempt_seconds",
            "Time of one delivery attempt",
            m.attempt_seconds.clone(),
        );
        r.register(
            "statushook_plugin_render_seconds",
            "Time to render one event with a plugin",
            m.plugin_render_seconds.clone(),
        );
        r.register(
            "statushook_queue_pending",
            "Deliveries not yet delivered nor dead",
            m.queue_pending.clone(),
        );
        r.register(
            "statushook_queue_due",
            "Deliveries due now, waiting for a worker",
            m.queue_due.clone(),
        );
        r.register(
            "statushook_config_reloads",
            "Config reloads, by file and result",
            m.config_reloads.clone(),
        );
        r.register(
            "statushook_config_reload_seconds",
            "Time of one config reload",
            m.config_reload_seconds.clone(),
        );
        r.register(
            "statushook_plugin_warm_instances",
            "Plugin instances kept warm between a webhook's renders",
            m.plugin_warm_instances.clone(),
        );
        r.register(
            "statushook_plugin_warm_memory_bytes",
            "Linear memory held by the warm plugin instances, in bytes",
            m.plugin_warm_memory_bytes.clone(),
        );
        r.register(
            "statushook_server_connections",
            "Client connections open on the listener",
            m.server_connections.clone(),
        );
        r.register(
            "statushook_server_connection_limit_reached",
            "Times the listener reached max_connections",
            m.server_connection_limit_reached.clone(),
        );
        r.register(
            "statushook_server_timeouts",
            "Connections closed for being too slow, by reason",
            m.server_timeouts.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Per-webhook labels.
pub fn webhook(bot: &str, webhook: &str) -> WebhookLabels {
    WebhookLabels {
        bot: bot.to_string(),
        webhook: webhook.to_string(),
    }
}

/// Per-webhook labels with a reason word.
pub fn webhook_reason(bot: &str, webhook: &str, reason: &str) -> WebhookReasonLabels {
    WebhookReasonLabels {
        bot: bot.to_string(),
        webhook: webhook.to_string(),
        reason: reason.to_string(),
    }
}
