//! The Redis backend: any number of dispatchers share one Redis.
//!
//! Keys (all under one hash tag, `{prefix}`, so every script touches a single
//! Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:lane:<bot>/<webhook>` | sorted set | the lane's pending job ids scored by the unix ms they are next due (leased: when the lease ends) |
//! | `{p}:lanes` | sorted set | non-empty lanes scored by when they can next be claimed from: their earliest job, or their hold if later |
//! | `{p}:hold:<lane>` | string with expiry | the unix ms a [held](Queue::hold) lane is set aside until |
//! | `{p}:job:<id>` | hash | `meta` (JSON), `body`, `bot`, `lane`, `token` while leased, `base`, `reason`/`dead_ms` when dead, `done_ms` when delivered (then it expires with the log's retention) |
//! | `{p}:att:<id>` | list | attempts, JSON, oldest first |
//! | `{p}:dead:<bot>` | sorted set | the bot's dead letters by time of death |
//! | `{p}:dedup:<bot>:<event>` | string with TTL | the dedup mark of an accepted event |
//! | `{p}:hist:<bot>` | sorted set | the bot's [delivery log](crate::queue::History): ids by creation ms |
//! | `{p}:hist:<bot>:m:<message_id>`, `...:r:<recipient>` | sorted set with expiry | the same, for one message or recipient |
//! | `{p}:seq` | counter | fencing tokens |
//! | `{p}:dispatchers` | sorted set | the live dispatchers' origins, scored by their last heartbeat (unix ms) |
//! | `{p}:wake:<origin>` | pub/sub channel | "work was enqueued", for one dispatcher |
//!
//! Every state change is one Lua script (`lua/`), so a crash between two
//! steps cannot duplicate or lose a job. The lane bookkeeping every script
//! shares lives once, in `lua/lanes.lua`, prepended to them. Scripts are
//! re-loaded automatically after a Redis restart or `SCRIPT FLUSH` (EVALSHA
//! falls back to EVAL), and nothing else needs re-creating: a flushed Redis
//! is an empty queue, not a stalled one.
//!
//! The files follow the operations, as the embedded backend's do:
//! `connect.rs` (the connection, the durability check, the key migration),
//! `scripts.rs` (the scripts and the one way to call them), `enqueue.rs`,
//! `claim.rs`, `dead.rs` (reading dead letters), `log.rs` (the delivery
//! log), and `wake.rs` (pub/sub wake-ups between dispatchers).

mod claim;
mod connect;
mod dead;
mod enqueue;
mod log;
mod scripts;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, OnceCell};

use self::scripts::Scripts;
use super::delivery::{attempt_json, millis};
use super::{
    Attempt, Claim, Clock, DeadLetter, DeliveryPage, DeliveryQuery, DeliveryRecord, Depth,
    Enqueued, History, LaneState, Lease, NewEvent, Queue, QueueError, Resend,
};

/// The Redis-backed queue.
pub struct RedisQueue {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    scripts: Scripts,
    wake: Arc<Notify>,
    subscriber: tokio::task::JoinHandle<()>,
    clock: Clock,
    /// What the delivery log keeps.
    history: History,
    /// This queue's name in the wake-ups it publishes, so its own come back
    /// ignored: it has woken its workers already, and a second wake-up would
    /// cost them a claim that finds nothing.
    origin: u64,
}

impl RedisQueue {
    /// Prepares the queue at `url` with keys under `prefix`.
    ///
    /// Does not wait for Redis: the connection is made on first use and
    /// remade after failures, so a dispatcher can start (and answer
    /// `/healthz`) before Redis is up. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`QueueError::Open`] if `url` is not a Redis URL.
    pub fn new(url: &str, prefix: &str) -> Result<Self, QueueError> {
        Self::with_clock(url, prefix, Clock::system())
    }

