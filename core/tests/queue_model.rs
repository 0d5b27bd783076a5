//! Model-based tests of the queue contract: random sequences of enqueue,
//! claim, ack, retry, dead-letter, replay, hold and the clock moving on
//! (leases running out), run against each backend and against a small
//! reference model; after every step the two must agree. proptest shrinks a
//! failure to the shortest sequence that still fails.
//!
//! `PROPTEST_CASES=N` runs more (or fewer) sequences than the default.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use statushook::event::Status;
use statushook::queue::{
    Claimed, Clock, Delivery, EmbeddedQueue, Lease, NewDelivery, NewEvent, Order, Queue,
    RedisQueue, new_delivery_id,
};
use support::redis::RedisServer;

const BOTS: [&str; 2] = ["bot-a", "bot-b"];
const WEBHOOKS: [&str; 2] = ["w1", "w2"];
const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(3600);

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Op {
    /// An event of `bot` with id `e<event>` for the first `webhooks` webhooks.
    Enqueue {
        bot: usize,
        event: u8,
        webhooks: usize,
    },
    Claim {
        max: usize,
        per_lane: usize,
    },
    /// Acts on the `lease`-th lease handed out so far (modulo their count).
    Ack {
        lease: usize,
    },
    Retry {
        lease: usize,
        after_ms: u64,
    },
    DeadLetter {
        lease: usize,
    },
    Replay {
        bot: usize,
    },
    Hold {
        bot: usize,
        webhook: usize,
        for_ms: u64,
    },
    /// The clock moves on; past a lease's end its job is due again.
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..6u8, 0..3usize).prop_map(|(bot, event, webhooks)| Op::Enqueue { bot, event, webhooks }),
        3 => (0..5usize, 1..3usize).prop_map(|(max, per_lane)| Op::Claim { max, per_lane }),
        2 => any::<usize>().prop_map(|lease| Op::Ack { lease }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), Just(5_000), Just(60_000)])
            .prop_map(|(lease, after_ms)| Op::Retry { lease, after_ms }),
        1 => any::<usize>().prop_map(|lease| Op::DeadLetter { lease }),
        1 => (0..2usize).prop_map(|bot| Op::Replay { bot }),
        1 => (0..2usize, 0..2usize, prop_oneof![Just(1_000u64), Just(40_000)])
            .prop_map(|(bot, webhook, for_ms)| Op::Hold { bot, webhook, for_ms }),
        2 => prop_oneof![Just(1_000u64), Just(10_000), Just(31_000)].prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Where a job is, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Claimable once `due` (unix ms) has come and its lane is not held.
    Pending {
        due: u64,
    },
    /// Leased with `token` until `until`; due again then.
    Leased {
        token: u64,
        until: u64,
    },
    Dead,
    Done,
}

#[derive(Debug, Clone)]
struct Job {
    bot: &'static str,
    lane: String,
    state: State,
}

/// The reference model: what the queue should hold.
#[derive(Debug, Default)]
struct Model {
    jobs: BTreeMap<String, Job>,
    /// Dedup marks: (bot, event id).
    seen: BTreeSet<(String, String)>,
    /// Held lanes and until when.
    holds: BTreeMap<String, u64>,
}

impl Model {
    fn claimable(&self, id: &str, now: u64) -> bool {
        let job = &self.jobs[id];
        let due = match job.state {
            State::Pending { due } => due,
            State::Leased { until, .. } => until,
            State::Dead | State::Done => return false,
        };
        due <= now && self.holds.get(&job.lane).is_none_or(|&until| until <= now)
    }

    fn pending(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, State::Pending { .. } | State::Leased { .. }))
            .count() as u64
    }

    fn dead(&self, bot: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| j.bot == bot && j.state == State::Dead)
            .count()
    }

    /// Whether `lease` is the job's current one.
    fn current(&self, lease: &Lease) -> bool {
        matches!(self.jobs.get(&lease.id).map(|j| &j.state), Some(State::Leased { token, .. }) if *token == lease.token)
    }
}

fn delivery(bot: &str, event: &str, webhook: &str) -> Delivery {
    Delivery {
        id: new_delivery_id(),
        bot: bot.into(),
        webhook: webhook.into(),
        event_id: event.into(),
        status: Status::Read,
        message_id: None,
        recipient: None,
        created_ms: 1,
        order: Order::Any,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: format!("{{\"event\":\"{event}\"}}").into_bytes(),
    }
}

