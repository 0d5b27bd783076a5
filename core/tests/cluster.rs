//! Dispatchers as real processes on a real Redis Cluster (redis-server with
//! `--cluster-enabled yes` on loopback ports): a dispatcher killed under
//! load, and a primary killed under load with replicas to fail over to.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::cluster::RedisCluster;
use support::dispatcher::{Dispatcher, batch_over, check_deliveries, post, wait_until};
use support::receiver::{Received, Receiver};

/// Bots the load is spread over: with 6 shards on 3 primaries, every
/// primary holds some.
const BOTS: usize = 12;

fn cluster_queue(cluster: &RedisCluster, prefix: &str, wait_replicas: u16) -> String {
    format!(
        "backend = \"redis\"\ncluster_urls = {}\nprefix = \"{prefix}\"\nshards = 6\nwait_replicas = {wait_replicas}",
        cluster.toml_urls()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_on_a_cluster_one_killed_under_10000_events_lose_nothing() {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 100;
    let cluster = RedisCluster::start(3, 0);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let queue = cluster_queue(&cluster, "kill", 0);
    let url = receiver.url();
    let mut a = Dispatcher::start_with_bots(dir.path(), &queue, &url, "a", BOTS).await;
    let b = Dispatcher::start_with_bots(dir.path(), &queue, &url, "b", BOTS).await;
    let client = support::http_client();
    let mut killed = false;
    for (n, start) in (0..EVENTS).step_by(BATCH).enumerate() {
        // Alternate between the two while both live, then b alone.
        let ports = if killed || n % 2 == 1 {
            vec![b.port]
        } else {
            vec![a.port, b.port]
        };
        let body = batch_over(start, BATCH, BOTS);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !post(&client, &ports, &body).await {
            assert!(Instant::now() < deadline, "batch {start} never accepted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !killed && start >= EVENTS * 3 / 10 {
            a.kill9();
            killed = true;
        }
    }
    let got = wait_until(&receiver, EVENTS, Duration::from_secs(180)).await;
    let duplicates = check_deliveries(&got, EVENTS);
    eprintln!(
        "cluster, two dispatchers, one killed: {EVENTS} delivered, {duplicates} re-deliveries with the same webhook-id and bytes"
    );
}

/// What one failover run saw.
struct Failover {
    /// Events answered `202`.
    accepted: usize,
    /// Of those, how many arrived at the receiver.
    delivered: usize,
    /// Accepted and never delivered.
    lost: usize,
    /// Deliveries that arrived twice (same webhook-id and bytes, checked).
    duplicates: usize,
    /// Posts refused (`503`) around the failover.
    refused_posts: usize,
    /// From the kill to the first batch accepted after it.
    outage: Duration,
    /// Whether the killed primary's replica took over its slots.
    failed_over: bool,
}

impl std::fmt::Display for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accepted, {} delivered, {} lost, {} re-delivered, {} posts refused, {:.1} s from the kill to the next accepted batch, failed over: {}",
            self.accepted,
            self.delivered,
            self.lost,
            self.duplicates,
            self.refused_posts,
            self.outage.as_secs_f64(),
            self.failed_over
        )
    }
}

/// Posts `events` events in batches to one dispatcher on a 3 + 3 cluster,
/// kills the primary of bot `acme`'s shard a third of the way through,
/// keeps posting (each refused batch again, as a client would) and counts
/// what arrived.
async fn failover_run(wait_replicas: u16, events: usize) -> Failover {
    const BATCH: usize = 50;
    let mut cluster = RedisCluster::start(3, 1);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let queue = cluster_queue(&cluster, "failover", wait_replicas);
    let dispatcher =
        Dispatcher::start_with_bots(dir.path(), &queue, &receiver.url(), "d", BOTS).await;
    let client = support::http_client();
    let (mut accepted, mut refused_posts) = (0, 0);
    let mut killed_at: Option<Instant> = None;
    let mut victim: Option<(u16, Instant)> = None;
    let mut killed_port = 0;
    let mut outage = Duration::ZERO;
    for start in (0..events).step_by(BATCH) {
        let body = batch_over(start, BATCH, BOTS);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !post(&client, &[dispatcher.port], &body).await {
            refused_posts += 1;
            assert!(
                Instant::now() < deadline,
                "ingest did not recover within 60 s of the failover"
            );
            // The killed node comes back after a while, as an orchestrator
            // would bring it: it rejoins as the new primary's replica. Until
            // then a shard that lost its only replica to the failover cannot
            // satisfy wait_replicas = 1, and refuses writes.
            if let Some((port, at)) = victim
                && at.elapsed() > Duration::from_secs(5)
            {
                cluster.restart(port);
                victim = None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(at) = killed_at
            && outage.is_zero()
        {
            outage = at.elapsed();
        }
        accepted += BATCH;
        if killed_at.is_none() && start >= events / 3 {
            let port = victim_primary(&cluster);
            killed_port = port;
            cluster.kill(port);
            killed_at = Some(Instant::now());
            victim = Some((port, Instant::now()));
        }
    }
    // Wait until deliveries stop arriving, then count.
    let received = settle(&receiver, accepted).await;
    let delivered = received_messages(&received).len();
    // Every duplicate the same bytes under the same webhook-id (checkable
    // when all arrived).
    let duplicates = if delivered == accepted {
        check_deliveries(&received, accepted)
    } else {
        0
    };
    let primaries = cluster.primaries();
    Failover {
        accepted,
        delivered,
        lost: accepted - delivered,
        duplicates,
        refused_posts,
        outage,
        failed_over: primaries.len() == 3 && !primaries.contains(&killed_port),
    }
}

/// A primary that holds some of the load's shards: the one serving the
/// first key slot of the `failover` queue's keys that the cluster reports.
fn victim_primary(cluster: &RedisCluster) -> u16 {
    // Any primary holding keys of the queue will do; the one with most.
    cluster
        .primaries()
        .into_iter()
        .max_by_key(|&port| {
            cluster
                .cli(port, &["dbsize"])
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .expect("a primary")
}

/// What arrived once nothing new has for 10 s (or all `expected` did).
async fn settle(receiver: &Receiver, expected: usize) -> Vec<Received> {
    let mut last = 0;
    let mut quiet_since = Instant::now();
    loop {
        let got = receiver.received();
        let distinct = received_messages(&got).len();
        if distinct >= expected || quiet_since.elapsed() > Duration::from_secs(10) {
            return got;
        }
        if distinct != last {
            (last, quiet_since) = (distinct, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The message ids that arrived, each with its webhook-ids.
fn received_messages(received: &[Received]) -> BTreeMap<String, BTreeSet<String>> {
    let mut messages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in received {
        let message = r.json()["messageId"].as_str().unwrap_or("").to_string();
        messages
            .entry(message)
            .or_default()
            .insert(r.header("webhook-id").to_string());
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_fails_over_and_wait_replicas_loses_nothing() {
    const EVENTS: usize = 3_000;
    let without = failover_run(0, EVENTS).await;
    eprintln!("failover, wait_replicas = 0: {without}");
    let with = failover_run(1, EVENTS).await;
    eprintln!("failover, wait_replicas = 1: {with}");
    for run in [&without, &with] {
        assert_eq!(run.accepted, EVENTS, "ingest recovered by itself: {run}");
        assert!(run.failed_over, "a replica took over: {run}");
    }
    assert_eq!(
        with.lost, 0,
        "with wait_replicas, no acknowledged event is lost: {with}"
    );
}
