//! The Redis backend: any number of dispatchers share one Redis, or one
//! Redis Cluster.
//!
//! Keys are split into [shards](shards), each under its own hash tag `{t}`
//! (`{prefix}` with one shard), so every script touches a single Redis
//! Cluster slot. A bot's keys all live in its shard:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{t}:lane:<bot>/<webhook>` | sorted set | the lane's pending job ids scored by the unix ms they are next due (leased: when the lease ends) |
//! | `{t}:lanes` | sorted set | the shard's non-empty lanes scored by when they can next be claimed from: their earliest job, or their hold if later |
//! | `{t}:hold:<lane>` | string with expiry | the unix ms a [held](Queue::hold) lane is set aside until |
//! | `{t}:job:<id>` | hash | `meta` (JSON), `body`, `bot`, `lane`, `token` while leased, `base`, `reason`/`dead_ms` when dead, `done_ms` when delivered (then it expires with the log's retention) |
//! | `{t}:att:<id>` | list | attempts, JSON, oldest first |
//! | `{t}:dead:<bot>` | sorted set | the bot's dead letters by time of death |
//! | `{t}:dedup:<bot>:<event>` | string with TTL | the dedup mark of an accepted event |
//! | `{t}:hist:<bot>` | sorted set | the bot's [delivery log](crate::queue::History): ids by creation ms |
//! | `{t}:hist:<bot>:m:<message_id>`, `...:r:<recipient>` | sorted set with expiry | the same, for one message or recipient |
//! | `{t}:seq` | counter | the shard's fencing tokens |
//! | `{t}:dispatchers` | sorted set | the live dispatchers' origins, scored by their last heartbeat (unix ms) |
//! | `{t}:wake:<origin>` | pub/sub channel | "work was enqueued in shard t", for one dispatcher |
//! | `{prefix}:shards` | string | the shard count the keys were laid out for |
//!
//! Every state change is one Lua script (`lua/`), so a crash between two
//! steps cannot duplicate or lose a job. Each script gets its shard's tag as
//! its one key (which routes it to the right cluster node) and as its first
//! argument. The lane bookkeeping every script shares lives once, in
//! `lua/lanes.lua`, prepended to them. Scripts are re-loaded automatically
//! after a Redis restart or `SCRIPT FLUSH` (EVALSHA falls back to EVAL), and
//! nothing else needs re-creating: a flushed Redis is an empty queue, not a
//! stalled one.
//!
//! A lease's fencing token carries its shard (`token = seq * shards +
//! shard`), so an ack, retry or dead letter finds the job's shard from the
//! lease alone; with one shard the token is the sequence number itself.
//!
//! The files follow the operations, as the embedded backend's do:
//! `connect.rs` (the connection, the durability and layout checks, the key
//! migration), `shards.rs` (which shard holds what, and which may have
//! work), `scripts.rs` (the scripts and the one way to call them),
//! `enqueue.rs`, `claim.rs`, `acks.rs` (acks, many per script call under
//! load), `dead.rs` (reading dead letters), `log.rs` (the
//! delivery log), `replicas.rs` (`wait_replicas`, one shared `WAIT` at a
//! time per shard) and `wake.rs` (pub/sub wake-ups between dispatchers).

mod acks;
mod claim;
mod connect;
mod dead;
mod enqueue;
mod log;
mod replicas;
mod scripts;
mod shards;
mod wake;

pub use self::connect::RedisServers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};

use self::connect::Conn;
use self::scripts::Scripts;
use self::shards::Shards;
use super::delivery::{attempt_json, millis};
use super::{
    Attempt, Claim, Clock, DeadLetter, DeliveryPage, DeliveryQuery, DeliveryRecord, Depth,
    Enqueued, Handoff, History, LaneState, Lease, NewEvent, Queue, QueueError, Resend,
};

