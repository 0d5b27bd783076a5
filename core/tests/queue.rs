//! The queue contract, run case by case against every backend with a real
//! store (a real redis-server on a free port; a redb file in a temp folder).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statushook::event::Status;
use statushook::queue::{
    Attempt, AttemptOutcome, Claimed, Clock, Cursor, Delivery, DeliveryQuery, DeliveryRecord,
    EmbeddedQueue, Handoff, History, LaneState, NewDelivery, NewEvent, Order, Outcome, Queue,
    QueueError, RedisOptions, RedisQueue, RedisServers, Resend, new_delivery_id, now_ms,
};
use support::cluster::RedisCluster;
use support::redis::RedisServer;

const WINDOW: Duration = Duration::from_secs(3600);
const LEASE: Duration = Duration::from_secs(30);

fn delivery(bot: &str, event_id: &str, webhook: &str) -> Delivery {
    Delivery {
        id: new_delivery_id(),
        bot: bot.into(),
        webhook: webhook.into(),
        event_id: event_id.into(),
        status: Status::Read,
        message_id: None,
        recipient: None,
        created_ms: now_ms(),
        order: Order::Any,
        content_type: "application/json".into(),
        headers: vec![("X-Crm".into(), "1".into())],
        body: format!("{{\"event\":\"{event_id}\",\"webhook\":\"{webhook}\"}}").into_bytes(),
    }
}

fn event(bot: &str, event_id: &str, webhooks: &[&str]) -> NewEvent {
    NewEvent {
        bot: bot.into(),
        event_id: event_id.into(),
        deliveries: webhooks
            .iter()
            .map(|w| NewDelivery::Pending(delivery(bot, event_id, w)))
            .collect(),
    }
}

fn failed_attempt(status: u16) -> Attempt {
    Attempt {
        at_ms: now_ms(),
        duration_ms: 12,
        outcome: AttemptOutcome::Status(status),
        response: None,
    }
}

/// A queue under test, with whatever keeps its store alive.
struct Backend {
    queue: Arc<dyn Queue>,
    /// The queue's clock: tests move it instead of sleeping.
    clock: Clock,
    _redis: Option<RedisServer>,
    _dir: Option<tempfile::TempDir>,
}

async fn redis_backend() -> Backend {
    redis_backend_with(History::OFF).await
}

async fn embedded_backend() -> Backend {
    embedded_backend_with(History::OFF).await
}

async fn redis_backend_with(history: History) -> Backend {
    let server = RedisServer::start();
    let clock = Clock::adjustable();
    let queue = RedisQueue::with_clock(&server.url(), "test", clock.clone())
        .expect("queue")
        .with_history(history);
    Backend {
        queue: Arc::new(queue),
        clock,
        _redis: Some(server),
        _dir: None,
    }
}

async fn embedded_backend_with(history: History) -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::adjustable();
    let queue = EmbeddedQueue::open_with_clock(dir.path(), clock.clone())
        .expect("queue")
        .with_history(history);
    Backend {
        queue: Arc::new(queue),
        clock,
        _redis: None,
        _dir: Some(dir),
    }
}

// ---- the cases: each takes any backend -------------------------------------

async fn enqueued_jobs_are_claimed_once_with_body_intact(q: &dyn Queue, _clock: &Clock) {
    let e = event("bot-a", "e1", &["crm", "bi"]);
    let outcome = q
        .enqueue(std::slice::from_ref(&e), WINDOW)
        .await
        .expect("enqueue");
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 0));
    // Room for none takes none, and leases nothing.
    assert!(q.claim(0, 10, LEASE).await.expect("claim").jobs.is_empty());
    assert!(q.claim(10, 0, LEASE).await.expect("claim").jobs.is_empty());
    let mut claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 2);
    claimed.sort_by(|a, b| a.delivery.webhook.cmp(&b.delivery.webhook));
    let mut expected: Vec<_> = e.deliveries.iter().map(|d| d.delivery().clone()).collect();
    expected.sort_by(|a, b| a.webhook.cmp(&b.webhook));
    assert_eq!(claimed[0].delivery, expected[0]);
    assert_eq!(claimed[1].delivery, expected[1]);
    assert!(claimed.iter().all(|c| c.attempts == 0));
    assert!(
        q.claim(10, 10, LEASE).await.expect("claim").jobs.is_empty(),
        "leased jobs are not handed out twice"
    );
    for c in &claimed {
        assert!(q.ack(&c.lease, None).await.expect("ack"));
    }
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

/// The Redis scripts write a lane's (and a log's) new entries in commands of
/// at most 500 members, and Lua cannot pass more than about 8,000 values to
/// one command: a batch of one lane past both is enqueued, claimed in one
/// claim and acked whole, with a token of its own each.
async fn a_batch_bigger_than_one_redis_command_moves_whole(q: &dyn Queue, _clock: &Clock) {
    const N: usize = 5_000;
    let events: Vec<NewEvent> = (0..N)
        .map(|n| event("bot-a", &format!("big-{n}"), &["crm"]))
        .collect();
    let outcome = q.enqueue(&events, WINDOW).await.expect("enqueue");
    assert_eq!((outcome.accepted, outcome.duplicates), (N, 0));
    assert_eq!(q.depth().await.expect("depth").pending, N as u64);
    let claimed = q.claim(2 * N, 2 * N, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), N, "one claim takes the whole lane");
    let tokens: std::collections::HashSet<u64> = claimed.iter().map(|c| c.lease.token).collect();
    assert_eq!(tokens.len(), N, "every lease has a token of its own");
    assert!(
        q.claim(2 * N, 2 * N, LEASE)
            .await
            .expect("claim")
            .jobs
            .is_empty(),
        "all of them are leased"
    );
    let sent: std::collections::HashMap<&str, &Delivery> = events
        .iter()
        .map(|e| (e.event_id.as_str(), e.deliveries[0].delivery()))
        .collect();
    for c in &claimed {
        assert_eq!(
            Some(&&c.delivery),
            sent.get(c.delivery.event_id.as_str()),
            "each claim carries its own delivery, body intact"
        );
        assert!(q.ack(&c.lease, None).await.expect("ack"));
    }
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

/// The same with the delivery log on (its entries are written per bot the
/// same way). A name of its own: the cluster suite keys each case's queue by
/// the case's name, and the dedup marks of the run with the log off would
/// make this one's events duplicates.
async fn a_batch_bigger_than_one_redis_command_moves_whole_with_the_log_on(
    q: &dyn Queue,
    clock: &Clock,
) {
    a_batch_bigger_than_one_redis_command_moves_whole(q, clock).await;
}

async fn claims_follow_due_time(q: &dyn Queue, clock: &Clock) {
    q.enqueue(
        &[
            event("bot-a", "first", &["w"]),
            event("bot-a", "second", &["w"]),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 2);
    // Push "first" into the future, "second" just past: only "second" is due.
    let first = claimed
        .iter()
        .find(|c| c.delivery.event_id == "first")
        .expect("first");
    let second = claimed
        .iter()
        .find(|c| c.delivery.event_id == "second")
        .expect("second");
    assert!(
        q.retry(
            &first.lease,
            Some(&failed_attempt(500)),
            clock.now_ms() + 60_000
        )
        .await
        .expect("retry")
    );
    assert!(
        q.retry(&second.lease, Some(&failed_attempt(500)), clock.now_ms())
            .await
            .expect("retry")
    );
    let lease_end = clock.now_ms() + LEASE.as_millis() as u64;
    let again = q.claim(10, 10, LEASE).await.expect("claim");
    // The claim says when to look again: when the lease it just gave
    // "second" ends (before "first" is due, in a minute).
    let next = again.next_due_ms.expect("a job is pending");
    assert!(
        (lease_end..=lease_end + 5_000).contains(&next),
        "{next} vs {lease_end}"
    );
    assert_eq!(Some(next), q.next_due_ms().await.expect("next due"));
    let again = again.jobs;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.event_id, "second");
    assert_eq!(again[0].attempts, 1, "the failed attempt is counted");
    assert_eq!(
        q.next_due_ms()
            .await
            .expect("next due")
            .map(|due| due > clock.now_ms() + 20_000),
        Some(true)
    );
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.pending, 2);
}

