//! The load generator: closed-loop posters (each posts its next request when
//! the previous one is answered) and an open-loop pacer (requests start on a
//! fixed schedule whatever the answers), both posting to `POST /v1/events`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::procs::TOKEN;
use super::receiver::Tracker;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the bench's base instant, plus one (0 means "never").
pub fn now_ns() -> u64 {
    u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
}

/// An HTTP client for the bench (reqwest is built without a default TLS
/// crypto provider; install ring first, as the dispatcher does).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("http client")
}

/// Where to post.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
}

impl Target {
    pub fn new(client: reqwest::Client, port: u16) -> Self {
        Target {
            client,
            url: format!("http://127.0.0.1:{port}/v1/events"),
        }
    }
}

/// One canonical event: `<tag>-<n>` for `bot`.
pub fn event(tag: &str, n: usize, bot: &str) -> String {
    format!(
        r#"{{"id":"{tag}-{n}","bot_id":"{bot}","message_id":"wamid.{tag}.{n}","status":"delivered","timestamp":1777326001,"recipient":"5939800000000","sender":"16044441111"}}"#
    )
}

/// What the posters did.
pub struct Posted {
    tag: String,
    bot: String,
    /// Start of the (accepted) request that carried event n, ns; 0: not accepted.
    pub sent_at: Vec<AtomicU64>,
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub posted: AtomicU64,
    pub first_ns: AtomicU64,
    pub last_answer_ns: AtomicU64,
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Request start to `202`, ms.
    pub answer_ms: Mutex<Vec<f64>>,
    /// Open loop: how late each request started against its schedule, ms.
    pub lag_ms: Mutex<Vec<f64>>,
}

impl Posted {
    pub fn new(tag: &str, bot: &str, capacity: usize) -> Arc<Self> {
        Arc::new(Posted {
            tag: tag.to_string(),
            bot: bot.to_string(),
            sent_at: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_answer_ns: AtomicU64::new(0),
            errors: Mutex::default(),
            answer_ms: Mutex::default(),
            lag_ms: Mutex::default(),
        })
    }

    /// Posts events `range` in one request (a JSON array when more than one).
    async fn post(&self, target: &Target, range: std::ops::Range<usize>) {
        let count = range.len();
        let body = if count == 1 {
            event(&self.tag, range.start, &self.bot)
        } else {
            let items: Vec<String> = range
                .clone()
                .map(|n| event(&self.tag, n, &self.bot))
                .collect();
            format!("[{}]", items.join(","))
        };
        let start = now_ns();
        self.first_ns.fetch_min(start, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.posted.fetch_add(count as u64, Relaxed);
        let sent = target
            .client
            .post(&target.url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let problem = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.bytes().await.unwrap_or_default();
                if status == 202 {
                    let end = now_ns();
                    self.last_answer_ns.fetch_max(end, Relaxed);
                    self.answer_ms
                        .lock()
                        .expect("lock")
                        .push((end - start) as f64 / 1e6);
                    for n in range {
                        self.sent_at[n].store(start, Relaxed);
                    }
                    self.accepted.fetch_add(count as u64, Relaxed);
                    None
                } else {
                    Some(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&text[..text.len().min(160)])
                    ))
                }
            }
            Err(error) => Some(format!("request error: {error}")),
        };
        if let Some(problem) = problem {
            self.last_answer_ns.fetch_max(now_ns(), Relaxed);
            *self
                .errors
                .lock()
                .expect("lock")
                .entry(problem)
                .or_default() += 1;
        }
    }

    /// Ingest-to-receipt latencies (ms) of the events both accepted and received.
    pub fn latencies(&self, tracker: &Tracker) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .sent_at
            .iter()
            .zip(&tracker.arrivals)
            .filter_map(|(s, a)| {
                let (s, a) = (s.load(Relaxed), a.load(Relaxed));
                (s != 0 && a != 0).then(|| a.saturating_sub(s) as f64 / 1e6)
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }

    pub fn error_summary(&self) -> String {
        let errors = self.errors.lock().expect("lock");
        errors
            .iter()
            .map(|(e, n)| format!("{n}× {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `posters` closed-loop posters sending `chunk` events per request until
/// `events` are posted or `cap` has passed.
pub async fn closed_loop(
    target: &Target,
    posted: &Arc<Posted>,
    events: usize,
    chunk: usize,
    posters: usize,
    cap: Duration,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + cap;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..posters {
        let (target, posted, next) = (target.clone(), Arc::clone(posted), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let start = next.fetch_add(chunk, Relaxed);
                if start >= events || Instant::now() > deadline {
                    break;
                }
                posted
                    .post(&target, start..(start + chunk).min(events))
                    .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One event per request at `rate` requests/s for `seconds`, open loop:
/// every request starts on schedule, in its own task, whether or not earlier
/// ones have been answered. Event numbers start at `first`.
pub async fn open_loop(target: &Target, posted: &Arc<Posted>, rate: f64, seconds: f64) {
    let total = (rate * seconds).round() as usize;
    let total = total.min(posted.sent_at.len());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while i < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        while i < due {
            let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
            let (target, posted) = (target.clone(), Arc::clone(posted));
            let n = i;
            tasks.spawn(async move {
                let lag = Instant::now()
                    .saturating_duration_since(scheduled)
                    .as_secs_f64()
                    * 1e3;
                posted.lag_ms.lock().expect("lock").push(lag);
                posted.post(&target, n..n + 1).await;
            });
            i += 1;
        }
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let next = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(next.into()).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits until `expected` distinct deliveries arrived, nothing new arrived
/// for `stall`, or `cap` passed. True when all arrived.
pub async fn drain(tracker: &Tracker, expected: u64, stall: Duration, cap: Duration) -> bool {
    let start = Instant::now();
    let mut seen = 0;
    let mut progress = Instant::now();
    loop {
        let now = tracker.distinct.load(Relaxed);
        if now >= expected {
            return true;
        }
        if now != seen {
            seen = now;
            progress = Instant::now();
        }
        if progress.elapsed() > stall || start.elapsed() > cap {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}
