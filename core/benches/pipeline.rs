//! End-to-end delivery pipeline benchmark: the release `statushook` binary as
//! a separate process, a real `redis-server` (or the embedded store), and a
//! receiver plus load generator in this process, all on loopback.
//!
//! ```text
//! cargo build --release --bin statushook && cargo bench --bench pipeline
//! PIPELINE_BENCH=quick cargo bench --bench pipeline        # a short smoke run
//! ```
//!
//! Environment (all optional):
//! - `PIPELINE_BENCH`: `full` (default) or `quick` (small sizes, one repeat);
//! - `PIPELINE_SCENARIOS`: e.g. `1,2` (default `1,2,3,4`);
//! - `PIPELINE_BACKENDS`: e.g. `redis` (default `redis,embedded`; the
//!   embedded store is skipped, with a note, when the binary cannot open it);
//! - `PIPELINE_EVENTS`: events per scenario-1 run (both modes);
//! - `PIPELINE_REPEATS`: runs per scenario-1/2 row (the median run is shown);
//! - `PIPELINE_COST_RATES=30,300,3000`: scenario 2 at each rate on every backend, for the
//!   CPU-per-delivery curve;
//! - `PIPELINE_RATE`, `PIPELINE_SECONDS`: scenario 2's open-loop rate and length;
//! - `PIPELINE_PER_ENDPOINT`: sets `max_in_flight_per_endpoint` in every
//!   generated config (default: not set, the dispatcher's default);
//! - `PIPELINE_HISTORY=off`: runs with the delivery log off (`[history]
//!   retention = "0s"`; default on, as the dispatcher's default);
//! - `PIPELINE_PLUGIN=/abs/path/plugin.wasm`: scenario 1 and 2's webhook
//!   uses that component (a template's build) instead of the built-in `wpp`;
//! - `PIPELINE_WARM=off`: `[plugins] warm_memory_bytes = 0`, a fresh plugin
//!   instance per request (default: the dispatcher's warm instances);
//! - `PIPELINE_REDIS_DETAIL=1`: prints, per run with Redis, each command's
//!   calls and microseconds inside Redis per delivery (`INFO commandstats`);
//! - `PIPELINE_ALLOW_STALE_BIN=1`: skip the binary-newer-than-sources check;
//!   `STATUSHOOK_BIN`: another binary.
//!
//! Markdown tables go to stdout, progress to stderr. BENCHMARKS.md
//! ("Delivery pipeline") explains every column.

#[path = "pipeline/load.rs"]
mod load;
#[path = "pipeline/procs.rs"]
mod procs;
#[path = "pipeline/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use load::{Posted, Target, pct, sorted};
use procs::{Backend, Bots, ConfigSpec, CpuUse, Dispatcher, Mem, RedisServer};
use receiver::Receiver;

/// Sizes and choices of one run of the benchmark.
#[derive(Debug, Clone)]
struct Plan {
    name: &'static str,
    scenarios: BTreeSet<u8>,
    backends: Vec<Backend>,
    repeats: usize,
    batch_events: usize,
    single_events: usize,
    batch_size: usize,
    batch_posters: usize,
    single_posters: usize,
    /// Closed-loop posting stops after this long (fewer events are posted).
    post_cap: Duration,
    rate: f64,
    latency_seconds: f64,
    latency_repeats: usize,
    /// `PIPELINE_COST_RATES=30,300,3000`: scenario 2 runs every backend at
    /// each of these rates instead of its usual rows (the cost curve).
    cost_rates: Option<Vec<f64>>,
    large_bots: usize,
    rss_batch_events: usize,
    rss_single_events: usize,
    fair_rate_b: f64,
    fair_rate_a: f64,
    fair_seconds: f64,
    per_endpoint: Option<usize>,
    /// Scenario 1 also runs with `max_in_flight_per_endpoint` set to this
    /// (a diagnostic of the default per-endpoint cap).
    cap_variant: Option<usize>,
    /// The embedded store is fsync-bound (~500 deliveries/s here): its
    /// closed-loop runs post this share of the events.
    embedded_scale: f64,
    /// Scenario 2 also measures the embedded store at this rate (one it
    /// can sustain).
    embedded_latency_rate: f64,
    /// Scenario 4's rates for the embedded store (A and B each).
    fair_rate_embedded: f64,
    /// Whether the delivery log is on (`PIPELINE_HISTORY`).
    history: bool,
}

