//! The processes under test and the chaos driver: two dispatchers sharing a
//! Redis and one config file, four receivers, and three loops that kill and
//! restart dispatchers or Redis, flap receivers, and reload the config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::{self, LISTEN_ENV, Variant};
use super::procs::{Dispatcher, RedisServer};
use super::receivers::{Mode, Receiver};

/// `--appendfsync always`: the driver also kills Redis with SIGKILL, and
/// with `everysec` an acknowledged write can still sit in Redis's own
/// buffer (up to about 2 s when a background fsync is slow), so a kill
/// could lose events Redis had acknowledged: a loss the README documents as
/// Redis's trade-off, which would hide the dispatcher's. With `always` the
/// AOF is written and fsynced before any reply, so any loss is the
/// dispatcher's.
pub const APPENDFSYNC: &str = "always";

/// What the chaos driver did.
#[derive(Default)]
pub struct Counts {
    pub dispatcher_kills: AtomicU64,
    pub dispatcher_starts: AtomicU64,
    /// Starts that failed and were tried again.
    pub start_failures: Mutex<Vec<String>>,
    pub redis_kills: AtomicU64,
    pub redis_shutdowns: AtomicU64,
    pub flaps: Mutex<BTreeMap<&'static str, u64>>,
    pub reloads_written: AtomicU64,
    /// Reloads a running dispatcher counted as applied
    /// (`statushook_config_reloads_total{reason="ok"}` went up).
    pub reloads_applied: AtomicU64,
    /// Reloads a dispatcher counted as `error` or `ignored` (should be 0).
    pub reloads_not_applied: AtomicU64,
    /// A written reload one live dispatcher did not count within 10 s.
    pub reloads_unseen: AtomicU64,
    /// Seconds with both dispatchers down (at most one is ever killed; a
    /// restart that fails could make this more than 0).
    pub both_down_ms: AtomicU64,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub work: PathBuf,
    pub cache: PathBuf,
    pub config: PathBuf,
    pub client: reqwest::Client,
    pub ports: [u16; 2],
    slots: Mutex<[Option<Dispatcher>; 2]>,
    starts: [AtomicU64; 2],
    redis: Mutex<Option<RedisServer>>,
    pub redis_port: u16,
    redis_dir: PathBuf,
    pub receivers: Vec<Receiver>,
    variant: Mutex<Variant>,
    pub counts: Counts,
}

impl Cluster {
    pub async fn start(
        bin: PathBuf,
        work: PathBuf,
        client: reqwest::Client,
        receivers: Vec<Receiver>,
    ) -> Result<Arc<Self>, String> {
        let redis_dir = work.join("redis");
        let redis_port = super::procs::free_port();
        let redis = RedisServer::start_on(&redis_dir, redis_port, APPENDFSYNC)?;
        let cache = work.join("cache");
        let config = work.join("config").join("config.toml");
        std::fs::create_dir_all(config.parent().ok_or("config folder")?)
            .map_err(|e| format!("config folder: {e}"))?;
        let cluster = Arc::new(Cluster {
            bin,
            cache,
            config,
            client,
            ports: [super::procs::free_port(), super::procs::free_port()],
            slots: Mutex::new([None, None]),
            starts: [AtomicU64::new(0), AtomicU64::new(0)],
            redis: Mutex::new(Some(redis)),
            redis_port,
            redis_dir,
            receivers,
            variant: Mutex::new(Variant::FIRST),
            counts: Counts::default(),
            work,
        });
        let text = cluster.config_text(Variant::FIRST);
        layout::validate(&text, &cluster.config)?;
        layout::write_atomically(&cluster.config, &text)?;
        for slot in 0..2 {
            cluster.start_dispatcher(slot).await?;
        }
        Ok(cluster)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    fn config_text(&self, variant: Variant) -> String {
        let urls: Vec<String> = self.receivers.iter().map(Receiver::url).collect();
        layout::config_text(&self.redis_url(), &urls, &self.cache, variant)
    }

    pub fn variant(&self) -> Variant {
        *self.variant.lock().expect("variant lock")
    }

    /// Whether slot `slot` has a running dispatcher.
    pub fn up(&self, slot: usize) -> bool {
        self.slots.lock().expect("slots lock")[slot].is_some()
    }

    /// The dispatchers' log files.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.work)
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }

