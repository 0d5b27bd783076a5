//! Chaos soak: two release `statushook run` dispatchers sharing a real
//! `redis-server` (AOF, `appendfsync always`) and one config of 100 bots,
//! steady load on both, and a chaos driver that kills dispatchers with
//! SIGKILL, restarts Redis (SIGKILL or `SHUTDOWN NOSAVE`), makes receivers
//! answer 500, 410, too late or slowly, and reloads the config. At the end
//! everything is healed, the queues drain, and a ledger checks that every
//! accepted event reached every webhook it matched or is a dead letter with
//! a reason, and that every repeat had the same `webhook-id` and bytes.
//!
//! ```text
//! cargo build --release --bin statushook && cargo bench --bench soak
//! SOAK_SECS=60 cargo bench --bench soak          # a quick run
//! ```
//!
//! Environment (all optional): `SOAK_SECS` (default 600), `SOAK_RATE`
//! (events/s, default 200), `SOAK_KEEP=1` (keep the work folder: config,
//! dispatcher logs, Redis AOF; it is always kept when the check fails),
//! `STATUSHOOK_BIN`, `PIPELINE_ALLOW_STALE_BIN=1` (as for the pipeline
//! bench).
//!
//! Exit status 1 when anything accepted was lost, a repeat was inconsistent
//! (another `webhook-id`, or other bytes under one), a delivery reached a
//! webhook it should not, or the soak could not run. BENCHMARKS.md ("Chaos
//! soak") describes the method and a 10-minute run.

// Without its `[[bench]] harness = false` entry in core/Cargo.toml, cargo
// would build this file under the test harness (which has its own `main`),
// leaving everything here unused: that must not fail a `-D warnings` build.
#![cfg_attr(test, allow(dead_code))]

#[path = "soak/chaos.rs"]
mod chaos;
#[path = "soak/layout.rs"]
mod layout;
#[path = "soak/ledger.rs"]
mod ledger;
#[path = "soak/load.rs"]
mod load;
#[allow(dead_code)] // the soak uses the process helpers, not the CPU readings
#[path = "pipeline/procs.rs"]
mod procs;
#[path = "soak/receivers.rs"]
mod receivers;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::{Cluster, Pace};
use ledger::{DeadLetters, Outcome};
use load::{Ledger, Poster};
use receivers::{Mode, Receiver, Shared};

/// The longest wait for the queues to drain after the chaos.
const DRAIN_CAP: Duration = Duration::from_secs(300);
/// The queue empty and no expected delivery settled for this long: stop
/// waiting (longer than a lease, 2 × 1.5 s + 10 s).
const STALL: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(soak()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| *x > 0.0)
            .ok_or_else(|| format!("{name}={v:?}: expected a positive number")),
        Err(_) => Ok(default),
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .expect("http client")
}

