//! The load: unique events across the 100 bots at a steady rate, some one
//! per request and some in batches, posted to either dispatcher. A request
//! that is not answered `202` is sent again (to the other dispatcher first)
//! until it is; the ledger counts an event only once a `202` covers it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::{self, BOTS, INGEST_TOKEN, STATUSES};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not answered yet.
    Pending,
    /// A `202` counted it in `accepted`.
    Accepted,
    /// A `202` counted it in `duplicates`: an earlier try of the same
    /// request was queued, but its answer was lost (a dispatcher killed, a
    /// Redis restart between the write and the answer).
    AcceptedEarlier,
    /// Still not answered `202` when the load generator stopped trying.
    GaveUp,
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub bot: u16,
    /// Index into [`STATUSES`].
    pub status: u8,
    pub state: State,
}

impl Event {
    pub fn status(&self) -> &'static str {
        STATUSES[usize::from(self.status)].0
    }

    pub fn accepted(&self) -> bool {
        matches!(self.state, State::Accepted | State::AcceptedEarlier)
    }
}

/// Counters of the load generator.
#[derive(Default)]
pub struct Stats {
    /// Requests (each sent until answered `202`).
    pub requests: AtomicU64,
    pub batches: AtomicU64,
    /// HTTP sends, first tries and retries.
    pub sends: AtomicU64,
    /// Requests that needed more than one send.
    pub retried: AtomicU64,
    /// Sends not answered `202`, by why.
    pub refused: Mutex<BTreeMap<String, u64>>,
    /// Answers no retry can fix (a bench bug): examples.
    pub unexpected: Mutex<Vec<String>>,
    /// `202`s mixing accepted and duplicate events in one batch (a batch is
    /// queued whole or not at all, so this should not happen).
    pub mixed: AtomicU64,
}

pub struct Ledger {
    pub events: Mutex<Vec<Event>>,
    pub stats: Stats,
}

impl Ledger {
    pub fn new() -> Arc<Self> {
        Arc::new(Ledger {
            events: Mutex::new(Vec::new()),
            stats: Stats::default(),
        })
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("ledger lock").clone()
    }

    fn add(&self, bot: usize, status: usize) -> usize {
        let mut events = self.events.lock().expect("ledger lock");
        events.push(Event {
            bot: u16::try_from(bot).expect("bot index"),
            status: u8::try_from(status).expect("status index"),
            state: State::Pending,
        });
        events.len() - 1
    }

    fn settle(&self, numbers: &[usize], state: State) {
        let mut events = self.events.lock().expect("ledger lock");
        for &n in numbers {
            events[n].state = state;
        }
    }

    fn refused(&self, why: String) {
        *self
            .stats
            .refused
            .lock()
            .expect("stats lock")
            .entry(why)
            .or_default() += 1;
    }
}

/// Where and how to post.
#[derive(Clone)]
pub struct Poster {
    pub client: reqwest::Client,
    pub ports: [u16; 2],
    pub ledger: Arc<Ledger>,
    /// Requests still unanswered at this instant give up (set when the soak
    /// ends; far in the future until then).
    pub give_up: Arc<Mutex<Instant>>,
}

fn random_status() -> usize {
    let total: u32 = STATUSES.iter().map(|(_, w)| w).sum();
    let mut pick = fastrand::u32(..total);
    for (i, (_, weight)) in STATUSES.iter().enumerate() {
        if pick < *weight {
            return i;
        }
        pick -= weight;
    }
    0
}