/// Where a Redis queue lives, how its keys are laid out, and how careful
/// its writes are (`[queue]` with `backend = "redis"`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// One server or a cluster (`url` or `cluster_urls`).
    pub servers: RedisServers,
    /// Key prefix, so several deployments can share a Redis (`prefix`,
    /// default `statushook`).
    pub prefix: String,
    /// How many hash tags the bots are spread over (`shards`, default 1);
    /// fixed for the life of the keys (see [`RedisQueue`]).
    pub shards: u16,
    /// Replicas that must hold an enqueue before it is acknowledged
    /// (`wait_replicas`, default 0: off).
    pub wait_replicas: u16,
}

impl RedisOptions {
    /// One server at `url`, keys under `prefix`, one shard, no replica wait.
    pub fn standalone(url: &str, prefix: &str) -> Self {
        RedisOptions {
            servers: RedisServers::Standalone(url.to_string()),
            prefix: prefix.to_string(),
            shards: 1,
            wait_replicas: 0,
        }
    }
}

/// The Redis-backed queue.
///
/// Its shard count is recorded in Redis on first use and checked at every
/// connection: a dispatcher configured with another count refuses to work
/// (its error names both counts) rather than strand jobs.
pub struct RedisQueue {
    servers: RedisServers,
    conn: OnceCell<Conn>,
    /// The configured prefix, without braces.
    prefix: String,
    shards: Arc<Shards>,
    wait_replicas: u16,
    /// Shared `WAIT`s, one per shard at a time (`wait_replicas`).
    barriers: replicas::Barriers,
    scripts: Scripts,
    wake: Arc<Notify>,
    subscriber: tokio::task::JoinHandle<()>,
    /// Sends acks, many per call under load.
    acks: acks::Acks,
    clock: Clock,
    /// What the delivery log keeps.
    history: History,
    /// This queue's name in the wake-ups it publishes, so its own come back
    /// ignored: it has woken its workers already, and a second wake-up would
    /// cost them a claim that finds nothing.
    origin: u64,
}

impl RedisQueue {
    /// Prepares the queue at `url` with keys under `prefix` (one shard).
    ///
    /// Does not wait for Redis: the connection is made on first use and
    /// remade after failures, so a dispatcher can start (and answer
    /// `/healthz`) before Redis is up. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`QueueError::Open`] if `url` is not a Redis URL.
    pub fn new(url: &str, prefix: &str) -> Result<Self, QueueError> {
        Self::open(RedisOptions::standalone(url, prefix), Clock::system())
    }

    /// [`RedisQueue::new`], reading the time from `clock` (tests move an
    /// adjustable one instead of sleeping).
    ///
    /// # Errors
    ///
    /// As [`RedisQueue::new`].
    pub fn with_clock(url: &str, prefix: &str, clock: Clock) -> Result<Self, QueueError> {
        Self::open(RedisOptions::standalone(url, prefix), clock)
    }