async fn soak() -> Result<bool, String> {
    let secs = env_number("SOAK_SECS", 600.0)?;
    let rate = env_number("SOAK_RATE", 200.0)?;
    layout::check_drop_table()?;
    let bin = procs::dispatcher_binary()?;
    let work = tempfile::Builder::new()
        .prefix("statushook-soak-")
        .tempdir()
        .map_err(|e| format!("work folder: {e}"))?;
    eprintln!(
        "soak: {secs} s at {rate} events/s; work folder {}",
        work.path().display()
    );

    let shared = Shared::new();
    let mut receivers = Vec::new();
    for _ in 0..layout::RECEIVERS {
        receivers.push(Receiver::start(Arc::clone(&shared)).await);
    }
    let client = client();
    let cluster = Cluster::start(bin, work.path().to_path_buf(), client.clone(), receivers).await?;
    eprintln!(
        "soak: Redis on {} (appendfsync {}), dispatchers on {} and {}",
        cluster.redis_port,
        chaos::APPENDFSYNC,
        cluster.ports[0],
        cluster.ports[1]
    );

    let ledger = Ledger::new();
    let poster = Poster {
        client: client.clone(),
        ports: cluster.ports,
        ledger: Arc::clone(&ledger),
        give_up: Arc::new(Mutex::new(Instant::now() + Duration::from_secs(86_400))),
    };
    let dead = Arc::new(tokio::sync::Mutex::new(DeadLetters::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let drained = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Dead letters, read every 15 s (a listing shows the newest 1000).
    let poller = {
        let (cluster, dead, drained) = (
            Arc::clone(&cluster),
            Arc::clone(&dead),
            Arc::clone(&drained),
        );
        tokio::spawn(async move {
            while !drained.load(Relaxed) {
                dead.lock().await.poll(&cluster).await;
                for _ in 0..150 {
                    if drained.load(Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    let load = tokio::spawn(load::run(poster.clone(), rate, Arc::clone(&stop)));
    let pace = Pace {
        process: ((secs / 8.0).min(15.0), (secs / 4.0).min(40.0)),
        flap: (4.0, 12.0),
        reload: ((secs / 10.0).min(10.0), (secs / 5.0).min(30.0)),
    };
    let driver = tokio::spawn(chaos::drive(Arc::clone(&cluster), pace, Arc::clone(&stop)));

    // The soak itself.
    let end = started + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_secs(30))).await;
        let events = ledger.snapshot();
        let accepted = events.iter().filter(|e| e.accepted()).count();
        let arrivals = shared.answers.requests.load(Relaxed);
        eprintln!(
            "soak: {:>4.0} s: {} events, {accepted} accepted; {arrivals} requests at the receivers; {} dead letters seen",
            started.elapsed().as_secs_f64(),
            events.len(),
            dead.lock().await.by_id.len()
        );
    }
    let soaked = started.elapsed();

    // Stop chaos and load; heal; let unanswered requests finish.
    stop.store(true, Relaxed);
    eprintln!("soak: stopping the chaos and the load");
    let chaos_errors = driver.await.map_err(|e| format!("chaos driver: {e}"))?;
    let mut requests = load.await.map_err(|e| format!("load: {e}"))?;
    cluster.heal().await?;
    *poster.give_up.lock().expect("give-up lock") = Instant::now() + Duration::from_secs(60);
    let finishing = Instant::now();
    while tokio::time::timeout(Duration::from_secs(90), requests.join_next())
        .await
        .is_ok_and(|r| r.is_some())
    {}
    eprintln!(
        "soak: unanswered requests settled in {:.1} s; draining",
        finishing.elapsed().as_secs_f64()
    );

    // Drain: every expected delivery received or dead, and nothing pending.
    let draining = Instant::now();
    let events = ledger.snapshot();
    let mut outcome;
    let (mut last, mut progress) = (usize::MAX, Instant::now());
    loop {
        let mut dead = dead.lock().await;
        dead.poll(&cluster).await;
        outcome = {
            let record = shared.record.lock().expect("record lock");
            ledger::check(&events, &record, &dead)
        };
        drop(dead);
        let pending = cluster.queue_pending().await;
        if outcome.outstanding() == 0 && pending == Some(0) {
            break;
        }
        if outcome.outstanding() != last {
            (last, progress) = (outcome.outstanding(), Instant::now());
        }
        if draining.elapsed() > DRAIN_CAP {
            eprintln!("soak: still not drained after {} s", DRAIN_CAP.as_secs());
            break;
        }
        // Nothing left in the queue and nothing arriving: what is missing
        // will not come.
        if pending == Some(0) && progress.elapsed() > STALL {
            eprintln!(
                "soak: the queue is empty and nothing arrived for {} s",
                STALL.as_secs()
            );
            break;
        }
        eprintln!(
            "soak: draining {:>3.0} s: {} deliveries outstanding, queue_pending {pending:?}",
            draining.elapsed().as_secs_f64(),
            outcome.outstanding()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let drain_time = draining.elapsed();
    drained.store(true, Relaxed);
    let _ = poller.await;
    let pending = cluster.queue_pending().await;
    let exited = cluster.exited();
    let logs = log_issues(&cluster);
    cluster.stop();

    let dead = dead.lock().await;
    let record = shared.record.lock().expect("record lock");
    let report = Report {
        secs: soaked.as_secs_f64(),
        drain_secs: drain_time.as_secs_f64(),
        rate,
        outcome: &outcome,
        ledger: &ledger,
        cluster: &cluster,
        shared: &shared,
        record: &record,
        dead: &dead,
        pending,
        chaos_errors: &chaos_errors,
        exited: &exited,
        logs: &logs,
    };
    let ok = report.print();
    if !ok || std::env::var_os("SOAK_KEEP").is_some() {
        let kept = work.keep();
        eprintln!("soak: work folder kept: {}", kept.display());
    }
    Ok(ok)
}

/// WARN and ERROR lines of every dispatcher log, by message (digits and
/// ids folded), most frequent first.
fn log_issues(cluster: &Cluster) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for log in cluster.logs() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
                continue;
            };
            let mut key: String = line[at + 1..]
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            if let Some(cut) = key.find(" delivery=") {
                key.truncate(cut);
            }
            let key: String = key.chars().take(160).collect();
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    out
}

struct Report<'a> {
    secs: f64,
    drain_secs: f64,
    rate: f64,
    outcome: &'a Outcome,
    ledger: &'a Ledger,
    cluster: &'a Cluster,
    shared: &'a Shared,
    record: &'a receivers::Record,
    dead: &'a DeadLetters,
    pending: Option<u64>,
    chaos_errors: &'a [String],
    exited: &'a [String],
    logs: &'a [(String, u64)],
}

impl Report<'_> {
    /// Prints the summary; true when the check passed.
    fn print(&self) -> bool {
        let o = self.outcome;
        let c = &self.cluster.counts;
        let s = &self.ledger.stats;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let mut problems: Vec<String> = Vec::new();
        let flaps = c.flaps.lock().expect("counts lock");
        let refused = s.refused.lock().expect("stats lock");
        let unexpected_answers = s.unexpected.lock().expect("stats lock");
        let start_failures = c.start_failures.lock().expect("counts lock");
        let answers = &self.shared.answers;

        println!("## Chaos soak");
        println!();
        println!("| | |");
        println!("|---|---|");
        println!(
            "| duration | {:.0} s of load and chaos, then {:.0} s to drain |",
            self.secs, self.drain_secs
        );
        println!(
            "| load | {} events/s target, 100 bots × 2 webhooks |",
            self.rate
        );
        println!(
            "| events posted / accepted | {} / **{}** ({} of them answered as duplicates of a try whose answer was lost) |",
            o.events, o.accepted, o.accepted_earlier
        );
        println!(
            "| events never confirmed | {} gave up, {} still pending |",
            o.gave_up, o.pending
        );
        println!(
            "| requests | {} ({} batches); {} sends; {} requests needed a retry |",
            n(&s.requests),
            n(&s.batches),
            n(&s.sends),
            n(&s.retried)
        );
        let refusals: Vec<String> = refused.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "| sends refused (then retried) | {} |",
            or_none(&refusals.join(", "))
        );
        println!("| deliveries expected | **{}** |", o.expected);
        println!(
            "| delivered (2xx at least once) | **{}** ({} of them also dead-lettered after a 2xx the dispatcher did not see) |",
            o.delivered, o.delivered_and_dead
        );
        println!("| dead-lettered (no 2xx) | **{}** |", o.dead_only);
        let reasons: Vec<String> = o
            .dead_by_reason
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!(
            "| dead letters by reason | {} |",
            or_none(&reasons.join(", "))
        );
        println!("| **lost** | **{}** |", o.lost);
        println!(
            "| duplicates (same webhook-id and bytes, 2xx more than once) | {} deliveries, {} extra copies |",
            o.duplicated, o.duplicate_copies
        );
        println!("| re-sends of a webhook-id (any answer) | {} |", o.resends);
        println!("| **inconsistent duplicates** | **{}** |", o.inconsistent);
        println!(
            "| deliveries to a webhook the event should not reach | {} |",
            o.unexpected
        );
        println!(
            "| deliveries of never-confirmed events | {} |",
            o.unconfirmed_delivered
        );
        println!(
            "| receiver requests, by the receiver's mode | {} ({} 200, {} 500, {} past the timeout, {} 410, {} slow 200, {} 404) |",
            n(&answers.requests),
            n(&answers.by_mode[Mode::Ok as usize]),
            n(&answers.by_mode[Mode::Fail500 as usize]),
            n(&answers.by_mode[Mode::TooSlow as usize]),
            n(&answers.by_mode[Mode::Gone410 as usize]),
            n(&answers.by_mode[Mode::SlowOk as usize]),
            n(&answers.by_mode[Mode::Reject404 as usize]),
        );
        println!(
            "| dispatcher kills (SIGKILL) | {} ({} starts in all; both down {:.1} s) |",
            n(&c.dispatcher_kills),
            n(&c.dispatcher_starts),
            n(&c.both_down_ms) as f64 / 1000.0
        );
        println!(
            "| Redis restarts | {} ({} SIGKILL, {} SHUTDOWN NOSAVE) |",
            n(&c.redis_kills) + n(&c.redis_shutdowns),
            n(&c.redis_kills),
            n(&c.redis_shutdowns)
        );
        let flap_list: Vec<String> = flaps.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "| receiver flaps | {} ({}) |",
            flaps.values().sum::<u64>(),
            or_none(&flap_list.join(", "))
        );
        println!(
            "| config reloads | {} written, {} applied by running dispatchers, {} refused or ignored, {} not seen within 10 s |",
            n(&c.reloads_written),
            n(&c.reloads_applied),
            n(&c.reloads_not_applied),
            n(&c.reloads_unseen)
        );
        println!(
            "| queue_pending at the end | {} |",
            self.pending
                .map_or("unknown".to_string(), |p| p.to_string())
        );
        println!();

        if o.lost > 0 {
            problems.push(format!("{} accepted deliveries lost:", o.lost));
            problems.extend(o.lost_examples.iter().map(|e| format!("  {e}")));
        }
        if o.inconsistent > 0 {
            problems.push(format!("{} inconsistent duplicates:", o.inconsistent));
            problems.extend(o.inconsistent_examples.iter().map(|e| format!("  {e}")));
        }
        if o.unexpected > 0 {
            problems.push(format!("{} unexpected deliveries:", o.unexpected));
            problems.extend(o.unexpected_examples.iter().map(|e| format!("  {e}")));
        }
        if o.dead_without_reason > 0 {
            problems.push(format!(
                "{} dead letters without a reason",
                o.dead_without_reason
            ));
        }
        let r = self.record;
        for (what, list) in [
            ("requests naming no soak event", &r.foreign),
            ("bad Standard Webhooks signatures", &r.bad_signatures),
            ("missing or wrong bearer tokens", &r.bad_auth),
            ("malformed dead letters", &self.dead.malformed),
            (
                "possible gaps in dead-letter listings",
                &self.dead.possible_gaps,
            ),
            ("answers to the load no retry can fix", &unexpected_answers),
        ] {
            if !list.is_empty() {
                problems.push(format!("{what}:"));
                problems.extend(list.iter().take(10).map(|e| format!("  {e}")));
            }
        }
        if self.dead.failed_polls > 0 {
            problems.push(format!(
                "{} dead-letter listings failed",
                self.dead.failed_polls
            ));
        }
        let mut notes: Vec<String> = Vec::new();
        notes.extend(self.chaos_errors.iter().cloned());
        notes.extend(self.exited.iter().cloned());
        notes.extend(start_failures.iter().cloned());
        if n(&s.mixed) > 0 {
            notes.push(format!(
                "{} 202s mixed accepted and duplicate events",
                n(&s.mixed)
            ));
        }
        if !notes.is_empty() {
            println!("Notes:");
            for note in &notes {
                println!("- {note}");
            }
            println!();
        }
        if !self.logs.is_empty() {
            println!("Dispatcher WARN/ERROR log lines (digits folded), most frequent first:");
            println!();
            for (line, count) in self.logs.iter().take(15) {
                println!("    {count:>6}  {line}");
            }
            println!();
        }
        if problems.is_empty() {
            println!(
                "PASS: nothing accepted was lost; every repeat had the same webhook-id and bytes."
            );
            true
        } else {
            println!("FAIL:");
            for p in &problems {
                println!("{p}");
            }
            false
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}