async fn an_expired_lease_is_reclaimed_and_the_stale_holder_is_fenced(
    q: &dyn Queue,
    clock: &Clock,
) {
    q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    let stale = q
        .claim(1, 10, Duration::from_millis(100))
        .await
        .expect("claim")
        .jobs
        .remove(0);
    clock.advance(Duration::from_millis(250));
    let fresh = q.claim(1, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert_eq!(fresh.delivery.id, stale.delivery.id);
    assert_ne!(fresh.lease.token, stale.lease.token);
    assert!(
        !q.ack(&stale.lease, None).await.expect("ack"),
        "a stale worker cannot ack"
    );
    assert!(
        !q.retry(&stale.lease, None, clock.now_ms())
            .await
            .expect("retry"),
        "nor retry"
    );
    assert!(
        !q.dead_letter(&stale.lease, None, "x").await.expect("dead"),
        "nor dead-letter"
    );
    assert!(q.ack(&fresh.lease, None).await.expect("ack"));
    assert!(
        !q.ack(&fresh.lease, None).await.expect("ack"),
        "an ack is not repeated"
    );
}

async fn a_retry_without_attempt_postpones_without_counting(q: &dyn Queue, clock: &Clock) {
    q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    let c = q.claim(1, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert!(
        q.retry(&c.lease, None, clock.now_ms())
            .await
            .expect("postpone")
    );
    let c = q.claim(1, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert_eq!(c.attempts, 0);
}

async fn dead_letters_keep_every_attempt_and_replay_restarts_the_count(
    q: &dyn Queue,
    clock: &Clock,
) {
    q.enqueue(
        &[event("bot-a", "e1", &["w"]), event("bot-b", "e2", &["w"])],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    let a = claimed
        .iter()
        .find(|c| c.delivery.bot == "bot-a")
        .expect("bot-a job");
    assert!(
        q.retry(&a.lease, Some(&failed_attempt(503)), clock.now_ms())
            .await
            .expect("retry")
    );
    let a = q.claim(10, 10, LEASE).await.expect("claim").jobs.remove(0);
    let timeout = Attempt {
        at_ms: clock.now_ms(),
        duration_ms: 10_000,
        outcome: AttemptOutcome::Error("timed out".into()),
        response: None,
    };
    assert!(
        q.dead_letter(&a.lease, Some(&timeout), "ran out of attempts")
            .await
            .expect("dead")
    );
    assert!(
        q.claim(10, 10, LEASE).await.expect("claim").jobs.is_empty(),
        "a dead letter is not claimed"
    );

    let dead = q.dead_letters("bot-a", 100).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "ran out of attempts");
    assert_eq!(dead[0].delivery.id, a.delivery.id);
    assert_eq!(dead[0].attempts.len(), 2);
    assert_eq!(dead[0].attempts[0].outcome, AttemptOutcome::Status(503));
    assert_eq!(dead[0].attempts[1], timeout);
    assert_eq!(dead[0].body_bytes, a.delivery.body.len());
    assert!(
        q.dead_letters("bot-b", 100).await.expect("list").is_empty(),
        "dead letters are per bot"
    );

    assert_eq!(
        q.replay("bot-a", Some("msg_unknown"))
            .await
            .expect("replay"),
        0
    );
    assert_eq!(q.replay("bot-a", None).await.expect("replay"), 1);
    assert!(q.dead_letters("bot-a", 100).await.expect("list").is_empty());
    let again = q.claim(10, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert_eq!(again.delivery, a.delivery, "same id, same body");
    assert_eq!(again.attempts, 0, "a replay gets a full schedule");
    assert!(
        q.dead_letter(
            &again.lease,
            Some(&failed_attempt(500)),
            "ran out of attempts"
        )
        .await
        .expect("dead")
    );
    let dead = q.dead_letters("bot-a", 100).await.expect("list");
    assert_eq!(dead[0].attempts.len(), 3, "history survives the replay");
    assert_eq!(
        q.replay("bot-a", Some(&a.delivery.id))
            .await
            .expect("replay one"),
        1
    );
}

async fn duplicates_are_counted_and_queue_nothing(q: &dyn Queue, clock: &Clock) {
    let outcome = q
        .enqueue(
            &[
                event("bot-a", "e1", &["w"]),
                event("bot-a", "e1", &["w"]),
                event("bot-b", "e1", &["w"]),
            ],
            WINDOW,
        )
        .await
        .expect("enqueue");
    assert_eq!(
        (outcome.accepted, outcome.duplicates),
        (2, 1),
        "same id for another bot is another event"
    );
    let outcome = q
        .enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 1));
    assert_eq!(q.depth().await.expect("depth").pending, 2);
    // After the window, the same id is a new event.
    let short = Duration::from_millis(150);
    q.enqueue(&[event("bot-c", "e9", &["w"])], short)
        .await
        .expect("enqueue");
    clock.advance(Duration::from_millis(300));
    let outcome = q
        .enqueue(&[event("bot-c", "e9", &["w"])], short)
        .await
        .expect("enqueue");
    assert_eq!(outcome.accepted, 1);
}

async fn deliveries_born_dead_are_listed_not_sent(q: &dyn Queue, _clock: &Clock) {
    let mut e = event("bot-a", "e1", &["ok"]);
    e.deliveries.push(NewDelivery::Dead(
        delivery("bot-a", "e1", "broken"),
        "plugin failed: trap".into(),
    ));
    q.enqueue(&[e], WINDOW).await.expect("enqueue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery.webhook, "ok");
    let dead = q.dead_letters("bot-a", 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "plugin failed: trap");
    assert!(dead[0].attempts.is_empty());
    // It has no body to send: replay leaves it, by name or with the rest.
    let id = dead[0].delivery.id.clone();
    assert_eq!(q.replay("bot-a", Some(&id)).await.expect("replay"), 0);
    assert_eq!(q.replay("bot-a", None).await.expect("replay"), 0);
    assert!(q.claim(10, 10, LEASE).await.expect("claim").jobs.is_empty());
    assert_eq!(q.dead_letters("bot-a", 10).await.expect("list").len(), 1);
}

async fn an_event_with_no_deliveries_still_dedupes(q: &dyn Queue, _clock: &Clock) {
    let empty = NewEvent {
        bot: "bot-a".into(),
        event_id: "dropped-by-all".into(),
        deliveries: vec![],
    };
    assert_eq!(
        q.enqueue(std::slice::from_ref(&empty), WINDOW)
            .await
            .expect("enqueue")
            .accepted,
        1
    );
    assert_eq!(
        q.enqueue(&[empty], WINDOW)
            .await
            .expect("enqueue")
            .duplicates,
        1
    );
}

async fn a_deep_lane_does_not_keep_other_lanes_waiting(q: &dyn Queue, _clock: &Clock) {
    // 20 events for bot-a's webhook, then one for bot-b's: bot-b's job is
    // the newest, yet the first claim serves it, taking at most 2 per lane.
    let busy: Vec<NewEvent> = (0..20)
        .map(|i| event("bot-a", &format!("a{i}"), &["crm"]))
        .collect();
    q.enqueue(&busy, WINDOW).await.expect("enqueue");
    q.enqueue(&[event("bot-b", "b0", &["crm"])], WINDOW)
        .await
        .expect("enqueue");
    let claimed = q.claim(10, 2, LEASE).await.expect("claim").jobs;
    let of = |bot: &str| claimed.iter().filter(|c| c.delivery.bot == bot).count();
    assert_eq!((of("bot-a"), of("bot-b")), (2, 1), "{claimed:?}");
    // Within a lane, jobs go in due order (one batch: ties by id, and ids
    // are time-ordered).
    let mut rest = 0;
    loop {
        let batch = q.claim(10, 2, LEASE).await.expect("claim").jobs;
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 2, "one lane left: at most 2 per claim");
        rest += batch.len();
    }
    assert_eq!(rest, 18);
}

async fn a_held_lane_is_skipped_until_its_hold_ends(q: &dyn Queue, clock: &Clock) {
    q.enqueue(
        &[
            event("bot-a", "a1", &["crm"]),
            event("bot-b", "b1", &["crm"]),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let hold_ms = 800;
    let until = clock.now_ms() + hold_ms;
    q.hold("bot-a", "crm", until).await.expect("hold");
    // A shorter hold does not shorten it.
    q.hold("bot-a", "crm", clock.now_ms() + 1)
        .await
        .expect("hold");
    // Jobs enqueued during the hold wait too.
    q.enqueue(&[event("bot-a", "a2", &["crm"])], WINDOW)
        .await
        .expect("enqueue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].delivery.bot, "bot-b");
    let depth = q.depth().await.expect("depth");
    assert_eq!(
        (depth.pending, depth.due),
        (3, 0),
        "held jobs are pending, not due"
    );
    assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));
    let next = q.next_due_ms().await.expect("next due").expect("some");
    assert!(
        next >= until,
        "a worker sleeps until the hold ends: {next} < {until}"
    );
    let lane = |pending, held_until_ms| LaneState {
        pending,
        held_until_ms,
    };
    assert_eq!(
        q.lanes(&[("bot-a", "crm"), ("bot-a", "other"), ("bot-b", "crm")])
            .await
            .expect("lanes"),
        vec![lane(2, Some(until)), lane(0, None), lane(0, None)],
        "the console sees each lane's pending work and hold"
    );
    assert_eq!(q.lanes(&[]).await.expect("lanes"), vec![]);

    // A claimed job put back while its lane is held stays out too: what a
    // worker does when the webhook's endpoint is down.
    clock.advance(Duration::from_millis(hold_ms + 50));
    assert_eq!(
        q.lanes(&[("bot-a", "crm")]).await.expect("lanes"),
        vec![lane(2, None)],
        "a hold that ended is not shown"
    );
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 2, "both of bot-a's jobs after the hold");
    q.hold("bot-a", "crm", clock.now_ms() + 60_000)
        .await
        .expect("hold");
    for c in &claimed {
        assert!(
            q.retry(&c.lease, None, clock.now_ms())
                .await
                .expect("retry")
        );
    }
    assert!(q.claim(10, 10, LEASE).await.expect("claim").jobs.is_empty());
    assert_eq!(q.depth().await.expect("depth").pending, 2);
}

async fn an_enqueue_hands_off_only_what_a_claim_would_take_first(q: &dyn Queue, clock: &Clock) {
    let take = |max| Handoff {
        max,
        per_lane: 1,
        lease: LEASE,
    };
    let lease_of = |jobs: &[Claimed]| -> BTreeSet<(String, String)> {
        jobs.iter()
            .map(|c| (c.delivery.event_id.clone(), c.delivery.webhook.clone()))
            .collect()
    };
    let pair = |e: &str, w: &str| (e.to_string(), w.to_string());
    // Nothing due: new deliveries are leased at once, at most `per_lane`
    // of one lane; the rest waits for a claim.
    let first = event("bot-a", "e1", &["crm", "bi"]);
    let out = q
        .enqueue_leasing(
            &[first.clone(), event("bot-a", "e2", &["crm"])],
            WINDOW,
            take(10),
        )
        .await
        .expect("enqueue");
    assert_eq!(out.accepted, 2);
    assert_eq!(
        lease_of(&out.leased),
        BTreeSet::from([pair("e1", "crm"), pair("e1", "bi")])
    );
    for leased in &out.leased {
        let sent = first
            .deliveries
            .iter()
            .find(|d| d.delivery().id == leased.delivery.id)
            .expect("one of e1's");
        assert_eq!(&leased.delivery, sent.delivery(), "handed off intact");
        assert_eq!(leased.attempts, 0);
    }
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(
        lease_of(&claimed),
        BTreeSet::from([pair("e2", "crm")]),
        "a handed-off delivery is not claimed again while its lease lasts"
    );
    assert_eq!(q.depth().await.expect("depth").pending, 3);
    // A handed-off lease is fenced like a claimed one.
    let (crm, bi) = {
        let by = |w: &str| {
            out.leased
                .iter()
                .find(|c| c.delivery.webhook == w)
                .expect("leased")
                .clone()
        };
        (by("crm"), by("bi"))
    };
    assert!(q.ack(&crm.lease, None).await.expect("ack"));
    assert!(
        !q.ack(&crm.lease, None).await.expect("ack"),
        "acked once only"
    );
    assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));

    // A dispatcher that dies holding a hand-off loses nothing: the lease
    // ends and a claim takes the delivery, whose old lease is then stale.
    clock.advance(LEASE + Duration::from_secs(1));
    let again = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(lease_of(&again), BTreeSet::from([pair("e1", "bi")]));
    assert!(!q.ack(&bi.lease, None).await.expect("stale ack"));
    assert!(q.ack(&again[0].lease, None).await.expect("ack"));
    assert_eq!(q.depth().await.expect("depth").pending, 0);

    // Something due already: a claim would take it first, so nothing is
    // handed off.
    q.enqueue(&[event("bot-a", "e3", &["crm"])], WINDOW)
        .await
        .expect("enqueue");
    let out = q
        .enqueue_leasing(&[event("bot-a", "e4", &["bi"])], WINDOW, take(10))
        .await
        .expect("enqueue");
    assert!(out.leased.is_empty(), "{:?}", out.leased);
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(
        lease_of(&claimed),
        BTreeSet::from([pair("e3", "crm"), pair("e4", "bi")])
    );
    for c in &claimed {
        assert!(q.ack(&c.lease, None).await.expect("ack"));
    }

    // A held lane, deliveries dead at birth, and deliveries ordered per
    // message are never handed off; `max` bounds the rest.
    q.hold("bot-a", "held", clock.now_ms() + 60_000)
        .await
        .expect("hold");
    let mut dead = event("bot-a", "e5", &["dead"]);
    dead.deliveries = dead
        .deliveries
        .into_iter()
        .map(|d| NewDelivery::Dead(d.delivery().clone(), "render failed".into()))
        .collect();
    let out = q
        .enqueue_leasing(
            &[
                event("bot-a", "e6", &["held", "x", "y"]),
                dead,
                ordered("e7", "m1", Status::Sent, Order::PerMessage),
            ],
            WINDOW,
            take(1),
        )
        .await
        .expect("enqueue");
    assert_eq!(out.accepted, 3);
    assert_eq!(out.leased.len(), 1, "{:?}", out.leased);
    assert!(
        ["x", "y"].contains(&out.leased[0].delivery.webhook.as_str()),
        "{:?}",
        out.leased
    );
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(
        claimed.len(),
        2,
        "the other of x and y, and e7: {claimed:?}"
    );
    assert!(claimed.iter().all(|c| c.delivery.webhook != "held"));
    assert_eq!(q.depth().await.expect("depth").pending, 4);
}