/// Runs `ops` against `q` (whose clock is `clock`) and the model, checking
/// after each step.
async fn run(q: &dyn Queue, clock: &Clock, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut leases: Vec<Lease> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        let at = |what: &str| format!("step {step} ({op:?}): {what}");
        match op {
            Op::Enqueue {
                bot,
                event,
                webhooks,
            } => {
                let bot = BOTS[*bot];
                let event_id = format!("e{event}");
                let new = NewEvent {
                    bot: bot.into(),
                    event_id: event_id.clone(),
                    deliveries: WEBHOOKS[..*webhooks]
                        .iter()
                        .map(|w| NewDelivery::Pending(delivery(bot, &event_id, w)))
                        .collect(),
                };
                let outcome = q
                    .enqueue(std::slice::from_ref(&new), WINDOW)
                    .await
                    .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
                let fresh = model.seen.insert((bot.to_string(), event_id));
                prop_assert_eq!(outcome.accepted, usize::from(fresh), "{}", at("accepted"));
                if fresh {
                    for d in &new.deliveries {
                        let d = d.delivery();
                        model.jobs.insert(
                            d.id.clone(),
                            Job {
                                bot,
                                lane: d.lane(),
                                state: State::Pending { due: now },
                            },
                        );
                    }
                }
            }
            Op::Claim { max, per_lane } => {
                let claim = q
                    .claim(*max, *per_lane, LEASE)
                    .await
                    .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
                // How many the contract says: per claimable lane at most
                // per_lane, and max in all.
                let mut per_lane_due: BTreeMap<&str, usize> = BTreeMap::new();
                for (id, job) in &model.jobs {
                    if model.claimable(id, now) {
                        *per_lane_due.entry(job.lane.as_str()).or_default() += 1;
                    }
                }
                let expected = per_lane_due
                    .values()
                    .map(|&n| n.min(*per_lane))
                    .sum::<usize>()
                    .min(*max);
                prop_assert_eq!(claim.jobs.len(), expected, "{}", at("claimed"));
                let mut taken: BTreeMap<String, usize> = BTreeMap::new();
                for Claimed {
                    delivery, lease, ..
                } in &claim.jobs
                {
                    prop_assert!(
                        model.jobs.contains_key(&delivery.id),
                        "{}",
                        at("unknown job claimed")
                    );
                    prop_assert!(
                        model.claimable(&delivery.id, now),
                        "{}",
                        at("claimed a job not due")
                    );
                    *taken.entry(delivery.lane()).or_default() += 1;
                    leases.push(lease.clone());
                }
                prop_assert!(
                    taken.values().all(|&n| n <= *per_lane),
                    "{}",
                    at("per_lane")
                );
                for Claimed {
                    delivery, lease, ..
                } in claim.jobs
                {
                    if let Some(job) = model.jobs.get_mut(&delivery.id) {
                        job.state = State::Leased {
                            token: lease.token,
                            until: now + LEASE.as_millis() as u64,
                        };
                    }
                }
            }
            Op::Ack { lease } | Op::Retry { lease, .. } | Op::DeadLetter { lease } => {
                if leases.is_empty() {
                    continue;
                }
                let lease = leases[lease % leases.len()].clone();
                let current = model.current(&lease);
                let (done, next) = match op {
                    Op::Ack { .. } => (q.ack(&lease, None).await, State::Done),
                    Op::Retry { after_ms, .. } => (
                        q.retry(&lease, None, now + after_ms).await,
                        State::Pending {
                            due: now + after_ms,
                        },
                    ),
                    _ => (
                        q.dead_letter(&lease, None, "model says so").await,
                        State::Dead,
                    ),
                };
                let done = done.map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
                prop_assert_eq!(
                    done,
                    current,
                    "{}",
                    at("a lease acts exactly when it is current")
                );
                if current && let Some(job) = model.jobs.get_mut(&lease.id) {
                    job.state = next;
                }
            }
            Op::Replay { bot } => {
                let bot = BOTS[*bot];
                let replayed = q
                    .replay(bot, None)
                    .await
                    .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
                prop_assert_eq!(replayed, model.dead(bot), "{}", at("replayed"));
                for job in model.jobs.values_mut() {
                    if job.bot == bot && job.state == State::Dead {
                        job.state = State::Pending { due: now };
                    }
                }
            }
            Op::Hold {
                bot,
                webhook,
                for_ms,
            } => {
                let (bot, webhook) = (BOTS[*bot], WEBHOOKS[*webhook]);
                q.hold(bot, webhook, now + for_ms)
                    .await
                    .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
                let lane = format!("{bot}/{webhook}");
                let until = model.holds.entry(lane).or_insert(0);
                // A hold never shortens an existing one.
                *until = (*until).max(now + for_ms);
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(*ms)),
        }
        let depth = q
            .depth()
            .await
            .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
        prop_assert_eq!(depth.pending, model.pending(), "{}", at("pending"));
        for bot in BOTS {
            let dead = q
                .dead_letters(bot, 1000)
                .await
                .map_err(|e| TestCaseError::fail(at(&e.to_string())))?;
            prop_assert_eq!(dead.len(), model.dead(bot), "{}", at("dead letters"));
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Each case is real I/O; shrinking a failure still takes a while.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn the_embedded_store_behaves_as_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("dir");
        let clock = Clock::adjustable();
        let q = EmbeddedQueue::open_with_clock(dir.path(), clock.clone()).expect("open");
        runtime().block_on(run(&q, &clock, &ops))?;
    }
}

/// One Redis for every case (owned by the test, so it is stopped when the
/// test ends; a static would outlive the process's exit as an orphan), each
/// case under a prefix of its own.
#[test]
fn the_redis_store_behaves_as_the_model() {
    let server = RedisServer::start();
    let next = AtomicU32::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(cases(1000));
    let outcome = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let prefix = format!("model{}", next.fetch_add(1, Ordering::Relaxed));
        let clock = Clock::adjustable();
        runtime().block_on(async {
            let q: Arc<dyn Queue> = Arc::new(
                RedisQueue::with_clock(&server.url(), &prefix, clock.clone()).expect("queue"),
            );
            run(&*q, &clock, &ops).await
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