    /// [`RedisQueue::new`], reading the time from `clock` (tests move an
    /// adjustable one instead of sleeping).
    ///
    /// # Errors
    ///
    /// As [`RedisQueue::new`].
    pub fn with_clock(url: &str, prefix: &str, clock: Clock) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)
            .map_err(|e| QueueError::open(format!("bad Redis URL {url:?}"), e))?;
        let prefix = format!("{{{prefix}}}");
        let wake = Arc::new(Notify::new());
        let origin = fastrand::u64(..);
        let subscriber = tokio::spawn(wake::forward_wakeups(wake::Listener {
            client: client.clone(),
            prefix: prefix.clone(),
            origin,
            wake: Arc::clone(&wake),
            clock: clock.clone(),
        }));
        Ok(RedisQueue {
            client,
            conn: OnceCell::new(),
            prefix,
            scripts: Scripts::new(),
            wake,
            subscriber,
            clock,
            history: History::OFF,
            origin,
        })
    }

    /// Keeps a [delivery log](History) as `history` says (off until set).
    pub fn with_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// The log's retention in ms, as the scripts take it (0 = no log).
    fn keep_ms(&self) -> u64 {
        if self.history.is_on() {
            millis(self.history.retention)
        } else {
            0
        }
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// Redis could not be reached, or refused a command.
fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::unavailable("Redis", e)
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    async fn enqueue(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
    ) -> Result<Enqueued, QueueError> {
        let outcome = enqueue::enqueue(self, events, dedup_window).await?;
        if outcome.accepted > 0 {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn claim(
        &self,
        max: usize,
        per_lane: usize,
        lease: Duration,
    ) -> Result<Claim, QueueError> {
        claim::claim(self, max, per_lane, lease).await
    }

    async fn ack(&self, lease: &Lease, attempt: Option<&Attempt>) -> Result<bool, QueueError> {
        // The scripts take an empty string for no attempt.
        let attempt = attempt_json(&lease.id, attempt)?.unwrap_or_default();
        let done: i64 = self
            .run(&self.scripts.ack, |call| {
                call.arg(&lease.id)
                    .arg(lease.token)
                    .arg(self.clock.now_ms())
                    .arg(attempt)
                    .arg(self.keep_ms());
            })
            .await?;
        Ok(done == 1)
    }

    async fn retry(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        due_ms: u64,
    ) -> Result<bool, QueueError> {
        // The scripts take an empty string for no attempt.
        let attempt = attempt_json(&lease.id, attempt)?.unwrap_or_default();
        let done: i64 = self
            .run(&self.scripts.retry, |call| {
                call.arg(&lease.id)
                    .arg(lease.token)
                    .arg(due_ms)
                    .arg(attempt)
                    .arg(self.clock.now_ms());
            })
            .await?;
        Ok(done == 1)
    }

    async fn hold(&self, bot: &str, webhook: &str, until_ms: u64) -> Result<(), QueueError> {
        let _: i64 = self
            .run(&self.scripts.hold, |call| {
                call.arg(super::lane(bot, webhook))
                    .arg(until_ms)
                    .arg(self.clock.now_ms());
            })
            .await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        reason: &str,
    ) -> Result<bool, QueueError> {
        // The scripts take an empty string for no attempt.
        let attempt = attempt_json(&lease.id, attempt)?.unwrap_or_default();
        let done: i64 = self
            .run(&self.scripts.dead, |call| {
                call.arg(&lease.id)
                    .arg(lease.token)
                    .arg(self.clock.now_ms())
                    .arg(reason)
                    .arg(attempt);
            })
            .await?;
        Ok(done == 1)
    }

    async fn dead_letters(&self, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        dead::dead_letters(self, bot, limit).await
    }

    async fn replay(&self, bot: &str, id: Option<&str>) -> Result<usize, QueueError> {
        let replayed: usize = self
            .run(&self.scripts.replay, |call| {
                call.arg(bot)
                    .arg(self.clock.now_ms())
                    .arg(id.unwrap_or(""))
                    .arg(self.origin);
            })
            .await?;
        if replayed > 0 {
            self.wake.notify_one();
        }
        Ok(replayed)
    }

    async fn deliveries(
        &self,
        bot: &str,
        query: &DeliveryQuery,
    ) -> Result<DeliveryPage, QueueError> {
        let query = query.kept(self.history, self.clock.now_ms());
        log::page(self, bot, &query).await
    }

    async fn delivery(&self, bot: &str, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        let floor = self.history.floor_ms(self.clock.now_ms());
        Ok(log::one(self, bot, id)
            .await?
            .filter(|record| record.delivery.created_ms >= floor))
    }

    async fn resend(&self, bot: &str, id: &str) -> Result<Resend, QueueError> {
        // Only what the log still shows may be sent again (a rare admin
        // step: the extra read is worth the one rule for both backends).
        if self.delivery(bot, id).await?.is_none() {
            return Ok(Resend::NotFound);
        }
        let answer: String = self
            .run(&self.scripts.resend, |call| {
                call.arg(bot)
                    .arg(id)
                    .arg(self.clock.now_ms())
                    .arg(self.origin);
            })
            .await?;
        let resend = match answer.as_str() {
            "queued" => Resend::Queued,
            "pending" => Resend::AlreadyPending,
            "nothing_to_send" => Resend::NothingToSend,
            _ => Resend::NotFound,
        };
        if resend == Resend::Queued {
            self.wake.notify_one();
        }
        Ok(resend)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let (pending, due): (u64, u64) = self
            .run(&self.scripts.depth, |call| {
                call.arg(self.clock.now_ms());
            })
            .await?;
        Ok(Depth { pending, due })
    }

    async fn lanes(&self, lanes: &[(&str, &str)]) -> Result<Vec<LaneState>, QueueError> {
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now_ms();
        let states: Vec<(u64, u64)> = self
            .run(&self.scripts.lane_states, |call| {
                for (bot, webhook) in lanes {
                    call.arg(super::lane(bot, webhook));
                }
            })
            .await?;
        Ok(states
            .into_iter()
            .map(|(pending, hold)| LaneState {
                pending,
                held_until_ms: Some(hold).filter(|&h| h > now),
            })
            .collect())
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, QueueError> {
        let mut conn = self.conn().await?;
        let first: Vec<(String, f64)> = conn
            .zrange_withscores(format!("{}:lanes", self.prefix), 0, 0)
            .await
            .map_err(unavailable)?;
        // Scores are whole milliseconds, exact in an f64 up to 2^53.
        Ok(first.first().map(|(_, score)| *score as u64))
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
