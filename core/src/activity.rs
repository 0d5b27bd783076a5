//! What this dispatcher has seen lately, per bot and webhook, for the
//! console: totals, rates over the last minutes, when each webhook last
//! succeeded and failed, and the recent config reloads.
//!
//! Metrics answer "how much, ever" for Prometheus; this answers "what is
//! happening now, and since when" for a person at the console. It is kept
//! in memory by each dispatcher (several dispatchers sharing one Redis each
//! show their own share) and costs a read lock and a few relaxed atomics
//! per delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::queue::now_ms;

/// How often the rates are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How many samples are kept: ten minutes.
const SAMPLES: usize = 120;
/// How many reloads the history keeps.
const RELOADS: usize = 50;
/// The longest last-error text kept per webhook.
const ERROR_CHARS: usize = 300;

/// The dispatcher's recent activity.
#[derive(Debug, Default)]
pub struct Activity {
    bots: RwLock<HashMap<String, Arc<BotActivity>>>,
    samples: Mutex<VecDeque<Sample>>,
    reloads: Mutex<VecDeque<Reload>>,
    started_ms: AtomicU64,
}

/// One bot's counters.
#[derive(Debug, Default)]
struct BotActivity {
    events: AtomicU64,
    webhooks: RwLock<HashMap<String, Arc<WebhookActivity>>>,
}

/// One webhook's counters and last outcomes.
#[derive(Debug, Default)]
struct WebhookActivity {
    delivered: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    last_success_ms: AtomicU64,
    last_failure_ms: AtomicU64,
    last_error: Mutex<String>,
}

/// Totals of every bot at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    /// bot → (events, deliveries delivered).
    totals: HashMap<String, (u64, u64)>,
}

/// One config reload, as the console lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Reload {
    /// When it ended, unix ms.
    pub at_ms: u64,
    /// `ok`, `error` or `ignored`.
    pub result: &'static str,
    /// How long it took, ms.
    pub took_ms: f64,
    /// What changed, or why it was refused.
    pub summary: String,
}

/// What the console shows of one webhook.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WebhookView {
    /// Deliveries it accepted (2xx).
    pub delivered: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Deliveries that became dead letters.
    pub dead: u64,
    /// Its last 2xx, unix ms.
    pub last_success_ms: Option<u64>,
    /// Its last failed attempt, unix ms.
    pub last_failure_ms: Option<u64>,
    /// What that failure was.
    pub last_error: Option<String>,
}

/// What the console shows of one bot: totals and a rate series.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BotView {
    /// Events accepted.
    pub events: u64,
    /// Deliveries accepted by its webhooks.
    pub delivered: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Dead letters.
    pub dead: u64,
    /// Sample times, unix ms, oldest first.
    pub series_ms: Vec<u64>,
    /// Events per second between each sample and the one before.
    pub events_per_s: Vec<f64>,
    /// Deliveries per second likewise.
    pub deliveries_per_s: Vec<f64>,
}

impl Activity {
    /// An empty record, started now.
    pub fn new() -> Self {
        let activity = Activity::default();
        activity.started_ms.store(now_ms(), Relaxed);
        activity
    }

    /// When this dispatcher started recording, unix ms.
    pub fn started_ms(&self) -> u64 {
        self.started_ms.load(Relaxed)
    }

    /// `n` events of `bot` were accepted.
    pub fn events(&self, bot: &str, n: u64) {
        self.bot(bot).events.fetch_add(n, Relaxed);
    }

    /// A delivery of `webhook` of `bot` was accepted.
    pub fn delivered(&self, bot: &str, webhook: &str) {
        let w = self.webhook(bot, webhook);
        w.delivered.fetch_add(1, Relaxed);
        w.last_success_ms.store(now_ms(), Relaxed);
    }

    /// An attempt of `webhook` of `bot` failed with `error`.
    pub fn failed(&self, bot: &str, webhook: &str, error: &str) {
        let w = self.webhook(bot, webhook);
        w.failed.fetch_add(1, Relaxed);
        w.last_failure_ms.store(now_ms(), Relaxed);
        let mut last = w.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        last.clear();
        last.extend(error.chars().take(ERROR_CHARS));
    }

    /// A delivery of `webhook` of `bot` became a dead letter.
    pub fn dead(&self, bot: &str, webhook: &str) {
        self.webhook(bot, webhook).dead.fetch_add(1, Relaxed);
    }

    /// Records a config reload.
    pub fn reloaded(&self, reload: Reload) {
        let mut reloads = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        if reloads.len() == RELOADS {
            reloads.pop_front();
        }
        reloads.push_back(reload);
    }

    /// The recent reloads, newest first.
    pub fn reloads(&self) -> Vec<Reload> {
        let reloads = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        reloads.iter().rev().cloned().collect()
    }