    /// Starts the dispatcher of `slot` (tried up to five times).
    async fn start_dispatcher(&self, slot: usize) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..5 {
            let k = self.starts[slot].fetch_add(1, Relaxed);
            let log = self.work.join(format!("dispatcher-{slot}-{k:03}.log"));
            let port = self.ports[slot];
            let started = Dispatcher::start_with_env(
                &self.bin,
                &self.config,
                port,
                &self.cache,
                log,
                &self.client,
                &[(LISTEN_ENV, format!("127.0.0.1:{port}"))],
            )
            .await;
            match started {
                Ok(dispatcher) => {
                    self.counts.dispatcher_starts.fetch_add(1, Relaxed);
                    self.slots.lock().expect("slots lock")[slot] = Some(dispatcher);
                    return Ok(());
                }
                Err(e) => {
                    last = e.clone();
                    self.counts
                        .start_failures
                        .lock()
                        .expect("counts lock")
                        .push(format!("dispatcher {slot}: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(format!("dispatcher {slot} did not start: {last}"))
    }

    /// kill -9 one dispatcher, leave it dead for `down`, start it again.
    pub async fn kill_dispatcher(&self, slot: usize, down: Duration) -> Result<(), String> {
        let other_up = self.up(1 - slot);
        let killed = self.slots.lock().expect("slots lock")[slot].take();
        if let Some(dispatcher) = killed {
            // Dropping it is SIGKILL and a wait.
            drop(dispatcher);
            self.counts.dispatcher_kills.fetch_add(1, Relaxed);
        }
        let started = Instant::now();
        tokio::time::sleep(down).await;
        let result = self.start_dispatcher(slot).await;
        if !other_up {
            self.counts
                .both_down_ms
                .fetch_add(started.elapsed().as_millis() as u64, Relaxed);
        }
        result
    }

    /// Stops Redis (SIGKILL, or `SHUTDOWN NOSAVE`), leaves it down for
    /// `down`, starts it again on the same port and folder (the AOF
    /// replays).
    pub async fn restart_redis(&self, kill: bool, down: Duration) -> Result<(), String> {
        let old = self.redis.lock().expect("redis lock").take();
        if let Some(mut redis) = old {
            if kill {
                drop(redis);
                self.counts.redis_kills.fetch_add(1, Relaxed);
            } else {
                tokio::task::spawn_blocking(move || {
                    redis.shutdown_nosave(Duration::from_secs(10));
                })
                .await
                .map_err(|e| format!("redis shutdown: {e}"))?;
                self.counts.redis_shutdowns.fetch_add(1, Relaxed);
            }
        }
        tokio::time::sleep(down).await;
        let (dir, port) = (self.redis_dir.clone(), self.redis_port);
        let redis =
            tokio::task::spawn_blocking(move || RedisServer::start_on(&dir, port, APPENDFSYNC))
                .await
                .map_err(|e| format!("redis start: {e}"))??;
        *self.redis.lock().expect("redis lock") = Some(redis);
        Ok(())
    }

    /// A receiver misbehaves in `mode` for `length`, then answers 200 again.
    pub async fn flap(&self, receiver: usize, mode: Mode, length: Duration) {
        *self
            .counts
            .flaps
            .lock()
            .expect("counts lock")
            .entry(mode.name())
            .or_default() += 1;
        self.receivers[receiver].set_mode(mode);
        tokio::time::sleep(length).await;
        self.receivers[receiver].set_mode(Mode::Ok);
    }

    /// Rewrites the config with the next harmless variant and waits (up to
    /// 10 s) until every running dispatcher counted a reload.
    pub async fn reload(&self) -> Result<(), String> {
        let before: Vec<Option<(u64, u64)>> =
            futures_util::future::join_all((0..2).map(|slot| self.reload_counts(slot))).await;
        let next = self.variant().next();
        let text = self.config_text(next);
        layout::validate(&text, &self.config)?;
        layout::write_atomically(&self.config, &text)?;
        *self.variant.lock().expect("variant lock") = next;
        self.counts.reloads_written.fetch_add(1, Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<(usize, (u64, u64))> = before
            .into_iter()
            .enumerate()
            .filter_map(|(slot, b)| b.map(|b| (slot, b)))
            .collect();
        while !pending.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut still = Vec::new();
            for (slot, (ok, other)) in pending {
                match self.reload_counts(slot).await {
                    Some((ok2, other2)) if ok2 > ok || other2 > other => {
                        self.counts
                            .reloads_applied
                            .fetch_add(ok2.saturating_sub(ok), Relaxed);
                        self.counts
                            .reloads_not_applied
                            .fetch_add(other2.saturating_sub(other), Relaxed);
                    }
                    // Restarted meanwhile (its counters began again at 0):
                    // it read the new file at start.
                    Some((ok2, _)) if ok2 < ok => {}
                    None if !self.up(slot) => {}
                    _ => still.push((slot, (ok, other))),
                }
            }
            pending = still;
        }
        self.counts
            .reloads_unseen
            .fetch_add(pending.len() as u64, Relaxed);
        Ok(())
    }

    /// `(ok, error + ignored)` reloads of the main config a dispatcher has
    /// counted since it started.
    async fn reload_counts(&self, slot: usize) -> Option<(u64, u64)> {
        let text = self.metrics(slot).await?;
        let (mut ok, mut other) = (0, 0);
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("statushook_config_reloads_total{") else {
                continue;
            };
            let value: u64 = rest
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as u64);
            if rest.contains("reason=\"ok\"") {
                ok += value;
            } else {
                other += value;
            }
        }
        Some((ok, other))
    }

    pub async fn metrics(&self, slot: usize) -> Option<String> {
        let response = self
            .client
            .get(format!("http://127.0.0.1:{}/metrics", self.ports[slot]))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// `statushook_queue_pending` as a running dispatcher reads it from Redis.
    pub async fn queue_pending(&self) -> Option<u64> {
        for slot in 0..2 {
            if let Some(text) = self.metrics(slot).await
                && let Some(v) = text.lines().find_map(|l| {
                    l.strip_prefix("statushook_queue_pending ")
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
            {
                return Some(v as u64);
            }
        }
        None
    }

    /// Everything well again: receivers answer 200, Redis and both
    /// dispatchers run.
    pub async fn heal(&self) -> Result<(), String> {
        for receiver in &self.receivers {
            receiver.set_mode(Mode::Ok);
        }
        let redis_down = self.redis.lock().expect("redis lock").is_none();
        if redis_down {
            self.restart_redis(true, Duration::ZERO).await?;
        }
        for slot in 0..2 {
            let exited = {
                let mut slots = self.slots.lock().expect("slots lock");
                match slots[slot].as_mut().map(Dispatcher::exited) {
                    Some(Some(status)) => {
                        slots[slot] = None;
                        Some(status.to_string())
                    }
                    Some(None) => None,
                    None => Some("not running".to_string()),
                }
            };
            if let Some(why) = exited {
                eprintln!("  heal: dispatcher {slot} {why}; starting it");
                self.start_dispatcher(slot).await?;
            }
        }
        Ok(())
    }

    /// Dispatchers that exited by themselves (not killed by the driver).
    pub fn exited(&self) -> Vec<String> {
        let mut slots = self.slots.lock().expect("slots lock");
        let mut out = Vec::new();
        for (slot, dispatcher) in slots.iter_mut().enumerate() {
            if let Some(status) = dispatcher.as_mut().and_then(Dispatcher::exited) {
                out.push(format!("dispatcher {slot} exited on its own: {status}"));
            }
        }
        out
    }

    /// Stops everything this cluster started.
    pub fn stop(&self) {
        let dispatchers = std::mem::take(&mut *self.slots.lock().expect("slots lock"));
        drop(dispatchers);
        let redis = self.redis.lock().expect("redis lock").take();
        drop(redis);
    }
}

/// How often the chaos loops act (seconds, uniform between the two).
pub struct Pace {
    pub process: (f64, f64),
    pub flap: (f64, f64),
    pub reload: (f64, f64),
}

fn between((lo, hi): (f64, f64)) -> Duration {
    Duration::from_secs_f64(lo + fastrand::f64() * (hi - lo))
}

/// Sleeps `d`, or less if `stop` is set meanwhile; false when stopped.
async fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50).min(end - Instant::now())).await;
    }
    !stop.load(Relaxed)
}

/// Runs the three chaos loops until `stop`; returns the errors they met.
pub async fn drive(cluster: Arc<Cluster>, pace: Pace, stop: Arc<AtomicBool>) -> Vec<String> {
    let Pace {
        process,
        flap,
        reload,
    } = pace;
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut loops = tokio::task::JoinSet::new();

    // Processes: kill -9 a dispatcher, or restart Redis, one at a time. The
    // first two are one of each, so even a short run has both.
    let (c, s, e) = (Arc::clone(&cluster), Arc::clone(&stop), Arc::clone(&errors));
    loops.spawn(async move {
        let mut round = 0u64;
        while nap(between(process), &s).await {
            let redis = round == 1 || (round > 1 && fastrand::f64() < 0.3);
            round += 1;
            let result = if redis {
                let kill = fastrand::bool();
                let down = Duration::from_millis(fastrand::u64(500..=3000));
                eprintln!(
                    "  chaos: Redis {} for {:.1} s",
                    if kill { "SIGKILL" } else { "SHUTDOWN NOSAVE" },
                    down.as_secs_f64()
                );
                c.restart_redis(kill, down).await
            } else {
                let slot = fastrand::usize(..2);
                let down = Duration::from_millis(fastrand::u64(500..=5000));
                eprintln!(
                    "  chaos: kill -9 dispatcher {slot}, down {:.1} s",
                    down.as_secs_f64()
                );
                c.kill_dispatcher(slot, down).await
            };
            if let Err(error) = result {
                eprintln!("  chaos: {error}");
                e.lock().expect("errors lock").push(error);
            }
        }
    });

    // Receivers: one at a time per receiver, 2-10 s of misbehaving.
    let (c, s) = (Arc::clone(&cluster), Arc::clone(&stop));
    loops.spawn(async move {
        let mut flaps = tokio::task::JoinSet::new();
        let mut round = 0usize;
        while nap(between(flap), &s).await {
            let calm: Vec<usize> = (0..c.receivers.len())
                .filter(|&r| c.receivers[r].mode() == Mode::Ok)
                .collect();
            let Some(&receiver) = calm.get(fastrand::usize(..calm.len().max(1))) else {
                continue;
            };
            // Every kind early on, then at random.
            let mode = if round < Mode::FLAPS.len() {
                Mode::FLAPS[round]
            } else {
                Mode::FLAPS[fastrand::usize(..Mode::FLAPS.len())]
            };
            round += 1;
            let length = Duration::from_millis(fastrand::u64(2000..=10_000));
            eprintln!(
                "  chaos: receiver {receiver} {} for {:.1} s",
                mode.name(),
                length.as_secs_f64()
            );
            let c = Arc::clone(&c);
            flaps.spawn(async move { c.flap(receiver, mode, length).await });
            while flaps.try_join_next().is_some() {}
        }
        while flaps.join_next().await.is_some() {}
    });

    // Reloads.
    let (c, s, e) = (Arc::clone(&cluster), Arc::clone(&stop), Arc::clone(&errors));
    loops.spawn(async move {
        while nap(between(reload), &s).await {
            eprintln!("  chaos: reload ({})", c.variant().next().describe());
            if let Err(error) = c.reload().await {
                e.lock().expect("errors lock").push(error);
            }
        }
    });

    while loops.join_next().await.is_some() {}
    errors.lock().expect("errors lock").clone()
}