/// Posts `rate` events/s until `stop` is set: every 100 ms, 40 % of the
/// tick's events one per request and the rest as one batch. Returns the
/// request tasks, still running (they retry until answered).
pub async fn run(poster: Poster, rate: f64, stop: Arc<AtomicBool>) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut made = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Relaxed) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as usize;
        let mut batch = Vec::new();
        while made < due {
            let (bot, status) = (fastrand::usize(..BOTS), random_status());
            let n = poster.ledger.add(bot, status);
            made += 1;
            let event = layout::event_json(n, bot, STATUSES[status].0);
            if fastrand::f64() < 0.4 {
                let poster = poster.clone();
                tasks.spawn(async move { poster.post(vec![n], event.to_string()).await });
            } else {
                batch.push((n, event));
            }
        }
        if !batch.is_empty() {
            let numbers: Vec<usize> = batch.iter().map(|(n, _)| *n).collect();
            let body = if batch.len() == 1 {
                batch[0].1.to_string()
            } else {
                poster.ledger.stats.batches.fetch_add(1, Relaxed);
                serde_json::Value::Array(batch.into_iter().map(|(_, e)| e).collect()).to_string()
            };
            let poster = poster.clone();
            tasks.spawn(async move { poster.post(numbers, body).await });
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks
}

impl Poster {
    fn give_up_at(&self) -> Instant {
        *self.give_up.lock().expect("give-up lock")
    }

    /// Sends one request until a `202` covers its events.
    async fn post(&self, numbers: Vec<usize>, body: String) {
        let stats = &self.ledger.stats;
        stats.requests.fetch_add(1, Relaxed);
        let mut slot = fastrand::usize(..2);
        let mut tries = 0u32;
        loop {
            tries += 1;
            stats.sends.fetch_add(1, Relaxed);
            if tries == 2 {
                stats.retried.fetch_add(1, Relaxed);
            }
            let sent = self
                .client
                .post(format!("http://127.0.0.1:{}/v1/events", self.ports[slot]))
                .bearer_auth(INGEST_TOKEN)
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            let why = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.bytes().await.unwrap_or_default();
                    match status {
                        202 => {
                            self.accepted(&numbers, &text);
                            return;
                        }
                        503 | 429 => format!("HTTP {status}"),
                        _ => {
                            let mut unexpected = stats.unexpected.lock().expect("stats lock");
                            if unexpected.len() < 20 {
                                unexpected.push(format!(
                                    "HTTP {status}: {}",
                                    String::from_utf8_lossy(&text[..text.len().min(300)])
                                ));
                            }
                            drop(unexpected);
                            self.ledger.settle(&numbers, State::GaveUp);
                            return;
                        }
                    }
                }
                Err(e) if e.is_timeout() => "no answer within 10 s".to_string(),
                Err(e) if e.is_connect() => "connection refused".to_string(),
                Err(_) => "connection closed before an answer".to_string(),
            };
            self.ledger.refused(why);
            if Instant::now() > self.give_up_at() {
                self.ledger.settle(&numbers, State::GaveUp);
                return;
            }
            let backoff = 50u64.saturating_mul(1 << tries.min(5)).min(1000);
            tokio::time::sleep(Duration::from_millis(
                backoff / 2 + fastrand::u64(..=backoff / 2),
            ))
            .await;
            slot = 1 - slot;
        }
    }

    fn accepted(&self, numbers: &[usize], text: &[u8]) {
        let stats = &self.ledger.stats;
        let answer: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
        let accepted = answer["accepted"].as_u64();
        let duplicates = answer["duplicates"].as_u64();
        let (Some(accepted), Some(duplicates)) = (accepted, duplicates) else {
            stats.unexpected.lock().expect("stats lock").push(format!(
                "a 202 without accepted/duplicates: {}",
                String::from_utf8_lossy(text)
            ));
            self.ledger.settle(numbers, State::GaveUp);
            return;
        };
        if accepted + duplicates != numbers.len() as u64 {
            stats.unexpected.lock().expect("stats lock").push(format!(
                "a 202 for {} events says accepted {accepted}, duplicates {duplicates}",
                numbers.len()
            ));
        }
        let state = if duplicates == 0 {
            State::Accepted
        } else if accepted == 0 {
            State::AcceptedEarlier
        } else {
            // Which ones were duplicates is not said; every one was queued.
            stats.mixed.fetch_add(1, Relaxed);
            State::Accepted
        };
        self.ledger.settle(numbers, state);
    }
}