    /// Takes a sample of every bot's totals (the rates are the differences
    /// between samples).
    pub fn sample(&self) {
        let bots = self.bots.read().unwrap_or_else(PoisonError::into_inner);
        let totals = bots
            .iter()
            .map(|(id, bot)| {
                let webhooks = bot.webhooks.read().unwrap_or_else(PoisonError::into_inner);
                let delivered = webhooks.values().map(|w| w.delivered.load(Relaxed)).sum();
                (id.clone(), (bot.events.load(Relaxed), delivered))
            })
            .collect();
        drop(bots);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at_ms: now_ms(),
            totals,
        });
    }

    /// What the console shows of `bot`.
    pub fn bot_view(&self, bot: &str) -> BotView {
        let mut view = BotView::default();
        if let Some(b) = self.find(bot) {
            view.events = b.events.load(Relaxed);
            let webhooks = b.webhooks.read().unwrap_or_else(PoisonError::into_inner);
            for w in webhooks.values() {
                view.delivered += w.delivered.load(Relaxed);
                view.failed += w.failed.load(Relaxed);
                view.dead += w.dead.load(Relaxed);
            }
        }
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        for (before, after) in samples.iter().zip(samples.iter().skip(1)) {
            let secs = after.at_ms.saturating_sub(before.at_ms).max(1) as f64 / 1000.0;
            let of = |s: &Sample| s.totals.get(bot).copied().unwrap_or((0, 0));
            let ((e0, d0), (e1, d1)) = (of(before), of(after));
            view.series_ms.push(after.at_ms);
            view.events_per_s.push(e1.saturating_sub(e0) as f64 / secs);
            view.deliveries_per_s
                .push(d1.saturating_sub(d0) as f64 / secs);
        }
        view
    }

    /// What the console shows of `webhook` of `bot`.
    pub fn webhook_view(&self, bot: &str, webhook: &str) -> WebhookView {
        let Some(w) = self.find(bot).and_then(|b| {
            let webhooks = b.webhooks.read().unwrap_or_else(PoisonError::into_inner);
            webhooks.get(webhook).cloned()
        }) else {
            return WebhookView::default();
        };
        let ms = |a: &AtomicU64| Some(a.load(Relaxed)).filter(|&v| v > 0);
        let error = w.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        WebhookView {
            delivered: w.delivered.load(Relaxed),
            failed: w.failed.load(Relaxed),
            dead: w.dead.load(Relaxed),
            last_success_ms: ms(&w.last_success_ms),
            last_failure_ms: ms(&w.last_failure_ms),
            last_error: Some(error.clone()).filter(|e| !e.is_empty()),
        }
    }

    fn find(&self, bot: &str) -> Option<Arc<BotActivity>> {
        let bots = self.bots.read().unwrap_or_else(PoisonError::into_inner);
        bots.get(bot).cloned()
    }

    fn bot(&self, bot: &str) -> Arc<BotActivity> {
        if let Some(found) = self.find(bot) {
            return found;
        }
        let mut bots = self.bots.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(bots.entry(bot.to_string()).or_default())
    }

    fn webhook(&self, bot: &str, webhook: &str) -> Arc<WebhookActivity> {
        let b = self.bot(bot);
        if let Some(found) = b
            .webhooks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(webhook)
        {
            return Arc::clone(found);
        }
        let mut webhooks = b.webhooks.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(webhooks.entry(webhook.to_string()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_last_outcomes_per_webhook() {
        let activity = Activity::new();
        activity.sample();
        activity.events("acme", 3);
        activity.delivered("acme", "crm");
        activity.delivered("acme", "crm");
        activity.failed("acme", "bi", "HTTP 503");
        activity.dead("acme", "bi");
        std::thread::sleep(Duration::from_millis(20));
        activity.sample();

        let bot = activity.bot_view("acme");
        assert_eq!(
            (bot.events, bot.delivered, bot.failed, bot.dead),
            (3, 2, 1, 1)
        );
        assert_eq!(bot.series_ms.len(), 1);
        assert!(bot.events_per_s[0] > 0.0 && bot.deliveries_per_s[0] > 0.0);
        let crm = activity.webhook_view("acme", "crm");
        assert_eq!(crm.delivered, 2);
        assert!(crm.last_success_ms.is_some() && crm.last_failure_ms.is_none());
        let bi = activity.webhook_view("acme", "bi");
        assert_eq!(bi.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(
            activity.bot_view("globex"),
            BotView {
                series_ms: bot.series_ms.clone(),
                events_per_s: vec![0.0],
                deliveries_per_s: vec![0.0],
                ..BotView::default()
            }
        );
    }

    #[test]
    fn the_reload_history_keeps_the_newest() {
        let activity = Activity::new();
        for n in 0..RELOADS + 5 {
            activity.reloaded(Reload {
                at_ms: n as u64,
                result: "ok",
                took_ms: 1.0,
                summary: format!("reload {n}"),
            });
        }
        let reloads = activity.reloads();
        assert_eq!(reloads.len(), RELOADS);
        assert_eq!(reloads[0].summary, format!("reload {}", RELOADS + 4));
    }
}