async fn unordered_acks_are_written_with_the_next_write(q: &dyn Queue, _clock: &Clock) {
    q.enqueue(&[event("bot-a", "u1", &["crm", "bi"])], WINDOW)
        .await
        .expect("enqueue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 2);
    let delivered = Attempt {
        at_ms: now_ms(),
        duration_ms: 3,
        outcome: AttemptOutcome::Status(200),
        response: None,
    };
    // Two acks that may wait, and an enqueue coming meanwhile: it carries
    // them in its own write (or they go on their own when their wait ends).
    let (first, second, enqueued) = tokio::join!(
        q.ack_unordered(&claimed[0].lease, Some(&delivered)),
        q.ack_unordered(&claimed[1].lease, Some(&delivered)),
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            q.enqueue(&[event("bot-a", "u2", &["crm"])], WINDOW).await
        }
    );
    assert!(first.expect("ack") && second.expect("ack"));
    assert_eq!(enqueued.expect("enqueue").accepted, 1);
    assert_eq!(q.depth().await.expect("depth").pending, 1, "only u2 left");
    assert!(
        !q.ack_unordered(&claimed[0].lease, None)
            .await
            .expect("stale ack"),
        "acked once only"
    );
    let next = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].delivery.event_id, "u2");
    // With no write to ride with, an ack still goes within its wait.
    assert!(
        q.ack_unordered(&next[0].lease, None)
            .await
            .expect("ack alone")
    );
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

