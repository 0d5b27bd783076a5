//! Redis Cluster: what `wait_replicas` costs an enqueue, and what idle
//! shards cost a dispatcher, on a real 3-primary + 3-replica cluster on
//! loopback (the same cluster the tests start).
//!
//! ```text
//! cargo bench --bench cluster
//! CLUSTER_RUNS=5 CLUSTER_CALLS=5000 cargo bench --bench cluster
//! ```
//!
//! For each of `wait_replicas` 0 and 1, in alternating order, `CLUSTER_RUNS`
//! runs (default 3) of:
//! - `CLUSTER_CALLS` (default 3,000) enqueues of one event each, one after
//!   the other: median and p99 latency;
//! - 32 tasks enqueueing one event each for 3 s: events/s.
//!
//! Then one queue with 12 shards and nothing to do, claiming as a delivery
//! worker does (claim, sleep until the answer's next due time or 1 s) for
//! 10 s: the claim scripts the primaries ran per second.
//!
//! Markdown tables go to stdout; BENCHMARKS.md ("Redis Cluster") explains
//! them.

#![cfg_attr(test, allow(dead_code))]

#[allow(dead_code)] // the bench uses part of the tests' cluster support
#[path = "../tests/support/cluster.rs"]
mod cluster;
#[allow(dead_code)] // the cluster support starts its nodes with it
#[path = "../tests/support/redis.rs"]
mod redis;

use std::time::{Duration, Instant};

use cluster::RedisCluster;
use statushook::event::Status;
use statushook::queue::{
    Clock, Delivery, NewDelivery, NewEvent, Order, Queue, RedisOptions, RedisQueue, RedisServers,
    new_delivery_id, now_ms,
};

const WINDOW: Duration = Duration::from_secs(3600);

fn event(bot: &str, id: &str) -> NewEvent {
    NewEvent {
        bot: bot.into(),
        event_id: id.into(),
        deliveries: vec![NewDelivery::Pending(Delivery {
            id: new_delivery_id(),
            bot: bot.into(),
            webhook: "crm".into(),
            event_id: id.into(),
            status: Status::Read,
            message_id: Some(format!("wamid.{id}")),
            recipient: Some("593980000000".into()),
            created_ms: now_ms(),
            order: Order::Any,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: format!(r#"{{"id":"{id}","status":"READ","destination":"593980000000"}}"#)
                .into_bytes(),
        })],
    }
}

fn queue(cluster: &RedisCluster, prefix: &str, shards: u16, wait_replicas: u16) -> RedisQueue {
    RedisQueue::open(
        RedisOptions {
            servers: RedisServers::Cluster(cluster.urls()),
            prefix: prefix.into(),
            shards,
            wait_replicas,
        },
        Clock::system(),
    )
    .expect("queue")
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// One run's figures.
struct Run {
    p50_us: f64,
    p99_us: f64,
    sequential_per_s: f64,
    concurrent_per_s: f64,
}

async fn run(cluster: &RedisCluster, wait_replicas: u16, round: usize, calls: usize) -> Run {
    let q = std::sync::Arc::new(queue(
        cluster,
        &format!("w{wait_replicas}r{round}"),
        6,
        wait_replicas,
    ));
    q.ping().await.expect("ping");
    // Warm: the connection to every primary and the scripts.
    for i in 0..60 {
        q.enqueue(&[event(&format!("bot-{i}"), &format!("warm-{i}"))], WINDOW)
            .await
            .expect("enqueue");
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls {
        let e = event(&format!("bot-{}", i % 100), &format!("s-{i}"));
        let t = Instant::now();
        q.enqueue(&[e], WINDOW).await.expect("enqueue");
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let sequential_per_s = calls as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];

    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for task in 0..32 {
        let q = std::sync::Arc::clone(&q);
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                let e = event(
                    &format!("bot-{}", (task * 7 + n) % 100),
                    &format!("c-{task}-{n}"),
                );
                q.enqueue(&[e], WINDOW).await.expect("enqueue");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("task");
    }
    Run {
        p50_us: at(0.5),
        p99_us: at(0.99),
        sequential_per_s,
        concurrent_per_s: total as f64 / 3.0,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Script calls (EVAL and EVALSHA) the primaries have run so far.
fn script_calls(cluster: &RedisCluster) -> u64 {
    cluster
        .primaries()
        .into_iter()
        .map(|port| {
            cluster
                .cli(port, &["info", "commandstats"])
                .lines()
                .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
                .filter_map(|l| {
                    l.split(['=', ','])
                        .nth(1)
                        .and_then(|calls| calls.parse::<u64>().ok())
                })
                .sum::<u64>()
        })
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_number("CLUSTER_RUNS", 3);
    let calls = env_number("CLUSTER_CALLS", 3_000);
    eprintln!("starting a 3 + 3 Redis Cluster on loopback");
    let cluster = RedisCluster::start(3, 1);

    let mut results: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..runs {
        // Alternate which setting goes first, so drift favours neither.
        let order: [u16; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for wait in order {
            eprintln!("run {} of {runs}, wait_replicas = {wait}", round + 1);
            results[usize::from(wait)].push(run(&cluster, wait, round, calls).await);
        }
    }
    println!(
        "### Enqueue with and without wait_replicas (3 + 3 cluster, 6 shards, one event per call, medians of {runs} runs)\n"
    );
    println!(
        "| wait_replicas | latency p50 | latency p99 | sequential calls/s | 32 concurrent callers, events/s |"
    );
    println!("|---|---|---|---|---|");
    for (wait, runs) in results.iter().enumerate() {
        let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {wait} | {:.0} µs | {:.0} µs | {:.0} | {:.0} |",
            pick(|r| r.p50_us),
            pick(|r| r.p99_us),
            pick(|r| r.sequential_per_s),
            pick(|r| r.concurrent_per_s),
        );
    }

    // Idle shards: a worker's claims against 12 empty shards.
    let idle = queue(&cluster, "idle", 12, 0);
    idle.ping().await.expect("ping");
    let before = script_calls(&cluster);
    let started = Instant::now();
    let mut claims = 0u64;
    while started.elapsed() < Duration::from_secs(10) {
        let claim = idle
            .claim(64, 16, Duration::from_secs(30))
            .await
            .expect("claim");
        claims += 1;
        let wait = claim.next_due_ms.map_or(Duration::from_secs(1), |due| {
            Duration::from_millis(due.saturating_sub(now_ms())).min(Duration::from_secs(1))
        });
        idle.wait_for_work(wait.max(Duration::from_millis(1))).await;
    }
    let scripts = script_calls(&cluster) - before;
    let secs = started.elapsed().as_secs_f64();
    println!("\n### An idle dispatcher on 12 empty shards (10 s)\n");
    println!("| claims asked | claim scripts run | scripts per second | per shard per second |");
    println!("|---|---|---|---|");
    println!(
        "| {claims} | {scripts} | {:.1} | {:.2} |",
        scripts as f64 / secs,
        scripts as f64 / secs / 12.0
    );
}