    /// Prepares the queue `options` describe, reading the time from `clock`.
    ///
    /// # Errors
    ///
    /// [`QueueError::Open`] if a URL is not a Redis URL.
    pub fn open(options: RedisOptions, clock: Clock) -> Result<Self, QueueError> {
        for url in options.servers.urls() {
            redis::Client::open(url)
                .map_err(|e| QueueError::open(format!("bad Redis URL {url:?}"), e))?;
        }
        let shards = Arc::new(Shards::new(&options.prefix, options.shards));
        let barriers = replicas::Barriers::new(shards.len());
        let wake = Arc::new(Notify::new());
        let origin = fastrand::u64(..);
        let subscriber = tokio::spawn(wake::forward_wakeups(wake::Listener {
            servers: options.servers.clone(),
            shards: Arc::clone(&shards),
            legacy: format!("{{{}}}", options.prefix),
            origin,
            wake: Arc::clone(&wake),
            clock: clock.clone(),
        }));
        let scripts = Scripts::new();
        let acks = acks::Acks::start(scripts.ack.clone(), Arc::clone(&shards), clock.clone());
        Ok(RedisQueue {
            servers: options.servers,
            conn: OnceCell::new(),
            prefix: options.prefix,
            shards,
            wait_replicas: options.wait_replicas,
            barriers,
            scripts,
            wake,
            subscriber,
            acks,
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

    /// The shard of `bot`'s keys.
    fn shard_of(&self, bot: &str) -> usize {
        self.shards.of_bot(bot)
    }

    /// The indexes of `items` by the shard of their bot (`bot_of`), shards
    /// in order of first appearance, items in input order: one hash per
    /// item, however many shards.
    fn by_shard<T>(&self, items: &[T], bot_of: impl Fn(&T) -> &str) -> Vec<(usize, Vec<usize>)> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let shard = self.shard_of(bot_of(item));
            match groups.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, members)) => members.push(i),
                None => groups.push((shard, vec![i])),
            }
        }
        groups
    }

    /// The hash tag, `{...}`, that every key of `bot` starts with: where to
    /// look for a bot's keys, and (`CLUSTER KEYSLOT`) which node has them.
    pub fn tag_of(&self, bot: &str) -> &str {
        self.shards.tag(self.shard_of(bot))
    }

    /// The token a claim hands out for sequence number `seq` of `shard`.
    fn token(&self, shard: usize, seq: u64) -> u64 {
        seq * self.shards.len() as u64 + shard as u64
    }

    /// The shard and sequence number a lease's token stands for.
    fn split(&self, lease: &Lease) -> (usize, u64) {
        let n = self.shards.len() as u64;
        // The remainder is below the shard count, a usize.
        ((lease.token % n) as usize, lease.token / n)
    }

    /// Ends `lease` with `script` (ack, retry or dead letter), which takes
    /// the id, the shard's own token, and what `args` adds. `false` for a
    /// stale lease. The scripts answer 2 when the delivery's end let its
    /// message's next delivery (per-message order) become due: this
    /// dispatcher then asks that shard at its next claim.
    async fn settle(
        &self,
        script: &redis::Script,
        lease: &Lease,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<bool, QueueError> {
        let (shard, seq) = self.split(lease);
        let done: i64 = self
            .run(shard, script, |call| {
                call.arg(&lease.id).arg(seq);
                args(call);
            })
            .await?;
        Ok(self.settled(shard, done))
    }

    /// Acks `lease` through the ack task (see `acks.rs`); `may_wait` lets
    /// it wait a moment for an enqueue to ride with.
    async fn send_ack(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        may_wait: bool,
    ) -> Result<bool, QueueError> {
        // The scripts take an empty string for no attempt.
        let attempt = attempt_json(&lease.id, attempt)?.unwrap_or_default();
        let (shard, seq) = self.split(lease);
        let (answer, done) = tokio::sync::oneshot::channel();
        self.acks.send(acks::Ack {
            conn: self.conn().await?,
            shard,
            id: lease.id.clone(),
            seq,
            attempt,
            keep_ms: self.keep_ms(),
            may_wait,
            answer,
        });
        let done = done
            .await
            .map_err(|_| QueueError::unavailable_because("Redis: the ack was dropped"))??;
        Ok(self.settled(shard, done))
    }

    /// What a script that ended a lease in `shard` answered (`done`): whether
    /// the lease was current. On 2 (its message's next delivery became
    /// due), this dispatcher asks that shard at its next claim.
    fn settled(&self, shard: usize, done: i64) -> bool {
        if done == 2 {
            self.shards.work_at(shard, 0);
            self.wake.notify_one();
        }
        done >= 1
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
    async fn enqueue_leasing(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
        handoff: Handoff,
    ) -> Result<Enqueued, QueueError> {
        enqueue::enqueue(self, events, dedup_window, handoff).await
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
        self.send_ack(lease, attempt, false).await
    }

    async fn ack_unordered(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
    ) -> Result<bool, QueueError> {
        self.send_ack(lease, attempt, true).await
    }

    async fn retry(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        due_ms: u64,
    ) -> Result<bool, QueueError> {
        // The scripts take an empty string for no attempt.
        let attempt = attempt_json(&lease.id, attempt)?.unwrap_or_default();
        let done = self
            .settle(&self.scripts.retry, lease, |call| {
                call.arg(due_ms).arg(attempt).arg(self.clock.now_ms());
            })
            .await?;
        self.shards.work_at(self.split(lease).0, due_ms);
        Ok(done)
    }

    async fn hold(&self, bot: &str, webhook: &str, until_ms: u64) -> Result<(), QueueError> {
        let _: i64 = self
            .run(self.shard_of(bot), &self.scripts.hold, |call| {
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
        self.settle(&self.scripts.dead, lease, |call| {
            call.arg(self.clock.now_ms()).arg(reason).arg(attempt);
        })
        .await
    }

    async fn dead_letters(&self, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        dead::dead_letters(self, bot, limit).await
    }

    async fn replay(&self, bot: &str, id: Option<&str>) -> Result<usize, QueueError> {
        let shard = self.shard_of(bot);
        let replayed: usize = self
            .run(shard, &self.scripts.replay, |call| {
                call.arg(bot)
                    .arg(self.clock.now_ms())
                    .arg(id.unwrap_or(""))
                    .arg(self.origin);
            })
            .await?;
        if replayed > 0 {
            self.shards.work_at(shard, 0);
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
        let shard = self.shard_of(bot);
        let answer: String = self
            .run(shard, &self.scripts.resend, |call| {
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
            self.shards.work_at(shard, 0);
            self.wake.notify_one();
        }
        Ok(resend)
    }

    async fn sweep_log(&self, bots: &[&str]) -> Result<usize, QueueError> {
        if !self.history.is_on() {
            return Ok(0);
        }
        let mut gone = 0;
        for (shard, mine) in self.by_shard(bots, |bot| bot) {
            let trimmed: usize = self
                .run(shard, &self.scripts.trim_log, |call| {
                    call.arg(self.clock.now_ms())
                        .arg(self.keep_ms())
                        .arg(self.history.max_per_bot);
                    for i in mine {
                        call.arg(bots[i]);
                    }
                })
                .await?;
            gone += trimmed;
        }
        Ok(gone)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let mut depth = Depth::default();
        for shard in 0..self.shards.len() {
            let (pending, due): (u64, u64) = self
                .run(shard, &self.scripts.depth, |call| {
                    call.arg(self.clock.now_ms());
                })
                .await?;
            depth.pending += pending;
            depth.due += due;
        }
        Ok(depth)
    }

    async fn lanes(&self, lanes: &[(&str, &str)]) -> Result<Vec<LaneState>, QueueError> {
        let now = self.clock.now_ms();
        // One call per shard that holds any of the lanes, answers put back
        // in the order asked.
        let mut states = vec![LaneState::default(); lanes.len()];
        for (shard, asked) in self.by_shard(lanes, |(bot, _)| bot) {
            let answers: Vec<(u64, u64)> = self
                .run(shard, &self.scripts.lane_states, |call| {
                    for &i in &asked {
                        call.arg(super::lane(lanes[i].0, lanes[i].1));
                    }
                })
                .await?;
            for (i, (pending, hold)) in asked.into_iter().zip(answers) {
                states[i] = LaneState {
                    pending,
                    held_until_ms: Some(hold).filter(|&h| h > now),
                };
            }
        }
        Ok(states)
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, QueueError> {
        let mut conn = self.conn().await?;
        let mut earliest: Option<u64> = None;
        for tag in self.shards.tags() {
            let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(format!("{tag}:lanes"))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            // Scores are whole milliseconds, exact in an f64 up to 2^53.
            if let Some((_, score)) = first.first() {
                let due = *score as u64;
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        Ok(earliest)
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        for tag in self.shards.tags() {
            // EXISTS on each shard's key: every node holding a shard answers.
            redis::cmd("EXISTS")
                .arg(format!("{tag}:lanes"))
                .query_async::<u64>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}