async fn wait_for_work_wakes_on_enqueue(q: Arc<dyn Queue>) {
    let waiter = {
        let q = Arc::clone(&q);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            q.wait_for_work(Duration::from_secs(20)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.enqueue(&[event("bot-a", "wake", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken well before its 20 s timeout")
        .expect("task");
    assert!(waited < Duration::from_secs(20));
}

/// Hands the queue cases every backend runs to `$run!(<head> case, ...)`:
/// one list for standalone Redis, the embedded store and the cluster.
macro_rules! queue_cases {
    ($run:ident!($($head:tt)*)) => {
        $run!($($head)*
            per_message_order_sends_one_at_a_time_earliest_status_first,
            suppress_regressions_drops_a_status_older_than_one_delivered,
            enqueued_jobs_are_claimed_once_with_body_intact,
            claims_follow_due_time,
            an_expired_lease_is_reclaimed_and_the_stale_holder_is_fenced,
            a_retry_without_attempt_postpones_without_counting,
            dead_letters_keep_every_attempt_and_replay_restarts_the_count,
            duplicates_are_counted_and_queue_nothing,
            deliveries_born_dead_are_listed_not_sent,
            an_event_with_no_deliveries_still_dedupes,
            a_deep_lane_does_not_keep_other_lanes_waiting,
            a_held_lane_is_skipped_until_its_hold_ends,
            an_enqueue_hands_off_only_what_a_claim_would_take_first,
            unordered_acks_are_written_with_the_next_write,
            a_batch_bigger_than_one_redis_command_moves_whole,
        );
    };
}

/// The delivery-log cases, handed on the same way (to logged backends).
macro_rules! log_cases {
    ($run:ident!($($head:tt)*)) => {
        $run!($($head)*
            a_suppressed_delivery_is_in_the_log_and_can_be_resent,
            the_log_pages_newest_first_through_ties_and_filters,
            one_delivery_shows_its_body_and_every_attempt,
            resend_queues_a_delivered_or_dead_delivery_again,
            the_log_forgets_past_its_retention_and_its_cap,
            a_sweep_trims_the_log_of_a_bot_that_stopped_sending,
            a_batch_bigger_than_one_redis_command_moves_whole_with_the_log_on,
        );
    };
}

macro_rules! conformance {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::$backend().await;
                    super::$case(&*backend.queue, &backend.clock).await;
                }
            )*

            #[tokio::test]
            async fn wait_for_work_wakes_on_enqueue() {
                let backend = super::$backend().await;
                super::wait_for_work_wakes_on_enqueue(backend.queue.clone()).await;
            }
        }
    };
}

queue_cases!(conformance!(redis_backend:));

log_cases!(conformance!(redis_logged_backend:));

log_cases!(conformance!(embedded_logged_backend:));

queue_cases!(conformance!(embedded_backend:));

// ---- Per-message order ------------------------------------------------------

/// An event about `message` with status `status`, for webhook `crm` of
/// `bot-a` ordering per message as `order` says.
fn ordered(event_id: &str, message: &str, status: Status, order: Order) -> NewEvent {
    let mut e = about("bot-a", event_id, message, "593", status, &["crm"]);
    for d in &mut e.deliveries {
        let (NewDelivery::Pending(d) | NewDelivery::Dead(d, _)) = d;
        d.order = order;
    }
    e
}

/// Claims everything due and returns it as (message, status) pairs.
async fn claim_all(q: &dyn Queue) -> Vec<Claimed> {
    let mut all = Vec::new();
    loop {
        let jobs = q.claim(50, 50, LEASE).await.expect("claim").jobs;
        if jobs.is_empty() {
            return all;
        }
        all.extend(jobs);
    }
}

fn statuses(jobs: &[Claimed], message: &str) -> Vec<Status> {
    jobs.iter()
        .filter(|j| j.delivery.message_id.as_deref() == Some(message))
        .map(|j| j.delivery.status)
        .collect()
}

async fn per_message_order_sends_one_at_a_time_earliest_status_first(q: &dyn Queue, clock: &Clock) {
    let per = Order::PerMessage;
    // Meta's statuses of one message arrive out of order, close together.
    q.enqueue(
        &[
            ordered("a-read", "wamid.A", Status::Read, per),
            ordered("a-delivered", "wamid.A", Status::Delivered, per),
            ordered("b-sent", "wamid.B", Status::Sent, per),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    q.enqueue(&[ordered("a-sent", "wamid.A", Status::Sent, per)], WINDOW)
        .await
        .expect("enqueue");
    // One of each message at a time, the earliest in the lifecycle first;
    // another message is not held up.
    let mut sent_a = Vec::new();
    let first = claim_all(q).await;
    assert_eq!(statuses(&first, "wamid.B"), [Status::Sent]);
    for job in first
        .iter()
        .filter(|j| j.delivery.message_id.as_deref() == Some("wamid.B"))
    {
        assert!(q.ack(&job.lease, None).await.expect("ack"));
    }
    let mut head = first
        .into_iter()
        .filter(|j| j.delivery.message_id.as_deref() == Some("wamid.A"))
        .collect::<Vec<_>>();
    while let [job] = head.as_slice() {
        sent_a.push(job.delivery.status);
        assert!(q.ack(&job.lease, None).await.expect("ack"));
        head = claim_all(q).await;
    }
    assert!(head.is_empty(), "{} at once", head.len());
    assert_eq!(sent_a, [Status::Sent, Status::Delivered, Status::Read]);

    // A status arriving while its message's delivery is being sent waits
    // for it, even when it ranks earlier: order = one at a time.
    q.enqueue(&[ordered("c-read", "wamid.C", Status::Read, per)], WINDOW)
        .await
        .expect("enqueue");
    let read = claim_all(q).await;
    assert_eq!(statuses(&read, "wamid.C"), [Status::Read]);
    q.enqueue(
        &[ordered("c-delivered", "wamid.C", Status::Delivered, per)],
        WINDOW,
    )
    .await
    .expect("enqueue");
    assert!(claim_all(q).await.is_empty(), "waits for the leased read");
    // A retry keeps the message's turn: still nothing while read waits.
    assert!(
        q.retry(
            &read[0].lease,
            Some(&failed_attempt(503)),
            clock.now_ms() + 60_000
        )
        .await
        .expect("retry")
    );
    assert!(
        claim_all(q).await.is_empty(),
        "the read waiting for its retry keeps the turn"
    );
    clock.advance(Duration::from_secs(61));
    let again = claim_all(q).await;
    assert_eq!(statuses(&again, "wamid.C"), [Status::Read]);
    assert!(
        q.dead_letter(&again[0].lease, None, "gave up")
            .await
            .expect("dead")
    );
    // Its end, delivered or dead, lets the next one go (not suppressed: this
    // webhook only orders).
    let next = claim_all(q).await;
    assert_eq!(statuses(&next, "wamid.C"), [Status::Delivered]);
    assert!(q.ack(&next[0].lease, None).await.expect("ack"));
    // Deliveries without a message id are never held back.
    let mut lone = event("bot-a", "conn", &["crm"]);
    for d in &mut lone.deliveries {
        let (NewDelivery::Pending(d) | NewDelivery::Dead(d, _)) = d;
        d.order = per;
    }
    q.enqueue(&[lone.clone(), event("bot-a", "conn2", &["crm"])], WINDOW)
        .await
        .expect("enqueue");
    assert_eq!(claim_all(q).await.len(), 2);
}

async fn suppress_regressions_drops_a_status_older_than_one_delivered(q: &dyn Queue, _c: &Clock) {
    let strict = Order::PerMessageNoRegressions;
    q.enqueue(&[ordered("read", "wamid.S", Status::Read, strict)], WINDOW)
        .await
        .expect("enqueue");
    let read = claim_all(q).await;
    assert!(q.ack(&read[0].lease, None).await.expect("ack"));
    // delivered after read: a regression, never sent; replied still goes.
    q.enqueue(
        &[
            ordered("delivered", "wamid.S", Status::Delivered, strict),
            ordered("replied", "wamid.S", Status::Replied, strict),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claim = q.claim(50, 50, LEASE).await.expect("claim");
    assert!(claim.jobs.is_empty(), "the regression is not handed out");
    assert_eq!(claim.suppressed, [("bot-a".to_string(), "crm".to_string())]);
    let rest = claim_all(q).await;
    assert_eq!(statuses(&rest, "wamid.S"), [Status::Replied]);
    assert!(q.ack(&rest[0].lease, None).await.expect("ack"));
    assert_eq!(q.depth().await.expect("depth").pending, 0);
    // A regression waiting behind a head in flight is suppressed at its turn.
    q.enqueue(&[ordered("sent", "wamid.S", Status::Sent, strict)], WINDOW)
        .await
        .expect("enqueue");
    let claim = q.claim(50, 50, LEASE).await.expect("claim");
    assert_eq!((claim.jobs.len(), claim.suppressed.len()), (0, 1));
}

async fn a_suppressed_delivery_is_in_the_log_and_can_be_resent(q: &dyn Queue, _c: &Clock) {
    let strict = Order::PerMessageNoRegressions;
    q.enqueue(&[ordered("read", "wamid.L", Status::Read, strict)], WINDOW)
        .await
        .expect("enqueue");
    let read = claim_all(q).await;
    assert!(q.ack(&read[0].lease, None).await.expect("ack"));
    let late = ordered("delivered", "wamid.L", Status::Delivered, strict);
    let id = late.deliveries[0].delivery().id.clone();
    q.enqueue(&[late], WINDOW).await.expect("enqueue");
    assert_eq!(
        q.claim(50, 50, LEASE)
            .await
            .expect("claim")
            .suppressed
            .len(),
        1
    );
    let record = q
        .delivery("bot-a", &id)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(record.outcome, Outcome::Suppressed);
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("suppressed:"))
    );
    assert!(record.attempts.is_empty());
    let query = DeliveryQuery {
        outcome: Some(Outcome::Suppressed),
        limit: 10,
        ..DeliveryQuery::default()
    };
    let page = q.deliveries("bot-a", &query).await.expect("page");
    assert_eq!(ids(&page.deliveries), [id.as_str()]);
    // An operator's resend sends it after all, outside the order.
    assert_eq!(
        q.resend("bot-a", &id).await.expect("resend"),
        Resend::Queued
    );
    let sent = claim_all(q).await;
    assert_eq!(statuses(&sent, "wamid.L"), [Status::Delivered]);
}

// ---- The delivery log ------------------------------------------------------

/// How long the logged backends keep deliveries, and how many per bot.
const RETENTION: Duration = Duration::from_secs(3600);
const MAX_PER_BOT: usize = 20;

fn logged() -> History {
    History {
        retention: RETENTION,
        max_per_bot: MAX_PER_BOT,
    }
}

async fn redis_logged_backend() -> Backend {
    redis_backend_with(logged()).await
}

async fn embedded_logged_backend() -> Backend {
    embedded_backend_with(logged()).await
}

/// An event about `message` to `recipient`, for webhooks `webhooks`.
fn about(
    bot: &str,
    event_id: &str,
    message: &str,
    recipient: &str,
    status: Status,
    webhooks: &[&str],
) -> NewEvent {
    let mut e = event(bot, event_id, webhooks);
    for d in &mut e.deliveries {
        let (NewDelivery::Pending(d) | NewDelivery::Dead(d, _)) = d;
        d.message_id = Some(message.into());
        d.recipient = Some(recipient.into());
        d.status = status;
    }
    e
}

/// `e` with every delivery created at `created_ms` (the log's time).
fn created_at(mut e: NewEvent, created_ms: u64) -> NewEvent {
    for d in &mut e.deliveries {
        let (NewDelivery::Pending(d) | NewDelivery::Dead(d, _)) = d;
        d.created_ms = created_ms;
    }
    e
}

/// Every page of `query`, followed by its cursors to the end.
async fn every_page(q: &dyn Queue, bot: &str, mut query: DeliveryQuery) -> Vec<DeliveryRecord> {
    let mut found = Vec::new();
    for _ in 0..1000 {
        let page = q.deliveries(bot, &query).await.expect("page");
        assert!(
            page.deliveries.len() <= query.limit,
            "a page holds at most its limit"
        );
        found.extend(page.deliveries);
        match page.next_cursor {
            Some(cursor) => {
                query.cursor = Some(Cursor::decode(&cursor).expect("a cursor reads back"))
            }
            None => return found,
        }
    }
    panic!("the pages never ended");
}

fn ids(records: &[DeliveryRecord]) -> Vec<&str> {
    records.iter().map(|r| r.delivery.id.as_str()).collect()
}

async fn the_log_pages_newest_first_through_ties_and_filters(q: &dyn Queue, clock: &Clock) {
    // Seven deliveries share a millisecond: pages must cut through the tie
    // without skipping or repeating anything.
    let tied_at = clock.now_ms();
    let tied: Vec<NewEvent> = (0..7)
        .map(|n| {
            let e = about(
                "bot-a",
                &format!("t{n}"),
                &format!("wamid.{}", n % 3),
                "+5930001",
                Status::Sent,
                &["crm"],
            );
            created_at(e, tied_at)
        })
        .collect();
    q.enqueue(&tied, WINDOW).await.expect("enqueue");
    let later = [
        about(
            "bot-a",
            "l0",
            "wamid.0",
            "+5930002",
            Status::Read,
            &["crm", "bi"],
        ),
        about(
            "bot-a",
            "l1",
            "wamid.9",
            "+5930002",
            Status::Failed,
            &["bi"],
        ),
    ]
    .map(|e| created_at(e, tied_at + 5));
    q.enqueue(&later, WINDOW).await.expect("enqueue");
    q.enqueue(
        &[about(
            "bot-b",
            "x",
            "wamid.0",
            "+5930001",
            Status::Sent,
            &["crm"],
        )],
        WINDOW,
    )
    .await
    .expect("enqueue");

    let all = DeliveryQuery {
        limit: 100,
        ..DeliveryQuery::default()
    };
    let whole = q.deliveries("bot-a", &all).await.expect("page");
    assert_eq!(
        whole.deliveries.len(),
        10,
        "7 + 3 deliveries of bot-a, none of bot-b"
    );
    assert_eq!(whole.next_cursor, None, "one page held everything");
    assert!(
        whole.deliveries[..3]
            .iter()
            .all(|r| r.delivery.event_id.starts_with('l')),
        "newest first"
    );
    assert!(
        whole
            .deliveries
            .iter()
            .all(|r| r.outcome == Outcome::Pending && r.attempts.is_empty())
    );
    assert!(
        whole
            .deliveries
            .iter()
            .all(|r| r.delivery.body.is_empty() && r.body_bytes > 0),
        "pages leave bodies out"
    );

    for limit in [1, 2, 3, 4, 9] {
        let paged = every_page(
            q,
            "bot-a",
            DeliveryQuery {
                limit,
                ..all.clone()
            },
        )
        .await;
        assert_eq!(
            ids(&paged),
            ids(&whole.deliveries),
            "pages of {limit} walk the same log in the same order"
        );
    }

    let count = |query: DeliveryQuery| async move {
        every_page(q, "bot-a", DeliveryQuery { limit: 4, ..query }).await
    };
    let by_message = count(DeliveryQuery {
        message_id: Some("wamid.0".into()),
        ..all.clone()
    })
    .await;
    // t0, t3, t6 and l0 (two webhooks).
    assert_eq!(by_message.len(), 5);
    assert!(
        by_message
            .iter()
            .all(|r| r.delivery.message_id.as_deref() == Some("wamid.0"))
    );
    let by_recipient = count(DeliveryQuery {
        recipient: Some("+5930002".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(by_recipient.len(), 3);
    let both = count(DeliveryQuery {
        message_id: Some("wamid.0".into()),
        recipient: Some("+5930002".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(both.len(), 2, "every filter given must match");
    let bi = count(DeliveryQuery {
        webhook: Some("bi".into()),
        ..all.clone()
    })
    .await;
    assert_eq!(bi.len(), 2);
    let failed = count(DeliveryQuery {
        status: Some(Status::Failed),
        ..all.clone()
    })
    .await;
    assert_eq!(
        ids(&failed),
        vec![
            whole
                .deliveries
                .iter()
                .find(|r| r.delivery.event_id == "l1")
                .expect("l1")
                .delivery
                .id
                .as_str()
        ]
    );
    assert!(
        count(DeliveryQuery {
            message_id: Some("wamid.none".into()),
            ..all.clone()
        })
        .await
        .is_empty()
    );

    // The time range, on the queue's clock: `until` the tied seven's
    // millisecond leaves them, `since` the next one the later three.
    let early = count(DeliveryQuery {
        until_ms: Some(tied_at),
        ..all.clone()
    })
    .await;
    assert_eq!(early.len(), 7);
    assert!(early.iter().all(|r| r.delivery.event_id.starts_with('t')));
    let late = count(DeliveryQuery {
        since_ms: Some(tied_at + 1),
        ..all.clone()
    })
    .await;
    assert_eq!(late.len(), 3);
    assert!(late.iter().all(|r| r.delivery.event_id.starts_with('l')));
    let none = count(DeliveryQuery {
        since_ms: Some(clock.now_ms() + 60_000),
        ..all.clone()
    })
    .await;
    assert!(none.is_empty(), "nothing was created in the future");

    // Outcomes follow the queue: ack one, dead-letter one.
    let claimed = q.claim(100, 100, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 11);
    let (a, b) = (&claimed[0], &claimed[1]);
    assert!(
        q.ack(
            &a.lease,
            Some(&Attempt {
                response: Some("thanks".into()),
                ..failed_attempt(200)
            })
        )
        .await
        .expect("ack")
    );
    assert!(
        q.dead_letter(&b.lease, Some(&failed_attempt(410)), "410 Gone")
            .await
            .expect("dead")
    );
    let delivered = every_page(
        q,
        &a.delivery.bot,
        DeliveryQuery {
            outcome: Some(Outcome::Delivered),
            ..all.clone()
        },
    )
    .await;
    assert_eq!(ids(&delivered), vec![a.delivery.id.as_str()]);
    assert_eq!(delivered[0].attempts[0].response.as_deref(), Some("thanks"));
    assert!(delivered[0].finished_ms.is_some());
    let dead = every_page(
        q,
        &b.delivery.bot,
        DeliveryQuery {
            outcome: Some(Outcome::Dead),
            ..all.clone()
        },
    )
    .await;
    assert_eq!(ids(&dead), vec![b.delivery.id.as_str()]);
    assert_eq!(dead[0].reason.as_deref(), Some("410 Gone"));
}

async fn one_delivery_shows_its_body_and_every_attempt(q: &dyn Queue, clock: &Clock) {
    q.enqueue(
        &[about(
            "bot-a",
            "e1",
            "wamid.1",
            "+5930001",
            Status::Read,
            &["crm"],
        )],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let job = q.claim(10, 10, LEASE).await.expect("claim").jobs.remove(0);
    let refused = Attempt {
        response: Some("{\"error\":\"busy\"}".into()),
        ..failed_attempt(503)
    };
    assert!(
        q.retry(&job.lease, Some(&refused), clock.now_ms())
            .await
            .expect("retry")
    );
    let job = q.claim(10, 10, LEASE).await.expect("claim").jobs.remove(0);
    let ok = Attempt {
        response: Some("ok".into()),
        ..failed_attempt(202)
    };
    assert!(q.ack(&job.lease, Some(&ok)).await.expect("ack"));

    let record = q
        .delivery("bot-a", &job.delivery.id)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(
        record.delivery, job.delivery,
        "the stored delivery, body included"
    );
    assert_eq!(record.outcome, Outcome::Delivered);
    assert_eq!(record.attempts, vec![refused, ok]);
    assert_eq!(record.body_bytes, job.delivery.body.len());
    assert_eq!(
        q.delivery("bot-b", &job.delivery.id).await.expect("read"),
        None,
        "another bot's id is not found"
    );
    assert_eq!(
        q.delivery("bot-a", "msg_unknown").await.expect("read"),
        None
    );
    assert_eq!(
        q.depth().await.expect("depth").pending,
        0,
        "a logged delivery is not work"
    );
}

async fn resend_queues_a_delivered_or_dead_delivery_again(q: &dyn Queue, _clock: &Clock) {
    let mut e = about(
        "bot-a",
        "e1",
        "wamid.1",
        "+5930001",
        Status::Read,
        &["crm", "bi"],
    );
    e.deliveries.push(NewDelivery::Dead(
        delivery("bot-a", "e1", "broken"),
        "plugin failed: trap".into(),
    ));
    q.enqueue(&[e], WINDOW).await.expect("enqueue");
    let mut jobs = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    jobs.sort_by(|a, b| a.delivery.webhook.cmp(&b.delivery.webhook));
    let (bi, crm) = (&jobs[0], &jobs[1]);
    assert_eq!(
        q.resend("bot-a", &bi.delivery.id).await.expect("resend"),
        Resend::AlreadyPending,
        "a leased job is still pending"
    );
    assert!(
        q.ack(&bi.lease, Some(&failed_attempt(200)))
            .await
            .expect("ack")
    );
    assert!(
        q.dead_letter(&crm.lease, Some(&failed_attempt(410)), "410 Gone")
            .await
            .expect("dead")
    );
    let broken = q
        .dead_letters("bot-a", 10)
        .await
        .expect("dead")
        .into_iter()
        .find(|d| d.delivery.webhook == "broken")
        .expect("born dead");

    assert_eq!(
        q.resend("bot-a", &broken.delivery.id)
            .await
            .expect("resend"),
        Resend::NothingToSend
    );
    assert_eq!(
        q.resend("bot-b", &bi.delivery.id).await.expect("resend"),
        Resend::NotFound,
        "only its own bot may resend it"
    );
    assert_eq!(
        q.resend("bot-a", "msg_unknown").await.expect("resend"),
        Resend::NotFound
    );
    assert_eq!(
        q.resend("bot-a", &bi.delivery.id).await.expect("resend"),
        Resend::Queued
    );
    assert_eq!(
        q.resend("bot-a", &crm.delivery.id).await.expect("resend"),
        Resend::Queued
    );
    assert_eq!(
        q.dead_letters("bot-a", 10).await.expect("dead").len(),
        1,
        "the resent dead letter left the list"
    );

    let mut again = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    again.sort_by(|a, b| a.delivery.webhook.cmp(&b.delivery.webhook));
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].delivery, bi.delivery, "same id and bytes");
    assert_eq!(again[1].delivery, crm.delivery);
    assert!(
        again.iter().all(|j| j.attempts == 0),
        "a resend gets a full schedule"
    );
    let record = q
        .delivery("bot-a", &bi.delivery.id)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(record.outcome, Outcome::Pending);
    assert_eq!(record.attempts.len(), 1, "past attempts stay in the log");
    for job in &again {
        assert!(
            q.ack(&job.lease, Some(&failed_attempt(200)))
                .await
                .expect("ack")
        );
    }
    let record = q
        .delivery("bot-a", &crm.delivery.id)
        .await
        .expect("read")
        .expect("logged");
    assert_eq!(record.outcome, Outcome::Delivered);
    assert_eq!(record.attempts.len(), 2);
}

async fn the_log_forgets_past_its_retention_and_its_cap(q: &dyn Queue, clock: &Clock) {
    q.enqueue(
        &[about(
            "bot-a",
            "old",
            "wamid.old",
            "+5930001",
            Status::Sent,
            &["crm"],
        )],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let old = q.claim(10, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert!(
        q.ack(&old.lease, Some(&failed_attempt(200)))
            .await
            .expect("ack")
    );
    let all = DeliveryQuery {
        limit: 100,
        ..DeliveryQuery::default()
    };
    assert_eq!(
        q.deliveries("bot-a", &all)
            .await
            .expect("page")
            .deliveries
            .len(),
        1
    );

    // Past the retention it is gone to readers at once, before any write
    // gets round to removing it.
    clock.advance(RETENTION + Duration::from_secs(1));
    assert!(
        q.deliveries("bot-a", &all)
            .await
            .expect("page")
            .deliveries
            .is_empty()
    );
    let by_message = DeliveryQuery {
        message_id: Some("wamid.old".into()),
        ..all.clone()
    };
    assert!(
        q.deliveries("bot-a", &by_message)
            .await
            .expect("page")
            .deliveries
            .is_empty()
    );
    assert_eq!(
        q.delivery("bot-a", &old.delivery.id).await.expect("read"),
        None
    );
    assert_eq!(
        q.resend("bot-a", &old.delivery.id).await.expect("resend"),
        Resend::NotFound
    );

    // Past the cap the oldest go first; pending ones are still sent.
    let base = clock.now_ms();
    let many: Vec<NewEvent> = (0..MAX_PER_BOT + 5)
        .map(|n| {
            let e = about(
                "bot-a",
                &format!("n{n}"),
                "wamid.n",
                "+5930001",
                Status::Sent,
                &["crm"],
            );
            created_at(e, base + n as u64)
        })
        .collect();
    for chunk in many.chunks(5) {
        q.enqueue(chunk, WINDOW).await.expect("enqueue");
    }
    let kept = every_page(
        q,
        "bot-a",
        DeliveryQuery {
            limit: 7,
            ..all.clone()
        },
    )
    .await;
    assert_eq!(kept.len(), MAX_PER_BOT);
    let mut kept_events: Vec<&str> = kept.iter().map(|r| r.delivery.event_id.as_str()).collect();
    kept_events.sort_unstable();
    assert!(
        !kept_events.contains(&"n0") && !kept_events.contains(&"n4"),
        "the oldest went first: {kept_events:?}"
    );
    assert_eq!(
        q.claim(100, 100, LEASE).await.expect("claim").jobs.len(),
        MAX_PER_BOT + 5,
        "leaving the log does not drop work"
    );
}

async fn a_sweep_trims_the_log_of_a_bot_that_stopped_sending(q: &dyn Queue, clock: &Clock) {
    q.enqueue(
        &[event("quiet", "e1", &["w"]), event("quiet", "e2", &["w"])],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claimed = q.claim(1, 1, LEASE).await.expect("claim").jobs;
    assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));
    assert_eq!(
        q.sweep_log(&["quiet"]).await.expect("sweep"),
        0,
        "nothing old yet"
    );
    clock.advance(RETENTION + Duration::from_secs(1));
    // No enqueue of this bot trims its log now: the sweep does.
    assert_eq!(q.sweep_log(&["quiet"]).await.expect("sweep"), 2);
    assert_eq!(q.sweep_log(&["quiet"]).await.expect("sweep"), 0);
    assert!(
        q.delivery("quiet", &claimed[0].delivery.id)
            .await
            .expect("read")
            .is_none()
    );
    // The pending one left the log but not the queue.
    let rest = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].delivery.event_id, "e2");
}

// ---- A record this version cannot read --------------------------------------

/// Checks a queue in which the delivery `poisoned` of `bot-a` cannot be
/// read, and `good` can: claims go on, the poisoned one becomes a dead
/// letter (left out of the listing, which still works) and never returns.
async fn a_poison_record_is_set_aside_alone(q: &dyn Queue, good: &str) {
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 1, "the readable job is claimed");
    assert_eq!(claimed[0].delivery.id, good);
    assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));
    assert!(q.claim(10, 10, LEASE).await.expect("claim").jobs.is_empty());
    assert_eq!(
        q.depth().await.expect("depth").pending,
        0,
        "nothing pending"
    );
    // The listing answers (without the unreadable letter).
    q.dead_letters("bot-a", 10).await.expect("list");
}

fn poison_pair() -> (NewEvent, String, String) {
    let e = event("bot-a", "e1", &["good", "poisoned"]);
    let id = |i: usize| e.deliveries[i].delivery().id.clone();
    let (good, poisoned) = (id(0), id(1));
    (e, good, poisoned)
}

#[tokio::test]
async fn redis_a_poison_record_is_dead_lettered_alone() {
    let server = RedisServer::start();
    let q = RedisQueue::new(&server.url(), "poison").expect("queue");
    let (e, good, poisoned) = poison_pair();
    q.enqueue(&[e], WINDOW).await.expect("enqueue");
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    redis::cmd("HSET")
        .arg(format!("{{poison}}:job:{poisoned}"))
        .arg("meta")
        .arg("{not json")
        .query_async::<()>(&mut conn)
        .await
        .expect("corrupt the record");
    a_poison_record_is_set_aside_alone(&q, &good).await;
    let dead: Vec<String> = redis::cmd("ZRANGE")
        .arg("{poison}:dead:bot-a")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("dead set");
    assert_eq!(dead, std::slice::from_ref(&poisoned));
    let reason: String = redis::cmd("HGET")
        .arg(format!("{{poison}}:job:{poisoned}"))
        .arg("reason")
        .query_async(&mut conn)
        .await
        .expect("reason");
    assert!(reason.starts_with("unreadable queue record"), "{reason}");
}

#[tokio::test]
async fn embedded_a_poison_record_is_dead_lettered_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (e, good, poisoned) = poison_pair();
    {
        let q = EmbeddedQueue::open(dir.path()).expect("open");
        q.enqueue(&[e], WINDOW).await.expect("enqueue");
    }
    {
        // The delivery's stored metadata, damaged behind the queue's back.
        const PAYLOADS: redb::TableDefinition<&str, (&[u8], &[u8])> =
            redb::TableDefinition::new("payloads");
        let db = redb::Database::open(dir.path().join("queue.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        {
            let mut payloads = txn.open_table(PAYLOADS).expect("payloads");
            payloads
                .insert(poisoned.as_str(), (b"{not json".as_slice(), b"".as_slice()))
                .expect("corrupt");
        }
        txn.commit().expect("commit");
    }
    let q = EmbeddedQueue::open(dir.path()).expect("reopen");
    a_poison_record_is_set_aside_alone(&q, &good).await;
}

// ---- Redis-specific: wake-ups between dispatchers -----------------------------

#[tokio::test]
async fn redis_wakes_other_dispatchers_but_not_itself_twice() {
    let server = RedisServer::start();
    let a = Arc::new(RedisQueue::new(&server.url(), "wake").expect("queue a"));
    let b = Arc::new(RedisQueue::new(&server.url(), "wake").expect("queue b"));
    // Both subscribed: a ping makes the connection, the wait lets the
    // subscriptions settle.
    a.ping().await.expect("ping");
    b.ping().await.expect("ping");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let waiter = |q: Arc<RedisQueue>| {
        tokio::spawn(async move {
            let started = Instant::now();
            q.wait_for_work(Duration::from_secs(20)).await;
            started.elapsed()
        })
    };
    let (on_a, on_b) = (waiter(Arc::clone(&a)), waiter(Arc::clone(&b)));
    tokio::task::yield_now().await;
    a.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    for (who, waiting) in [("the writer", on_a), ("the other dispatcher", on_b)] {
        let waited = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap_or_else(|_| panic!("{who} is woken"))
            .expect("task");
        assert!(waited < Duration::from_secs(20));
    }

    // `a` woke its own workers when it wrote; its own message coming back
    // through Redis must not wake them again.
    let started = Instant::now();
    a.wait_for_work(Duration::from_millis(500)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "woken by its own wake-up: a claim that would find nothing"
    );
}

// ---- Redis-specific: the store itself failing --------------------------------

#[tokio::test]
async fn redis_jobs_survive_a_redis_crash_and_workers_resume() {
    let mut server = RedisServer::start();
    let q = RedisQueue::new(&server.url(), "crash").expect("queue");
    q.enqueue(
        &[
            event("bot-a", "pending", &["w"]),
            event("bot-a", "leased", &["w"]),
            event("bot-a", "scheduled", &["w"]),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claimed = q
        .claim(10, 10, Duration::from_millis(500))
        .await
        .expect("claim")
        .jobs;
    let scheduled = claimed
        .iter()
        .find(|c| c.delivery.event_id == "scheduled")
        .expect("job");
    assert!(
        q.retry(
            &scheduled.lease,
            Some(&failed_attempt(500)),
            now_ms() + 1_000
        )
        .await
        .expect("retry")
    );
    let pending = claimed
        .iter()
        .find(|c| c.delivery.event_id == "pending")
        .expect("job");
    assert!(
        q.retry(&pending.lease, None, now_ms())
            .await
            .expect("return")
    );

    server.kill();
    let down = q.claim(10, 10, LEASE).await;
    assert!(matches!(&down, Err(e) if e.is_unavailable()), "{down:?}");
    server.restart();

    // The same queue object reconnects by itself; all three jobs come back.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        if let Ok(batch) = q.claim(10, 10, LEASE).await {
            for c in batch.jobs {
                seen.insert(c.delivery.event_id.clone());
                q.ack(&c.lease, None).await.expect("ack");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["leased", "pending", "scheduled"]
    );
}

#[tokio::test]
async fn redis_flush_leaves_an_empty_working_queue() {
    let server = RedisServer::start();
    let q = RedisQueue::new(&server.url(), "flush").expect("queue");
    q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .expect("flush");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .expect("script flush");
    assert!(
        q.claim(10, 10, LEASE)
            .await
            .expect("claim after flush")
            .jobs
            .is_empty()
    );
    q.enqueue(&[event("bot-a", "e2", &["w"])], WINDOW)
        .await
        .expect("enqueue after flush");
    assert_eq!(q.claim(10, 10, LEASE).await.expect("claim").jobs.len(), 1);
}

// ---- embedded-specific: the process dying, the file lock -------------------

/// Set (to the queue folder) only in the child process of
/// `embedded_jobs_survive_a_process_kill`.
const CRASH_CHILD_ENV: &str = "STATUSHOOK_QUEUE_CRASH_CHILD";
/// What the child prints once its jobs are in place.
const CRASH_CHILD_READY: &str = "STATUSHOOK-CRASH-CHILD-READY";

#[tokio::test]
async fn redis_jobs_queued_before_lanes_are_moved_into_them() {
    // The layout before lanes: one due set, job hashes without `lane`.
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let old = delivery("bot-a", "old", "crm");
    let meta = serde_json::to_vec(&old).expect("meta");
    let key = format!("{{old}}:job:{}", old.id);
    redis::pipe()
        .hset_multiple(
            &key,
            &[
                ("meta", meta.as_slice()),
                ("body", old.body.as_slice()),
                ("bot", b"bot-a".as_slice()),
            ],
        )
        .zadd("{old}:due", &old.id, now_ms() - 1_000)
        .query_async::<()>(&mut conn)
        .await
        .expect("write the old layout");

    let q = RedisQueue::new(&server.url(), "old").expect("queue");
    let claimed = q.claim(10, 10, LEASE).await.expect("claim").jobs;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivery, old);
    assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));
    let left: bool = redis::cmd("EXISTS")
        .arg("{old}:due")
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(!left, "the old due set is gone");
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

fn expected_body(event_id: &str, webhook: &str) -> Vec<u8> {
    format!("{{\"event\":\"{event_id}\",\"webhook\":\"{webhook}\"}}").into_bytes()
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child half of `embedded_jobs_survive_a_process_kill`: leaves one job
/// pending, one leased and one scheduled, says so, and waits to be killed.
/// Does nothing when run on its own.
#[tokio::test]
#[ignore = "run by embedded_jobs_survive_a_process_kill in a child process"]
async fn embedded_crash_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let q = EmbeddedQueue::open(Path::new(&dir)).expect("open");
    q.enqueue(
        &[
            event("bot-a", "pending", &["w"]),
            event("bot-a", "leased", &["w"]),
            event("bot-a", "scheduled", &["w"]),
        ],
        WINDOW,
    )
    .await
    .expect("enqueue");
    let claimed = q
        .claim(10, 10, Duration::from_secs(1))
        .await
        .expect("claim")
        .jobs;
    assert_eq!(claimed.len(), 3);
    let scheduled = claimed
        .iter()
        .find(|c| c.delivery.event_id == "scheduled")
        .expect("job");
    assert!(
        q.retry(
            &scheduled.lease,
            Some(&failed_attempt(500)),
            now_ms() + 1_000
        )
        .await
        .expect("retry")
    );
    let pending = claimed
        .iter()
        .find(|c| c.delivery.event_id == "pending")
        .expect("job");
    assert!(
        q.retry(&pending.lease, None, now_ms())
            .await
            .expect("return")
    );
    println!("{CRASH_CHILD_READY}");
    tokio::time::sleep(Duration::from_secs(300)).await;
}

#[tokio::test]
async fn embedded_jobs_survive_a_process_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([
                "--exact",
                "embedded_crash_child",
                "--nocapture",
                "--include-ignored",
            ])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child test"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(CRASH_CHILD_READY) {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the child set up its jobs and printed READY");

    // While the child lives, its folder is locked against this process.
    match EmbeddedQueue::open(dir.path()) {
        Err(error @ QueueError::Open { .. }) => {
            let message = error.to_string();
            assert!(message.contains("another statushook"), "{message}")
        }
        Err(other) => panic!("expected an Open error, got {other:?}"),
        Ok(_) => panic!("a queue folder in use by another process was opened again"),
    }

    child.0.kill().expect("SIGKILL the child");
    child.0.wait().expect("reap the child");

    let q = EmbeddedQueue::open(dir.path()).expect("reopen after the crash");
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 && Instant::now() < deadline {
        for c in q.claim(10, 10, LEASE).await.expect("claim").jobs {
            assert_eq!(
                c.delivery.body,
                expected_body(&c.delivery.event_id, "w"),
                "body intact"
            );
            assert_eq!(c.delivery.headers, [("X-Crm".to_string(), "1".to_string())]);
            assert!(q.ack(&c.lease, None).await.expect("ack"));
            seen.insert(c.delivery.event_id.clone(), c.attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            ("leased".to_string(), 0),
            ("pending".to_string(), 0),
            ("scheduled".to_string(), 1)
        ],
        "every job back, the scheduled one with its failed attempt"
    );
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

#[tokio::test]
async fn embedded_a_second_open_of_the_same_folder_fails_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let q = EmbeddedQueue::open(dir.path()).expect("open");
    q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    match EmbeddedQueue::open(dir.path()) {
        Err(error @ QueueError::Open { .. }) => {
            let message = error.to_string();
            assert!(message.contains("another statushook"), "{message}");
            assert!(
                message.contains(&dir.path().display().to_string()),
                "names the folder: {message}"
            );
        }
        Err(other) => panic!("expected an Open error, got {other:?}"),
        Ok(_) => panic!("the same queue folder was opened twice"),
    }
    q.ping().await.expect("the first queue still works");
    drop(q);
    let again = EmbeddedQueue::open(dir.path()).expect("free once the first is closed");
    assert_eq!(
        again.depth().await.expect("depth").pending,
        1,
        "and its job is still there"
    );
}

#[tokio::test]
async fn embedded_tokens_keep_rising_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::adjustable();
    let q = EmbeddedQueue::open_with_clock(dir.path(), clock.clone()).expect("open");
    q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    let before = q
        .claim(1, 10, Duration::from_millis(1))
        .await
        .expect("claim")
        .jobs
        .remove(0);
    drop(q);
    clock.advance(Duration::from_millis(20));
    let q = EmbeddedQueue::open_with_clock(dir.path(), clock).expect("reopen");
    let after = q.claim(1, 10, LEASE).await.expect("claim").jobs.remove(0);
    assert!(
        after.lease.token > before.lease.token,
        "an old lease can never match a new one"
    );
    assert!(!q.ack(&before.lease, None).await.expect("ack"));
    assert!(q.ack(&after.lease, None).await.expect("ack"));
    // Deduplication survives the restart too.
    assert_eq!(
        q.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
            .await
            .expect("enqueue")
            .duplicates,
        1
    );
}

// ---- Redis: shards and Redis Cluster ------------------------------------------

/// A queue on `servers` with `shards` shards under `prefix`.
fn sharded(servers: RedisServers, prefix: &str, shards: u16, clock: &Clock) -> RedisQueue {
    RedisQueue::open(
        RedisOptions {
            servers,
            prefix: prefix.into(),
            shards,
            wait_replicas: 0,
        },
        clock.clone(),
    )
    .expect("queue")
}

/// Runs each case against a fresh queue (its own prefix, 3 shards) on
/// `cluster`, one after the other: one cluster serves the whole suite.
macro_rules! on_cluster {
    ($cluster:expr, $history:expr; $($case:ident),* $(,)?) => {
        $(
            {
                let clock = Clock::adjustable();
                let q = sharded(
                    RedisServers::Cluster($cluster.urls()),
                    stringify!($case),
                    3,
                    &clock,
                )
                .with_history($history);
                eprintln!("cluster: {}", stringify!($case));
                $case(&q, &clock).await;
            }
        )*
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    queue_cases!(on_cluster!(cluster, History::OFF;));
    on_cluster!(cluster, History::OFF;
        a_batch_across_shards_is_accepted_and_deduplicated_per_event,
        claims_reach_every_shard_in_turn,
    );
    log_cases!(on_cluster!(cluster, logged();));
    let q = Arc::new(sharded(
        RedisServers::Cluster(cluster.urls()),
        "wake",
        3,
        &Clock::system(),
    ));
    q.ping().await.expect("ping");
    wait_for_work_wakes_on_enqueue(q).await;
}

/// Bots whose keys land in every shard of a 3-shard queue, and more.
fn many_bots(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bot-{i}")).collect()
}

async fn a_batch_across_shards_is_accepted_and_deduplicated_per_event(q: &dyn Queue, _c: &Clock) {
    let bots = many_bots(12);
    let batch: Vec<NewEvent> = bots.iter().map(|b| event(b, "e1", &["w"])).collect();
    let first = q.enqueue(&batch, WINDOW).await.expect("enqueue");
    assert_eq!(first.accepted, 12);
    // The same batch with two new events among the repeats: flags in order.
    let mut again = batch.clone();
    again.insert(3, event("bot-3", "e2", &["w"]));
    again.push(event("bot-11", "e2", &["w"]));
    let second = q.enqueue(&again, WINDOW).await.expect("enqueue");
    let mut expected = vec![true; 14];
    (expected[3], expected[13]) = (false, false);
    assert_eq!(second.duplicate, expected);
    let mut claimed = Vec::new();
    loop {
        let jobs = q.claim(5, 10, LEASE).await.expect("claim").jobs;
        if jobs.is_empty() {
            break;
        }
        claimed.extend(jobs);
    }
    let mut got: Vec<(String, String)> = claimed
        .iter()
        .map(|c| (c.delivery.bot.clone(), c.delivery.event_id.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = bots.iter().map(|b| (b.clone(), "e1".into())).collect();
    want.push(("bot-3".into(), "e2".into()));
    want.push(("bot-11".into(), "e2".into()));
    want.sort();
    assert_eq!(got, want, "every event queued once, across shards");
    for job in &claimed {
        assert!(
            q.ack(&job.lease, None).await.expect("ack"),
            "its lease finds its shard"
        );
    }
    assert_eq!(q.depth().await.expect("depth").pending, 0);
}

async fn claims_reach_every_shard_in_turn(q: &dyn Queue, _c: &Clock) {
    // 300 bots, one job each: every shard holds about 100 lanes. A claim of
    // 8 could be filled by whichever shard it asks first; in turn, four
    // claims reach three shards.
    let batch: Vec<NewEvent> = many_bots(300)
        .iter()
        .map(|b| event(b, "e1", &["w"]))
        .collect();
    q.enqueue(&batch, WINDOW).await.expect("enqueue");
    let mut bots = BTreeSet::new();
    for _ in 0..3 {
        for job in q.claim(8, 1, LEASE).await.expect("claim").jobs {
            bots.insert(job.delivery.bot.clone());
        }
    }
    let mut shards_served = BTreeSet::new();
    for bot in &bots {
        shards_served.insert(shard_index(bot));
    }
    assert_eq!(
        shards_served.len(),
        3,
        "three claims served every shard: {shards_served:?}"
    );
}

/// Which of 3 shards holds `bot`, as a queue with 3 shards places it.
fn shard_index(bot: &str) -> String {
    let clock = Clock::system();
    let probe = sharded(
        RedisServers::Standalone("redis://127.0.0.1:1/".into()),
        "probe",
        3,
        &clock,
    );
    probe.tag_of(bot).to_string()
}

#[tokio::test]
async fn redis_sharded_queue_passes_the_cross_shard_cases_on_one_server() {
    let server = RedisServer::start();
    let clock = Clock::adjustable();
    let servers = || RedisServers::Standalone(server.url());
    a_batch_across_shards_is_accepted_and_deduplicated_per_event(
        &sharded(servers(), "cross", 3, &clock),
        &clock,
    )
    .await;
    claims_reach_every_shard_in_turn(&sharded(servers(), "turns", 3, &clock), &clock).await;
}

#[tokio::test]
async fn redis_a_changed_shard_count_is_refused_naming_both() {
    let server = RedisServer::start();
    let clock = Clock::system();
    let servers = || RedisServers::Standalone(server.url());
    // Keys written before sharding count as one shard.
    let old = RedisQueue::new(&server.url(), "p").expect("queue");
    old.enqueue(&[event("bot-a", "e1", &["w"])], WINDOW)
        .await
        .expect("enqueue");
    old.claim(1, 1, LEASE).await.expect("claim");
    drop(old);
    let error = sharded(servers(), "p", 4, &clock)
        .ping()
        .await
        .expect_err("4 shards over a 1-shard queue");
    let text = error.to_string();
    assert!(
        text.contains("laid out in 1 shard(s)") && text.contains("shards = 4"),
        "{text}"
    );
    assert!(matches!(error, QueueError::Open { .. }), "{error:?}");
    // A new prefix takes the count it is first used with, then keeps it.
    sharded(servers(), "q", 4, &clock)
        .ping()
        .await
        .expect("fresh prefix");
    sharded(servers(), "q", 4, &clock)
        .ping()
        .await
        .expect("same count");
    let text = sharded(servers(), "q", 2, &clock)
        .ping()
        .await
        .expect_err("another count")
        .to_string();
    assert!(text.contains("laid out in 4 shard(s)"), "{text}");
    // Every operation says the same, not only the first.
    let q = sharded(servers(), "q", 2, &clock);
    let text = q
        .enqueue(&[event("bot-a", "e2", &["w"])], WINDOW)
        .await
        .expect_err("refused")
        .to_string();
    assert!(text.contains("laid out in 4 shard(s)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_batch_whose_later_shard_fails_keeps_the_rest_and_its_retry_doubles_nothing() {
    let mut cluster = RedisCluster::start(3, 0);
    let clock = Clock::system();
    let q = sharded(RedisServers::Cluster(cluster.urls()), "part", 3, &clock);
    let bots = many_bots(30);
    let batch: Vec<NewEvent> = bots.iter().map(|b| event(b, "e1", &["w"])).collect();
    q.ping().await.expect("ping");
    // Take down the node of one shard: the batch is refused as a whole...
    let victim = cluster.primary_of_slot(cluster.slot_of(q.tag_of("bot-0")));
    cluster.kill(victim);
    let error = q
        .enqueue(&batch, WINDOW)
        .await
        .expect_err("one shard is down");
    assert!(error.is_unavailable(), "a 503, retry later: {error}");
    // ...and once it is back, the retry queues each event exactly once.
    cluster.restart(victim);
    cluster.wait_until_ok(Duration::from_secs(30));
    let outcome = loop {
        match q.enqueue(&batch, WINDOW).await {
            Ok(outcome) => break outcome,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(
        outcome.duplicates > 0,
        "the shards written first kept theirs: {outcome:?}"
    );
    assert!(
        outcome.accepted > 0,
        "the failed shard's events were not: {outcome:?}"
    );
    assert_eq!(outcome.accepted + outcome.duplicates, 30);
    let mut ids = BTreeSet::new();
    loop {
        let jobs = q.claim(50, 50, LEASE).await.expect("claim").jobs;
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            assert!(
                ids.insert(job.delivery.bot.clone()),
                "{} twice",
                job.delivery.bot
            );
        }
    }
    assert_eq!(ids.len(), 30, "every event queued once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_the_keys_of_1000_bots_spread_over_every_primary() {
    let cluster = RedisCluster::start(3, 0);
    let clock = Clock::system();
    let q = sharded(RedisServers::Cluster(cluster.urls()), "spread", 3, &clock);
    let batch: Vec<NewEvent> = many_bots(1000)
        .iter()
        .map(|b| event(b, "e1", &["w"]))
        .collect();
    for chunk in batch.chunks(100) {
        q.enqueue(chunk, WINDOW).await.expect("enqueue");
    }
    let mut bots_per_primary = BTreeMap::new();
    for bot in many_bots(1000) {
        let port = cluster.primary_of_slot(cluster.slot_of(q.tag_of(&bot)));
        *bots_per_primary.entry(port).or_insert(0usize) += 1;
    }
    let keys: Vec<(u16, u64)> = cluster
        .primaries()
        .into_iter()
        .map(|port| {
            (
                port,
                cluster
                    .cli(port, &["dbsize"])
                    .trim()
                    .parse()
                    .expect("dbsize"),
            )
        })
        .collect();
    eprintln!(
        "1,000 bots over 3 primaries: bots per primary {bots_per_primary:?}, keys per primary {keys:?}"
    );
    assert_eq!(bots_per_primary.len(), 3, "every primary holds bots");
    assert!(
        bots_per_primary.values().all(|&n| n > 250),
        "no primary holds under a quarter: {bots_per_primary:?}"
    );
    assert!(keys.iter().all(|&(_, n)| n > 500), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wait_replicas_without_a_replica_answers_unavailable_and_keeps_the_events() {
    let server = RedisServer::start();
    let clock = Clock::system();
    let open = |wait_replicas| {
        RedisQueue::open(
            RedisOptions {
                servers: RedisServers::Standalone(server.url()),
                prefix: "waits".into(),
                shards: 2,
                wait_replicas,
            },
            clock.clone(),
        )
        .expect("queue")
    };
    let strict = Arc::new(open(1));
    // Concurrent enqueues share the WAITs; every one learns the answer.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let q = Arc::clone(&strict);
            tokio::spawn(async move {
                q.enqueue(&[event(&format!("bot-{i}"), "e1", &["w"])], WINDOW)
                    .await
            })
        })
        .collect();
    for call in calls {
        let error = call.await.expect("task").expect_err("no replica holds it");
        assert!(error.is_unavailable(), "a 503: {error}");
        assert!(
            error.to_string().contains("0 of the 1 replica(s)"),
            "{error}"
        );
    }
    // The events were written all the same: the client's retry (here
    // without the wait) finds them as duplicates.
    let again = open(0)
        .enqueue(
            &(0..4)
                .map(|i| event(&format!("bot-{i}"), "e1", &["w"]))
                .collect::<Vec<_>>(),
            WINDOW,
        )
        .await
        .expect("enqueue");
    assert_eq!(again.duplicates, 4);
}
