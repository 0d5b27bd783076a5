//! The durable queue of deliveries, between routing and delivering.
//!
//! One contract, [`Queue`], with two backends: [`redis`](RedisQueue) (any
//! number of dispatchers share it) and [`embedded`](EmbeddedQueue) (one
//! node, a redb file; a batch costs one fsync).
//! The model is the visibility timeout of RSMQ and SQS:
//!
//! - every job has a due time; [`Queue::claim`] takes due jobs and pushes
//!   their due time forward by a lease, handing out a fencing token;
//! - [`Queue::ack`], [`Queue::retry`] and [`Queue::dead_letter`] act only
//!   with the current token, each in one atomic step, so a worker whose lease
//!   ran out (and whose job another worker took) cannot ack or retry it;
//! - a dispatcher that dies simply stops renewing: its jobs become due again
//!   when the lease ends. No reaper, nothing to re-create after a restart.
//!
//! Jobs wait in one [lane] per webhook. A claim serves the lanes whose
//! oldest due job is oldest, taking at most a few jobs from each, so a
//! webhook with a deep backlog shares the workers instead of taking them in
//! turn. A lane can be [held](Queue::hold): while its endpoint's circuit
//! breaker is open (or the endpoint is saturated), one queue write sets the
//! whole lane aside, instead of every one of its jobs being claimed and put
//! back, which is what made a dead endpoint slow down everyone else.
//!
//! Enqueueing writes all deliveries of a batch and its dedup marks in one
//! atomic step, before `202` is answered.

mod clock;
mod delivery;
pub mod embedded;
mod error;
mod history;
mod pace;
pub mod redis;

pub use self::embedded::EmbeddedQueue;
pub use self::redis::{RedisOptions, RedisQueue, RedisServers};
pub use clock::Clock;
pub use delivery::{
    Attempt, AttemptOutcome, BORN_DEAD, Claimed, DeadLetter, Delivery, Lease, NewDelivery,
    NewEvent, Order, RESPONSE_EXCERPT, SUPPRESSED, lane, new_delivery_id, now_ms,
};
pub use error::QueueError;
pub use history::{
    Cursor, DeliveryPage, DeliveryQuery, DeliveryRecord, History, Outcome, Resend, SCAN_LIMIT,
};

use std::time::Duration;

/// What an enqueue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Events newly accepted (their deliveries are queued).
    pub accepted: usize,
    /// Events already accepted within the dedup window: nothing queued.
    pub duplicates: usize,
    /// Per event, in input order: whether it was a duplicate.
    pub duplicate: Vec<bool>,
    /// Deliveries leased to the caller by this enqueue, as a claim would
    /// have leased them (see [`Handoff`]); the caller must send them.
    pub leased: Vec<Claimed>,
}

/// How many of the deliveries it writes an enqueue may lease at once to
/// the dispatcher writing them, instead of leaving them for a claim.
///
/// At a moderate rate nearly every delivery is enqueued into a queue with
/// nothing else due; its claim was one more queue round trip and one more
/// wake-up of the delivery loop per event, for a job that loop was sure to
/// get. An enqueue hands a delivery off only when a claim made at that
/// moment would have taken it first: nothing else in the queue (the shard,
/// for Redis) is due, its lane is not held, and it is not waiting behind
/// its message's earlier deliveries. A handed-off delivery is leased and
/// fenced exactly like a claimed one, so a dispatcher that dies holding it
/// loses nothing: the lease ends and any dispatcher delivers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handoff {
    /// At most this many deliveries (0: none, everything waits for a claim).
    pub max: usize,
    /// At most this many of one lane, as in [`Queue::claim`].
    pub per_lane: usize,
    /// Their lease, as in [`Queue::claim`].
    pub lease: Duration,
}

impl Handoff {
    /// Leases nothing.
    pub const NONE: Handoff = Handoff {
        max: 0,
        per_lane: 0,
        lease: Duration::ZERO,
    };
}

impl Enqueued {
    /// Records the outcome of the next event.
    pub(crate) fn record(&mut self, duplicate: bool) {
        self.duplicate.push(duplicate);
        if duplicate {
            self.duplicates += 1;
        } else {
            self.accepted += 1;
        }
    }
}

/// What one claim took.
#[derive(Debug, Default)]
pub struct Claim {
    /// The leased jobs.
    pub jobs: Vec<Claimed>,
    /// When, after this claim, the earliest lane can next be claimed from
    /// (what [`Queue::next_due_ms`] would answer now): a worker with
    /// nothing more to do sleeps until then without asking again.
    pub next_due_ms: Option<u64>,
    /// The lanes (`bot`, `webhook`) of deliveries this claim suppressed
    /// instead of handing out ([`Order::PerMessageNoRegressions`]), one
    /// entry per delivery, for the metrics.
    pub suppressed: Vec<(String, String)>,
}

/// Where one webhook's lane stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaneState {
    /// Its deliveries not yet delivered nor dead (due, scheduled or leased).
    pub pending: u64,
    /// Until when it is held (its endpoint busy or down, or its rate limit
    /// reached), unix ms; `None` when it is not held now.
    pub held_until_ms: Option<u64>,
}

/// How much work is waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Deliveries not yet delivered nor dead: due, scheduled or leased.
    pub pending: u64,
    /// Of those, how many are due now (waiting for a worker).
    pub due: u64,
}