impl Plan {
    fn from_env() -> Result<Self, String> {
        let quick = match std::env::var("PIPELINE_BENCH").as_deref() {
            Ok("quick") => true,
            Ok("full") | Ok("") | Err(_) => false,
            Ok(other) => return Err(format!("PIPELINE_BENCH={other:?}: expected quick or full")),
        };
        let full = Plan {
            name: "full",
            scenarios: [1, 2, 3, 4].into(),
            backends: vec![Backend::Redis, Backend::Embedded],
            repeats: 3,
            batch_events: 50_000,
            single_events: 20_000,
            batch_size: 100,
            batch_posters: 4,
            single_posters: 32,
            post_cap: Duration::from_secs(20),
            rate: 2_000.0,
            latency_seconds: 10.0,
            latency_repeats: 3,
            cost_rates: None,
            large_bots: 1_000,
            rss_batch_events: 20_000,
            rss_single_events: 10_000,
            fair_rate_b: 1_000.0,
            fair_rate_a: 1_000.0,
            fair_seconds: 12.0,
            per_endpoint: None,
            cap_variant: Some(256),
            embedded_scale: 0.15,
            embedded_latency_rate: 250.0,
            fair_rate_embedded: 200.0,
            history: true,
        };
        // The quick run: small sizes, one repeat.
        let mut plan = if quick {
            Plan {
                name: "quick",
                repeats: 1,
                batch_events: 4_000,
                single_events: 2_000,
                post_cap: Duration::from_secs(10),
                latency_seconds: 3.0,
                latency_repeats: 1,
                rss_batch_events: 2_000,
                rss_single_events: 1_000,
                fair_rate_b: 500.0,
                fair_rate_a: 500.0,
                fair_seconds: 4.0,
                embedded_scale: 0.5,
                ..full
            }
        } else {
            full
        };
        if let Ok(list) = std::env::var("PIPELINE_SCENARIOS") {
            plan.scenarios = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<u8>()
                        .map_err(|e| format!("PIPELINE_SCENARIOS: {s:?}: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        plan.history = match std::env::var("PIPELINE_HISTORY").as_deref() {
            Ok("on") | Ok("") | Err(_) => true,
            Ok("off") => false,
            Ok(other) => return Err(format!("PIPELINE_HISTORY={other:?}: expected on or off")),
        };
        if let Ok(list) = std::env::var("PIPELINE_BACKENDS") {
            plan.backends = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| match s.trim() {
                    "redis" => Ok(Backend::Redis),
                    "embedded" => Ok(Backend::Embedded),
                    other => Err(format!("PIPELINE_BACKENDS: unknown backend {other:?}")),
                })
                .collect::<Result<_, _>>()?;
        }
        let number = |name: &str| -> Result<Option<f64>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|e| format!("{name}={v:?}: {e}")),
                Err(_) => Ok(None),
            }
        };
        if let Some(n) = number("PIPELINE_EVENTS")? {
            plan.batch_events = n as usize;
            plan.single_events = n as usize;
        }
        if let Some(n) = number("PIPELINE_REPEATS")? {
            plan.repeats = (n as usize).max(1);
            plan.latency_repeats = (n as usize).max(1);
        }
        if let Ok(list) = std::env::var("PIPELINE_COST_RATES") {
            plan.cost_rates = Some(
                list.split(',')
                    .map(|r| {
                        r.trim()
                            .parse::<f64>()
                            .map_err(|e| format!("PIPELINE_COST_RATES: {r:?}: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some(n) = number("PIPELINE_RATE")? {
            plan.rate = n;
        }
        if let Some(n) = number("PIPELINE_SECONDS")? {
            plan.latency_seconds = n;
        }
        if let Some(n) = number("PIPELINE_PER_ENDPOINT")? {
            plan.per_endpoint = Some(n as usize);
            plan.cap_variant = None;
        }
        Ok(plan)
    }

    /// The closed-loop posting modes of scenarios 1 and 3: batches, then one
    /// event per request.
    fn modes(&self) -> [Mode; 2] {
        [
            Mode::Batch {
                size: self.batch_size,
                posters: self.batch_posters,
            },
            Mode::Single {
                posters: self.single_posters,
            },
        ]
    }

    /// `events` of a closed-loop run on `backend`: the fsync-bound embedded
    /// store posts its share.
    fn scaled(&self, backend: Backend, events: usize) -> usize {
        match backend {
            Backend::Redis => events,
            Backend::Embedded => ((events as f64) * self.embedded_scale).round() as usize,
        }
    }
}

/// "Quiet" for [`Ctx::wait_for_quiet`]: the machine's busy share of all cores.
const QUIET_BUSY_PERCENT: f64 = 12.0;

/// How long to wait for deliveries after posting ends.
#[derive(Debug, Clone, Copy)]
struct Drain {
    stall: Duration,
    cap: Duration,
    hz: f64,
}

/// Shared state of the whole benchmark.
struct Ctx {
    plan: Plan,
    bin: PathBuf,
    work: tempfile::TempDir,
    cache: PathBuf,
    client: reqwest::Client,
    drain: Drain,
    embedded_unavailable: Option<String>,
    runs: usize,
    /// WARN/ERROR lines of the dispatchers' stderr, by scenario and text.
    log_issues: BTreeMap<String, u64>,
    notes: Vec<String>,
}

/// One dispatcher (with its Redis, if any) for one or more runs.
struct Stack {
    _dir: tempfile::TempDir,
    redis: Option<RedisServer>,
    dispatcher: Dispatcher,
    target: Target,
    label: String,
}

impl Stack {
    fn mem(&self) -> Mem {
        procs::mem(self.dispatcher.pid())
    }

    /// The bytes the queue's store holds: Redis `used_memory`, or the
    /// embedded store's files.
    fn store_bytes(&self) -> u64 {
        match &self.redis {
            Some(redis) => procs::redis_used_memory(redis.port).unwrap_or(0),
            None => procs::folder_bytes(&self._dir.path().join("queue")),
        }
    }

    fn cpu_mark(&self) -> procs::CpuMark {
        procs::cpu_mark(
            self.dispatcher.pid(),
            self.redis.as_ref().map(RedisServer::pid),
        )
    }
}

impl Ctx {
    fn tag(&mut self) -> String {
        self.runs += 1;
        format!("r{}", self.runs)
    }

    /// Why `backend` cannot be measured, if it cannot.
    fn skip(&self, backend: Backend) -> Option<String> {
        match backend {
            Backend::Embedded => self.embedded_unavailable.clone(),
            Backend::Redis => None,
        }
    }

    async fn stack(
        &mut self,
        backend: Backend,
        bots: &Bots,
        cap: Option<usize>,
        label: &str,
    ) -> Result<Stack, String> {
        let timeout = "2s";
        if let Some(why) = self.skip(backend) {
            return Err(why);
        }
        self.wait_for_quiet(label).await;
        let dir = tempfile::Builder::new()
            .prefix("stack-")
            .tempdir_in(self.work.path())
            .map_err(|e| e.to_string())?;
        let redis = match backend {
            Backend::Redis => Some(RedisServer::start(&dir.path().join("redis"))?),
            Backend::Embedded => None,
        };
        let port = procs::free_port();
        let config_path = dir.path().join("config.toml");
        let queue_dir = dir.path().join("queue");
        let text = procs::config_text(
            &ConfigSpec {
                port,
                backend,
                redis_url: redis.as_ref().map(RedisServer::url),
                queue_dir: &queue_dir,
                cache_dir: &self.cache,
                timeout,
                per_endpoint: cap.or(self.plan.per_endpoint),
                bots,
                history: self.plan.history,
            },
            &config_path,
        )?;
        std::fs::write(&config_path, text).map_err(|e| format!("config: {e}"))?;
        let started = Instant::now();
        let dispatcher = match Dispatcher::start(
            &self.bin,
            &config_path,
            port,
            &self.cache,
            dir.path().join("dispatcher.log"),
            &self.client,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                if backend == Backend::Embedded && e.contains("not available") {
                    self.embedded_unavailable = Some(format!(
                        "the embedded backend is not available in this build ({})",
                        e.lines().last().unwrap_or("").trim()
                    ));
                    self.notes.push(format!("embedded backend skipped: {e}"));
                }
                return Err(e);
            }
        };
        eprintln!(
            "  [{label}] {} dispatcher ready in {:.1} s ({} webhooks)",
            backend.name(),
            started.elapsed().as_secs_f64(),
            bots.webhooks()
        );
        Ok(Stack {
            _dir: dir,
            redis,
            target: Target::new(self.client.clone(), port),
            dispatcher,
            label: label.to_string(),
        })
    }

    /// The machine is shared (other builds may run): before each measured
    /// dispatcher starts, wait (up to 2 min) until the machine is nearly idle.
    async fn wait_for_quiet(&mut self, label: &str) {
        let started = Instant::now();
        loop {
            let a = procs::machine_ticks();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let b = procs::machine_ticks();
            let busy = (b.0 - a.0) as f64 / ((b.1 - a.1).max(1)) as f64 * 100.0;
            if busy < QUIET_BUSY_PERCENT {
                if started.elapsed() > Duration::from_secs(3) {
                    eprintln!(
                        "  [{label}] waited {:.0} s for the machine to be quiet",
                        started.elapsed().as_secs_f64()
                    );
                }
                return;
            }
            if started.elapsed() > Duration::from_secs(120) {
                eprintln!(
                    "  [{label}] the machine is still {busy:.0}% busy after 2 min; measuring anyway"
                );
                self.notes.push(format!("[{label}] a run started while the machine was {busy:.0}% busy with other work (see the `other` CPU column)"));
                return;
            }
        }
    }

    /// Stops a stack and keeps the WARN/ERROR lines of its dispatcher.
    fn stop(&mut self, mut stack: Stack) {
        let log = std::fs::read_to_string(&stack.dispatcher.log).unwrap_or_default();
        if let Some(status) = stack.dispatcher.exited() {
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            self.notes.push(format!(
                "[{}] the dispatcher process exited during the run ({status}); its stderr ends: {}",
                stack.label,
                tail.join(" ⏎ ")
            ));
        }
        for line in log.lines() {
            if line.contains("WARN") || line.contains("ERROR") || line.contains("panicked") {
                // Drop the timestamp (first field) so repeats group together.
                let text = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
                let text: String = text.chars().take(300).collect();
                *self
                    .log_issues
                    .entry(format!("[{}] {text}", stack.label))
                    .or_default() += 1;
            }
        }
        drop(stack);
    }
}

/// The dispatcher's `/metrics` text, or `None` if it did not answer.
async fn metrics_text(stack: &Stack) -> Option<String> {
    let url = format!("http://127.0.0.1:{}/metrics", stack.dispatcher.port);
    let response = stack.target.client.get(url).send().await.ok()?;
    response.text().await.ok()
}

/// Deliveries put back without an attempt so far: the dispatcher's counter,
/// summed over the `/metrics` lines whose labels contain `filter`.
async fn postponed_count(stack: &Stack, filter: &str) -> f64 {
    let Some(text) = metrics_text(stack).await else {
        return f64::NAN;
    };
    text.lines()
        .filter(|l| l.starts_with("statushook_deliveries_postponed") && l.contains(filter))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

// ---------------------------------------------------------------------------
// Measurements

#[derive(Debug, Clone, Copy)]
enum Mode {
    Batch { size: usize, posters: usize },
    Single { posters: usize },
}

impl Mode {
    fn describe(self) -> String {
        match self {
            Mode::Batch { size, posters } => format!("batches of {size}, {posters} posters"),
            Mode::Single { posters } => format!("1 event/request, {posters} posters"),
        }
    }
}

/// A closed-loop throughput run.
#[derive(Debug, Clone, Default)]
struct Throughput {
    posted: u64,
    accepted: u64,
    requests: u64,
    received: u64,
    duplicates: u64,
    complete: bool,
    ingest_secs: f64,
    wall_secs: f64,
    deliveries_per_s: f64,
    ingest_requests_per_s: f64,
    ingest_events_per_s: f64,
    latency_p50: f64,
    latency_p99: f64,
    answer_p50: f64,
    answer_p99: f64,
    postponed: f64,
    cpu: CpuUse,
    errors: String,
}

/// A closed-loop run of `events` events of `bot` on `stack`; `ctx` gives it
/// its tag, the posting cap and the drain limits.
async fn throughput(
    ctx: &mut Ctx,
    stack: &Stack,
    receiver: &Receiver,
    bot: &str,
    mode: Mode,
    events: usize,
) -> Throughput {
    let (tag, drain, post_cap) = (ctx.tag(), ctx.drain, ctx.plan.post_cap);
    let (chunk, posters) = match mode {
        Mode::Batch { size, posters } => (size, posters),
        Mode::Single { posters } => (1, posters),
    };
    let tracker = receiver.track(&tag, events);
    let posted = Posted::new(&tag, bot, events);
    let postponed_before = postponed_count(stack, "").await;
    let detail = redis_detail(stack);
    let before = stack.cpu_mark();
    load::closed_loop(&stack.target, &posted, events, chunk, posters, post_cap).await;
    let accepted = posted.accepted.load(Relaxed);
    let complete = load::drain(&tracker, accepted, drain.stall, drain.cap).await;
    let after = stack.cpu_mark();
    let postponed = postponed_count(stack, "").await - postponed_before;
    let first = posted.first_ns.load(Relaxed);
    let wall = tracker.last_arrival().saturating_sub(first) as f64 / 1e9;
    let ingest = posted.last_answer_ns.load(Relaxed).saturating_sub(first) as f64 / 1e9;
    let received = tracker.distinct.load(Relaxed);
    print_redis_detail(stack, &tag, detail, received);
    let requests = posted.requests.load(Relaxed);
    let latencies = posted.latencies(&tracker);
    let answers = sorted(posted.answer_ms.lock().expect("lock").clone());
    Throughput {
        posted: posted.posted.load(Relaxed),
        accepted,
        requests,
        received,
        duplicates: tracker.duplicates.load(Relaxed),
        complete,
        postponed,
        cpu: procs::cpu_use(&before, &after, stack.redis.is_some(), drain.hz),
        errors: posted.error_summary(),
        ingest_secs: ingest,
        wall_secs: wall,
        deliveries_per_s: received as f64 / wall.max(1e-9),
        ingest_requests_per_s: requests as f64 / ingest.max(1e-9),
        ingest_events_per_s: accepted as f64 / ingest.max(1e-9),
        latency_p50: pct(&latencies, 50.0),
        latency_p99: pct(&latencies, 99.0),
        answer_p50: pct(&answers, 50.0),
        answer_p99: pct(&answers, 99.0),
    }
}

/// With `PIPELINE_REDIS_DETAIL=1` and a Redis in the stack, its
/// per-command counters at the start of a measured window.
fn redis_detail(stack: &Stack) -> Option<Vec<(String, u64, u64)>> {
    std::env::var_os("PIPELINE_REDIS_DETAIL")?;
    procs::redis_command_table(stack.redis.as_ref()?.port)
}

/// Prints what each Redis command cost per delivery since `before`
/// (`redis_detail`), if that was taken.
fn print_redis_detail(
    stack: &Stack,
    tag: &str,
    before: Option<Vec<(String, u64, u64)>>,
    deliveries: u64,
) {
    let (Some(before), Some(redis)) = (before, stack.redis.as_ref()) else {
        return;
    };
    if let Some(after) = procs::redis_command_table(redis.port) {
        procs::print_command_costs(tag, &before, &after, deliveries);
    }
}

/// An open-loop latency run.
#[derive(Debug, Clone, Default)]
struct Latency {
    sent: u64,
    accepted: u64,
    received: u64,
    duplicates: u64,
    complete: bool,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    answer_p50: f64,
    answer_p99: f64,
    lag_p99: f64,
    /// Deliveries of `bot` put back without an attempt during the run.
    postponed: f64,
    cpu: CpuUse,
    /// Wall time of the measured window (load and drain), seconds.
    wall_secs: f64,
    /// Redis commands during the window, when the stack has a Redis.
    redis_calls: Option<procs::RedisCalls>,
    errors: String,
}

impl Latency {
    /// CPU of the dispatcher and its redis-server per delivered event, µs.
    fn cpu_per_delivery_us(&self) -> f64 {
        let percent = self.cpu.dispatcher + self.cpu.redis.unwrap_or(0.0);
        percent / 100.0 * self.wall_secs / self.received.max(1) as f64 * 1e6
    }

    /// Script calls / all commands per delivered event, "–" without Redis.
    fn redis_per_delivery(&self) -> String {
        self.redis_calls.map_or("–".into(), |c| {
            let per = |n: u64| n as f64 / self.received.max(1) as f64;
            format!("{:.2} / {:.1}", per(c.scripts), per(c.all))
        })
    }
}

/// An open-loop run of `bot` on `stack` at `rate` for `seconds`; `ctx`
/// gives it its tag and the drain limits.
async fn latency(
    ctx: &mut Ctx,
    stack: &Stack,
    receiver: &Receiver,
    bot: &str,
    rate: f64,
    seconds: f64,
) -> Latency {
    let (tag, drain) = (ctx.tag(), ctx.drain);
    let events = (rate * seconds).round() as usize;
    let tracker = receiver.track(&tag, events);
    let posted = Posted::new(&tag, bot, events);
    let bot_label = format!("bot=\"{bot}\"");
    let postponed_before = postponed_count(stack, &bot_label).await;
    let redis_port = stack.redis.as_ref().map(|r| r.port);
    let calls_before = redis_port.and_then(procs::redis_calls);
    let detail = redis_detail(stack);
    let before = stack.cpu_mark();
    load::open_loop(&stack.target, &posted, rate, seconds).await;
    let accepted = posted.accepted.load(Relaxed);
    let complete = load::drain(&tracker, accepted, drain.stall, drain.cap).await;
    let after = stack.cpu_mark();
    let calls_after = redis_port.and_then(procs::redis_calls);
    print_redis_detail(stack, &tag, detail, tracker.distinct.load(Relaxed));
    let postponed = postponed_count(stack, &bot_label).await - postponed_before;
    let l = posted.latencies(&tracker);
    let answers = sorted(posted.answer_ms.lock().expect("lock").clone());
    let lags = sorted(posted.lag_ms.lock().expect("lock").clone());
    Latency {
        sent: posted.posted.load(Relaxed),
        accepted,
        received: tracker.distinct.load(Relaxed),
        duplicates: tracker.duplicates.load(Relaxed),
        complete,
        postponed,
        cpu: procs::cpu_use(&before, &after, stack.redis.is_some(), drain.hz),
        wall_secs: after.at.duration_since(before.at).as_secs_f64(),
        redis_calls: calls_before
            .zip(calls_after)
            .map(|(a, b)| procs::RedisCalls {
                scripts: b.scripts.saturating_sub(a.scripts),
                all: b.all.saturating_sub(a.all),
            }),
        errors: posted.error_summary(),
        p50: pct(&l, 50.0),
        p90: pct(&l, 90.0),
        p99: pct(&l, 99.0),
        p999: pct(&l, 99.9),
        max: l.last().copied().unwrap_or(f64::NAN),
        answer_p50: pct(&answers, 50.0),
        answer_p99: pct(&answers, 99.0),
        lag_p99: pct(&lags, 99.0),
    }
}

// ---------------------------------------------------------------------------
// Formatting

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn int(x: f64) -> String {
    if x.is_nan() {
        return "–".into();
    }
    let s = format!("{:.0}", x.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn cpu(c: &CpuUse) -> String {
    let redis = c.redis.map_or("–".to_string(), |r| format!("{r:.0}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let other = (c.machine * cores - c.dispatcher - c.redis.unwrap_or(0.0) - c.harness).max(0.0);
    format!(
        "{:.0} / {redis} / {:.0} / {other:.0} ({:.0}%)",
        c.dispatcher, c.harness, c.machine
    )
}

/// The p50, p90 and p99 cells of a latency row (p50 and p99 in bold).
fn p50_p90_p99(r: &Latency) -> String {
    format!("**{}** | {} | **{}**", ms(r.p50), ms(r.p90), ms(r.p99))
}

/// The mark of a run that ended before every accepted event was delivered.
fn incomplete(complete: bool) -> &'static str {
    if complete { "" } else { " (incomplete)" }
}

/// A "sent / … / delivered" cell: counts, then the mark of an incomplete run.
fn delivered(counts: &[u64], complete: bool) -> String {
    let counts: Vec<String> = counts.iter().map(|&n| int(n as f64)).collect();
    format!("{}{}", counts.join(" / "), incomplete(complete))
}

fn median_by<T: Clone>(runs: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut v: Vec<&T> = runs.iter().collect();
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.get(v.len() / 2).map(|r| (*r).clone())
}

/// A markdown table being written. It knows its column count, so that a
/// "not run" row spans the cells the missing measurement would have filled.
struct Table {
    text: String,
    columns: usize,
}

impl Table {
    /// `intro` (heading and prose), then the header row `head` and its
    /// `|---|` line.
    fn new(intro: &str, head: &str) -> Self {
        let columns = head.matches('|').count() - 1;
        let text = format!("{intro}{head}\n{}|\n", "|---".repeat(columns));
        Table { text, columns }
    }

    /// The row of a measurement that could not be made: its first cells,
    /// then why (cut to 200 characters) across the remaining columns.
    fn not_run(&mut self, lead: &[&str], why: &str) {
        let why: String = why.chars().take(200).collect();
        let rest = "|".repeat(self.columns - lead.len());
        let _ = writeln!(self.text, "| {} | not run: {why} {rest}", lead.join(" | "));
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// Prints why a run failed (progress, on stderr) and passes the reason on.
fn failed(why: String) -> String {
    eprintln!("  failed: {why}");
    why
}

/// Runs one row's measurement `repeats` times, printing `<label> / run N`
/// before each. The first failure ends the row, but the runs before it still
/// count: `Err` (why) only when no run succeeded.
async fn repeat<T>(
    label: &str,
    repeats: usize,
    mut run: impl AsyncFnMut() -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut runs = Vec::new();
    let mut failure = String::new();
    for rep in 0..repeats {
        eprintln!("{label} / run {}", rep + 1);
        match run().await {
            Ok(r) => runs.push(r),
            Err(e) => {
                failure = failed(e);
                break;
            }
        }
    }
    (!runs.is_empty()).then_some(runs).ok_or(failure)
}

/// One row's runs (see [`repeat`]) and the median one by `key`, which the row
/// shows; when no run succeeded, `table` gets the "not run" row instead.
async fn median_row<T: Clone>(
    table: &mut Table,
    lead: &[&str],
    label: &str,
    repeats: usize,
    key: impl Fn(&T) -> f64,
    run: impl AsyncFnMut() -> Result<T, String>,
) -> Option<(T, Vec<T>)> {
    match repeat(label, repeats, run).await {
        Ok(runs) => Some((median_by(&runs, key)?, runs)),
        Err(why) => {
            table.not_run(lead, &why);
            None
        }
    }
}

impl Ctx {
    /// A note on a row whose requests were (partly) rejected.
    fn rejected(&mut self, row: String, errors: &str) {
        if !errors.is_empty() {
            self.notes
                .push(format!("{row}: rejected requests: {errors}"));
        }
    }

    /// A dispatcher with the small config (1 bot, 1 webhook) and its receiver.
    async fn small_stack(
        &mut self,
        backend: Backend,
        cap: Option<usize>,
        label: &str,
    ) -> Result<(Receiver, Stack), String> {
        let receiver = Receiver::start(Duration::ZERO).await;
        let bots = Bots::Small {
            receiver: receiver.url(),
        };
        let stack = self.stack(backend, &bots, cap, label).await?;
        Ok((receiver, stack))
    }

    /// A dispatcher for a scenario measured once; when it does not start,
    /// `table` gets the "not run" row (first cells `lead`) instead.
    async fn stack_or_not_run(
        &mut self,
        table: &mut Table,
        lead: &[&str],
        backend: Backend,
        bots: &Bots,
        label: &str,
    ) -> Option<Stack> {
        match self.stack(backend, bots, None, label).await {
            Ok(stack) => Some(stack),
            Err(e) => {
                table.not_run(lead, &failed(e));
                None
            }
        }
    }
}

#[derive(Clone)]
struct ThroughputRun {
    idle: Mem,
    after: Mem,
    /// What the store grew by, per delivery (Redis `used_memory`, or the
    /// embedded store's files).
    store_per_delivery: f64,
    result: Throughput,
}

/// One row of scenario 1: a backend, a posting mode, a per-endpoint cap.
#[derive(Debug, Clone, Copy)]
struct ThroughputCase {
    backend: Backend,
    mode: Mode,
    cap: Option<usize>,
    events: usize,
    repeats: usize,
}

impl ThroughputCase {
    /// Scenario 1's rows in table order: per backend, batches and one event
    /// per request, then both again with the diagnostic cap. The embedded
    /// store posts its share of the events and runs a capped row once.
    fn all(plan: &Plan) -> Vec<Self> {
        let mut cases = Vec::new();
        for &backend in &plan.backends {
            for cap in [None].into_iter().chain(plan.cap_variant.map(Some)) {
                let events = [plan.batch_events, plan.single_events];
                for (mode, events) in plan.modes().into_iter().zip(events) {
                    let once = backend == Backend::Embedded && cap.is_some();
                    cases.push(ThroughputCase {
                        backend,
                        mode,
                        cap,
                        events: plan.scaled(backend, events),
                        repeats: if once { 1 } else { plan.repeats },
                    });
                }
            }
        }
        cases
    }

    /// The row's `ingest` cell (and its progress and notes label).
    fn describe(&self) -> String {
        match self.cap {
            None => self.mode.describe(),
            Some(cap) => format!("{}; per-endpoint cap {cap}", self.mode.describe()),
        }
    }
}

/// Scenario 1: sustained deliveries/s, closed loop, 1 bot / 1 webhook.
async fn scenario_1(ctx: &mut Ctx) -> String {
    let mut table = Table::new(
        "### Scenario 1: sustained throughput (closed loop, 1 bot, 1 `wpp` webhook)\n\n",
        "| backend | ingest | events posted / accepted | delivered (dup) | ingest req/s | ingest events/s | wall s | **deliveries/s** | runs (deliveries/s) | e2e p50 / p99 ms | 202 p50 / p99 ms | postponed | CPU % disp / redis / harness / other (machine) | RSS idle → after (HWM) MiB | store B/delivery |",
    );
    for case in ThroughputCase::all(&ctx.plan) {
        let (backend, describe) = (case.backend.name(), case.describe());
        let Some((median, runs)) = median_row(
            &mut table,
            &[backend, &describe],
            &format!("scenario 1: {backend} / {describe}"),
            case.repeats,
            |r: &ThroughputRun| r.result.deliveries_per_s,
            async || throughput_fresh(ctx, case).await,
        )
        .await
        else {
            continue;
        };
        let all: Vec<String> = runs
            .iter()
            .map(|r| int(r.result.deliveries_per_s))
            .collect();
        let r = &median.result;
        let _ = writeln!(
            table.text,
            "| {} | {} | {} / {} | {} ({}) | {} | {} | {:.2} | **{}** | {} | {} / {} | {} / {} | {} | {} | {} → {} ({}) | {} |",
            backend,
            describe,
            int(r.posted as f64),
            int(r.accepted as f64),
            delivered(&[r.received], r.complete),
            r.duplicates,
            int(r.ingest_requests_per_s),
            int(r.ingest_events_per_s),
            r.wall_secs,
            int(r.deliveries_per_s),
            all.join(", "),
            ms(r.latency_p50),
            ms(r.latency_p99),
            ms(r.answer_p50),
            ms(r.answer_p99),
            int(r.postponed),
            cpu(&r.cpu),
            mib(median.idle.rss_kb),
            mib(median.after.rss_kb),
            mib(median.after.hwm_kb),
            int(median.store_per_delivery),
        );
        ctx.rejected(format!("scenario 1 {backend} {describe}"), &r.errors);
    }
    table.text
}

/// A fresh dispatcher with the small config, one throughput run.
async fn throughput_fresh(ctx: &mut Ctx, case: ThroughputCase) -> Result<ThroughputRun, String> {
    let (receiver, stack) = ctx.small_stack(case.backend, case.cap, "s1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = stack.mem();
    let store_before = stack.store_bytes();
    let bot = procs::SMALL_BOT;
    let result = throughput(ctx, &stack, &receiver, bot, case.mode, case.events).await;
    let after = stack.mem();
    let store_per_delivery =
        stack.store_bytes().saturating_sub(store_before) as f64 / result.received.max(1) as f64;
    ctx.stop(stack);
    let r = &result;
    eprintln!(
        "  {} of {} delivered in {:.2} s: {:.0} deliveries/s; {} requests in {:.2} s: {:.0} req/s; e2e p50 {:.1} ms p99 {:.1} ms {}",
        r.received,
        r.accepted,
        r.wall_secs,
        r.deliveries_per_s,
        r.requests,
        r.ingest_secs,
        r.ingest_requests_per_s,
        r.latency_p50,
        r.latency_p99,
        r.errors
    );
    eprintln!("  store: {store_per_delivery:.0} bytes per delivery");
    Ok(ThroughputRun {
        idle,
        after,
        store_per_delivery,
        result,
    })
}

/// One row of scenario 2: a backend at one rate.
#[derive(Debug, Clone, Copy)]
struct LatencyCase {
    backend: Backend,
    rate: f64,
    repeats: usize,
}

impl LatencyCase {
    /// Scenario 2's rows in table order. The embedded store cannot keep up
    /// with the target rate here: one run shows that; more runs go to a rate
    /// it sustains.
    fn all(plan: &Plan) -> Vec<Self> {
        let case = |backend, rate, repeats| LatencyCase {
            backend,
            rate,
            repeats,
        };
        let mut cases = Vec::new();
        if let Some(rates) = &plan.cost_rates {
            for &backend in &plan.backends {
                cases.extend(
                    rates
                        .iter()
                        .map(|&r| case(backend, r, plan.latency_repeats)),
                );
            }
            return cases;
        }
        for &backend in &plan.backends {
            match backend {
                Backend::Redis => cases.push(case(backend, plan.rate, plan.latency_repeats)),
                Backend::Embedded => cases.extend([
                    case(backend, plan.rate, 1),
                    case(backend, plan.embedded_latency_rate, plan.latency_repeats),
                ]),
            }
        }
        cases
    }
}

/// Scenario 2: ingest-to-receipt latency at a fixed rate, open loop.
async fn scenario_2(ctx: &mut Ctx) -> String {
    let mut table = Table::new(
        &format!(
            "### Scenario 2: ingest-to-receipt latency at a fixed rate (open loop, 1 event/request, {} s after a 1 s warm-up)\n\n",
            ctx.plan.latency_seconds
        ),
        "| backend | rate events/s | sent / accepted / delivered | **p50 ms** | p90 ms | **p99 ms** | p99.9 ms | max ms | runs (p99 ms) | 202 p50 / p99 ms | pacing lag p99 ms | postponed | CPU % disp / redis / harness / other (machine) | **CPU µs / delivery** (disp + redis) | runs (CPU µs) | Redis scripts / all commands per delivery |",
    );
    for case in LatencyCase::all(&ctx.plan) {
        let (backend, rate) = (case.backend.name(), case.rate);
        let Some((r, runs)) = median_row(
            &mut table,
            &[backend, &int(rate)],
            &format!("scenario 2: {backend} at {rate}/s"),
            case.repeats,
            |r: &Latency| r.p99,
            async || latency_fresh(ctx, case).await,
        )
        .await
        else {
            continue;
        };
        let all: Vec<String> = runs.iter().map(|r| ms(r.p99)).collect();
        let all_cpu: Vec<String> = runs.iter().map(|r| int(r.cpu_per_delivery_us())).collect();
        let _ = writeln!(
            table.text,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | **{}** | {} | {} |",
            backend,
            int(rate),
            delivered(&[r.sent, r.accepted, r.received], r.complete),
            p50_p90_p99(&r),
            ms(r.p999),
            ms(r.max),
            all.join(", "),
            ms(r.answer_p50),
            ms(r.answer_p99),
            ms(r.lag_p99),
            int(r.postponed),
            cpu(&r.cpu),
            int(r.cpu_per_delivery_us()),
            all_cpu.join(", "),
            r.redis_per_delivery(),
        );
        ctx.rejected(format!("scenario 2 {backend} at {rate}/s"), &r.errors);
    }
    table.text
}

/// A fresh dispatcher with the small config, one latency run.
async fn latency_fresh(ctx: &mut Ctx, case: LatencyCase) -> Result<Latency, String> {
    let (receiver, stack) = ctx.small_stack(case.backend, None, "s2").await?;
    let (bot, rate, seconds) = (procs::SMALL_BOT, case.rate, ctx.plan.latency_seconds);
    // Warm-up: one second at the same rate (connections, plugin instances).
    let _ = latency(ctx, &stack, &receiver, bot, rate, 1.0).await;
    let r = latency(ctx, &stack, &receiver, bot, rate, seconds).await;
    ctx.stop(stack);
    eprintln!(
        "  {} of {} delivered ({} duplicates); p50 {:.2} ms p99 {:.2} ms max {:.1} ms; 202 p99 {:.2} ms {}",
        r.received, r.accepted, r.duplicates, r.p50, r.p99, r.max, r.answer_p99, r.errors
    );
    Ok(r)
}

/// Scenario 3: RSS with the small config and with 1,000 bots × 4 webhooks.
async fn scenario_3(ctx: &mut Ctx) -> String {
    let plan = ctx.plan.clone();
    let mut table = Table::new(
        &format!(
            "### Scenario 3: dispatcher memory (VmRSS / VmHWM, MiB)\n\n\
             Each row: a fresh dispatcher; idle 2 s after `/readyz`; then a batch run ({} events, batches of {}, {} posters) and a \
             one-event-per-request run ({} events, {} posters) on the loaded bot, back to back (the embedded store: {}% of those events).\n\n",
            int(plan.rss_batch_events as f64),
            plan.batch_size,
            plan.batch_posters,
            int(plan.rss_single_events as f64),
            plan.single_posters,
            (plan.embedded_scale * 100.0).round()
        ),
        "| backend | config | webhooks | idle RSS / HWM | after batch run RSS / HWM | after 1/request run RSS / HWM | batch deliveries/s | 1/request deliveries/s |",
    );
    for backend in plan.backends.clone() {
        for large in [false, true] {
            let receiver = Receiver::start(Duration::ZERO).await;
            let (bots, bot, name) = if large {
                (
                    Bots::Large {
                        receiver: receiver.url(),
                        count: plan.large_bots,
                    },
                    procs::LARGE_BOT,
                    format!("{} bots × 4", int(plan.large_bots as f64)),
                )
            } else {
                (
                    Bots::Small {
                        receiver: receiver.url(),
                    },
                    procs::SMALL_BOT,
                    "1 bot × 1".to_string(),
                )
            };
            eprintln!("scenario 3: {} / {name}", backend.name());
            let lead = [backend.name(), &name, &bots.webhooks().to_string()];
            let Some(stack) = ctx
                .stack_or_not_run(&mut table, &lead, backend, &bots, "s3")
                .await
            else {
                continue;
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            let idle = stack.mem();
            // The batch run, then the one-event-per-request run, back to back.
            let mut run = async |mode: Mode, events: usize| {
                let events = plan.scaled(backend, events);
                let result = throughput(ctx, &stack, &receiver, bot, mode, events).await;
                (result, stack.mem())
            };
            let [batch_mode, single_mode] = plan.modes();
            let (batch, after_batch) = run(batch_mode, plan.rss_batch_events).await;
            let (single, after_single) = run(single_mode, plan.rss_single_events).await;
            eprintln!(
                "  idle {} MiB; after batch {} / {} MiB ({:.0}/s); after single {} / {} MiB ({:.0}/s)",
                mib(idle.rss_kb),
                mib(after_batch.rss_kb),
                mib(after_batch.hwm_kb),
                batch.deliveries_per_s,
                mib(after_single.rss_kb),
                mib(after_single.hwm_kb),
                single.deliveries_per_s
            );
            let _ = writeln!(
                table.text,
                "| {} | {name} | {} | {} / {} | {} / {} | {} / {} | {}{} | {}{} |",
                backend.name(),
                int(bots.webhooks() as f64),
                mib(idle.rss_kb),
                mib(idle.hwm_kb),
                mib(after_batch.rss_kb),
                mib(after_batch.hwm_kb),
                mib(after_single.rss_kb),
                mib(after_single.hwm_kb),
                int(batch.deliveries_per_s),
                incomplete(batch.complete),
                int(single.deliveries_per_s),
                incomplete(single.complete),
            );
            ctx.stop(stack);
        }
    }
    table.text
}

/// Scenario 4: bot A's endpoint hangs; bot B's latency with and without A's load.
async fn scenario_4(ctx: &mut Ctx) -> String {
    let plan = ctx.plan.clone();
    let mut table = Table::new(
        &format!(
            "### Scenario 4: fairness, one hanging endpoint (delivery timeout 2 s; A's receiver answers after 10 s)\n\n\
             Open loop, 1 event/request, {} s per phase after a 1 s warm-up; A and B at the same rate.\n\n",
            plan.fair_seconds
        ),
        "| backend | rate (A, B each) | phase | B sent / delivered | **B p50 ms** | B p90 ms | **B p99 ms** | B max ms | B postponed | A posted | A requests at A's receiver | A postponed | CPU % disp / redis / harness / other (machine) |",
    );
    let seconds = plan.fair_seconds;
    for backend in plan.backends.clone() {
        let (rate_a, rate_b) = match backend {
            Backend::Redis => (plan.fair_rate_a, plan.fair_rate_b),
            Backend::Embedded => (plan.fair_rate_embedded, plan.fair_rate_embedded),
        };
        eprintln!("scenario 4: {} at {rate_b}/s", backend.name());
        let receiver_b = Receiver::start(Duration::ZERO).await;
        let receiver_a = Receiver::start(Duration::from_secs(10)).await;
        let bots = Bots::Pair {
            a: receiver_a.url(),
            b: receiver_b.url(),
        };
        let lead = [backend.name(), &int(rate_b)];
        let Some(stack) = ctx
            .stack_or_not_run(&mut table, &lead, backend, &bots, "s4")
            .await
        else {
            continue;
        };
        let _ = latency(ctx, &stack, &receiver_b, "bot-b", rate_b, 1.0).await; // warm-up
        let alone = latency(ctx, &stack, &receiver_b, "bot-b", rate_b, seconds).await;
        eprintln!("  B alone: p50 {:.2} ms p99 {:.2} ms", alone.p50, alone.p99);

        let tag_a = ctx.tag();
        let posted_a = Posted::new(&tag_a, "bot-a", (rate_a * seconds).round() as usize);
        let a_requests_before = receiver_a.requests();
        let load_a = load::open_loop(&stack.target, &posted_a, rate_a, seconds);
        let measure_b = latency(ctx, &stack, &receiver_b, "bot-b", rate_b, seconds);
        let ((), with_a) = tokio::join!(load_a, measure_b);
        let a_requests = receiver_a.requests() - a_requests_before;
        if let Some(text) = metrics_text(&stack).await {
            for line in text.lines().filter(|l| {
                l.starts_with("statushook_deliveries_postponed")
                    || l.starts_with("statushook_deliveries_failed")
                    || (l.starts_with("statushook_attempt_seconds_bucket") && l.contains("bot-b"))
            }) {
                eprintln!("    {line}");
            }
        }
        let a_postponed = postponed_count(&stack, "bot=\"bot-a\"").await;
        eprintln!(
            "  B with A hanging: p50 {:.2} ms p99 {:.2} ms; A posted {}, {} requests reached A, {} postponed",
            with_a.p50,
            with_a.p99,
            posted_a.accepted.load(Relaxed),
            a_requests,
            a_postponed
        );
        for (phase, r, a) in [
            ("B alone", &alone, None),
            (
                "B with A hanging",
                &with_a,
                Some((posted_a.accepted.load(Relaxed), a_requests, a_postponed)),
            ),
        ] {
            let (a_posted, a_req, a_post) = a.map_or(
                ("–".to_string(), "–".to_string(), "–".to_string()),
                |(p, q, s)| (int(p as f64), int(q as f64), int(s)),
            );
            let _ = writeln!(
                table.text,
                "| {} | {} | {phase} | {} | {} | {} | {} | {a_posted} | {a_req} | {a_post} | {} |",
                backend.name(),
                int(rate_b),
                delivered(&[r.sent, r.received], r.complete),
                p50_p90_p99(r),
                ms(r.max),
                int(r.postponed),
                cpu(&r.cpu),
            );
        }
        let _ = writeln!(
            table.text,
            "| {} | {} | **ratio with / without A** | | **{:.2}×** | {:.2}× | **{:.2}×** | {:.2}× | | | | | |",
            backend.name(),
            int(rate_b),
            with_a.p50 / alone.p50,
            with_a.p90 / alone.p90,
            with_a.p99 / alone.p99,
            with_a.max / alone.max
        );
        ctx.stop(stack);
    }
    table.text
}

// ---------------------------------------------------------------------------

fn machine() -> String {
    let lscpu = std::process::Command::new("lscpu")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let model = lscpu
        .lines()
        .find_map(|l| l.strip_prefix("Model name:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "not installed".into());
    format!(
        "{model}, {cpus} CPUs, {:.1} GiB RAM, Linux {}, {redis}",
        mem_kb as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The shared state of a run, from the environment.
fn setup() -> Result<Ctx, String> {
    let plan = Plan::from_env()?;
    let bin = procs::dispatcher_binary()?;
    let work = tempfile::Builder::new()
        .prefix("statushook-pipeline-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let cache = work.path().join("plugin-cache");
    let hz = procs::clock_ticks_per_second();
    Ok(Ctx {
        plan,
        bin,
        work,
        cache,
        client: load::client(),
        drain: Drain {
            stall: Duration::from_secs(20),
            cap: Duration::from_secs(120),
            hz,
        },
        embedded_unavailable: None,
        runs: 0,
        log_issues: BTreeMap::new(),
        notes: Vec::new(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut ctx = match setup() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("pipeline bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = ctx.plan.clone();
    let started = Instant::now();
    let _ = load::now_ns();
    println!("## Delivery pipeline ({} run)\n", plan.name);
    println!("Machine: {}", machine());
    println!("Dispatcher: {}", ctx.bin.display());
    println!(
        "Config: delivery timeout 2 s, retry schedule 200ms/500ms/1s, max_in_flight_per_endpoint {}; plugin cache warm; CPU columns are % of one core over the run (dispatcher / redis-server / this bench process (load generator + receiver) / everything else, i.e. kernel threads and other processes), then the machine's busy share of all its cores.\n",
        plan.per_endpoint
            .map_or("default".to_string(), |n| n.to_string())
    );
    // Compile the four built-in plugins into the cache once, so every
    // measured dispatcher starts the same way (from the cache).
    {
        eprintln!("warming the plugin cache");
        let receiver = Receiver::start(Duration::ZERO).await;
        let backend = plan.backends.first().copied().unwrap_or(Backend::Redis);
        match ctx
            .stack(
                backend,
                &Bots::Large {
                    receiver: receiver.url(),
                    count: 1,
                },
                None,
                "warm-up",
            )
            .await
        {
            Ok(stack) => ctx.stop(stack),
            Err(e) => eprintln!("  warm-up failed: {e}"),
        }
    }
    for scenario in plan.scenarios.clone() {
        let table = match scenario {
            1 => scenario_1(&mut ctx).await,
            2 => scenario_2(&mut ctx).await,
            3 => scenario_3(&mut ctx).await,
            4 => scenario_4(&mut ctx).await,
            other => {
                eprintln!("pipeline bench: no scenario {other}");
                continue;
            }
        };
        println!("{table}");
    }
    if !ctx.notes.is_empty() {
        println!("Notes:\n");
        for note in &ctx.notes {
            println!("- {note}");
        }
        println!();
    }
    if ctx.log_issues.is_empty() {
        println!("Dispatcher stderr: no WARN/ERROR lines.\n");
    } else {
        println!("Dispatcher stderr (WARN/ERROR lines, by scenario, count × text):\n");
        for (line, count) in &ctx.log_issues {
            println!("- {count} × `{line}`");
        }
        println!();
    }
    println!("Total bench time: {:.0} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