/// The durable queue contract, implemented by every backend.
///
/// Times are unix milliseconds from the dispatcher's clock. All methods fail
/// with [`QueueError::Unavailable`] while the store cannot be reached; the
/// caller retries later (ingest answers `503`).
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Atomically records the dedup mark of each event not seen within
    /// `dedup_window` and queues its deliveries (due now, or dead at birth
    /// when rendering failed). Events already marked are duplicates. Either
    /// everything is written or nothing is.
    async fn enqueue(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
    ) -> Result<Enqueued, QueueError> {
        self.enqueue_leasing(events, dedup_window, Handoff::NONE)
            .await
    }

    /// [`Queue::enqueue`], leasing to the caller up to `handoff.max` of the
    /// new deliveries that a claim made now would take first (see
    /// [`Handoff`]); they are in [`Enqueued::leased`]. A batch written in
    /// more than one step (Redis shards) leases nothing.
    async fn enqueue_leasing(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
        handoff: Handoff,
    ) -> Result<Enqueued, QueueError>;

    /// Takes up to `max` due deliveries, at most `per_lane` from each lane,
    /// leasing each for `lease`. Lanes are served oldest due job first;
    /// within a lane, jobs go in due order. Held lanes are skipped. Also
    /// says when the next job will be claimable, in the same round trip.
    async fn claim(
        &self,
        max: usize,
        per_lane: usize,
        lease: Duration,
    ) -> Result<Claim, QueueError>;

    /// Sets the lane of `webhook` of `bot` aside until `until_ms`: none of
    /// its jobs is claimed before then, whenever they are due (jobs enqueued
    /// meanwhile included). A hold never shortens an existing one. Every
    /// dispatcher sharing the queue sees it.
    async fn hold(&self, bot: &str, webhook: &str, until_ms: u64) -> Result<(), QueueError>;

    /// Marks a job delivered, recording `attempt` (the one that succeeded)
    /// if given: it stays in the [delivery log](History) until its
    /// retention ends, or is removed at once when the log is off. `false`
    /// if the lease is no longer this worker's (it ran out and another
    /// worker took the job).
    async fn ack(&self, lease: &Lease, attempt: Option<&Attempt>) -> Result<bool, QueueError>;

    /// [`Queue::ack`] for a delivery nothing waits on (not ordered per
    /// message): the store may hold the write for up to 50 ms, while writes
    /// come that often, to make it with the next one (the next enqueue's
    /// script, the next group commit), which at a moderate rate saves a
    /// round trip per delivery. A crash meanwhile loses the ack, not the
    /// delivery: it is sent again with the same `webhook-id` and bytes once
    /// its lease ends.
    async fn ack_unordered(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
    ) -> Result<bool, QueueError> {
        self.ack(lease, attempt).await
    }

    /// Makes the job due again at `due_ms`, recording `attempt` if there was
    /// one (there is none when a send was skipped: endpoint busy or its
    /// breaker open, or a shutdown returning work). `false` if the lease is
    /// stale.
    async fn retry(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        due_ms: u64,
    ) -> Result<bool, QueueError>;

    /// Moves the job to its bot's dead letters with `reason`, recording
    /// `attempt` if there was one. `false` if the lease is stale.
    async fn dead_letter(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        reason: &str,
    ) -> Result<bool, QueueError>;

    /// The newest `limit` dead letters of `bot`, newest first.
    async fn dead_letters(&self, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Queues dead letters of `bot` again (all, or the one with `id`), due
    /// now, with a fresh attempt count; their past attempts are kept. Those
    /// dead at birth ([`BORN_DEAD`]) have nothing to send and stay. Returns
    /// how many were replayed.
    async fn replay(&self, bot: &str, id: Option<&str>) -> Result<usize, QueueError>;

    /// A page of `bot`'s delivery log, newest first (see [`DeliveryQuery`]).
    async fn deliveries(
        &self,
        bot: &str,
        query: &DeliveryQuery,
    ) -> Result<DeliveryPage, QueueError>;

    /// Delivery `id` of `bot` with its body, if the log (or the queue)
    /// still has it.
    async fn delivery(&self, bot: &str, id: &str) -> Result<Option<DeliveryRecord>, QueueError>;

    /// Sends delivery `id` of `bot` again: a delivered or dead one is
    /// queued due now with a fresh attempt count (same `webhook-id` and
    /// bytes; its past attempts are kept).
    async fn resend(&self, bot: &str, id: &str) -> Result<Resend, QueueError>;

    /// Trims the delivery logs of `bots` to their retention and size
    /// bound, and returns how many entries left. Each enqueue trims its own
    /// bots' logs; this sweep, run now and then, reaches the bots that have
    /// stopped sending.
    async fn sweep_log(&self, bots: &[&str]) -> Result<usize, QueueError>;

    /// How much work is waiting.
    async fn depth(&self) -> Result<Depth, QueueError>;

    /// Where each webhook's lane stands, for the webhooks named as
    /// `(bot, webhook)` pairs, in order: one round trip however many.
    async fn lanes(&self, lanes: &[(&str, &str)]) -> Result<Vec<LaneState>, QueueError>;

    /// When the earliest pending job is due (or its lane's hold ends, if
    /// later), if any: how long a worker with nothing to do may sleep.
    async fn next_due_ms(&self) -> Result<Option<u64>, QueueError>;

    /// Waits until new work may be available (something was enqueued or
    /// replayed, here or by another dispatcher) or `max` has passed.
    async fn wait_for_work(&self, max: Duration);

    /// Checks that the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), QueueError>;
}
