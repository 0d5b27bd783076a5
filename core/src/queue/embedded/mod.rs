//! The embedded backend: one dispatcher, the queue in a local file.
//!
//! The same model as the Redis backend (due times, leases with fencing
//! tokens, attempt counts with a `base` moved by replays, per-bot dead
//! letters, dedup marks with an expiry) kept in a [redb] database,
//! `<folder>/queue.redb`. The tables are listed in `tables.rs`.
//!
//! - Every operation is one redb write transaction, committed with
//!   [`redb::Durability::Immediate`]: durable when it returns, so the `202`
//!   of an ingest is a promise. A whole enqueued batch is one transaction and
//!   one fsync (group commit); an operation that changes nothing (a claim
//!   finding no due job, a stale lease) is aborted and costs no fsync.
//! - A crash loses nothing committed: leased jobs become due again when their
//!   lease ends, exactly as in Redis. After a crash, the next open repairs
//!   the file (redb walks it) before answering.
//! - redb blocks, so each operation runs on tokio's blocking pool.
//! - One process only: redb locks the file, and a second open (by another
//!   process, or this one) fails with [`QueueError::Open`].
//!
//! [redb]: https://docs.rs/redb

mod claim;
mod commit;
mod dead;
mod enqueue;
mod fault;
mod inspect;
mod job;
mod log;
mod open;
mod order;
mod settle;
mod tables;
#[cfg(test)]
mod tests;

/// Decodes a stored job record and encodes it again: the record format as
/// [`testing::records`](crate::testing::records) exposes it to the fuzz
/// targets. A record that does not decode gives the reason.
pub(crate) fn reencode_job(bytes: &[u8]) -> Result<Vec<u8>, QueueError> {
    job::Job::decode("job", bytes)
        .map(|job| job.encode())
        .map_err(QueueError::from)
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::Database;
use tokio::sync::Notify;

use self::fault::Fault;

/// Log entries one sweep may drop beyond the usual allowance: a sweep runs
/// once a minute, so it may take a bigger bite than an enqueue does.
const SWEEP: usize = 10_000;
use self::tables::{Commit, Tables};
use super::delivery::{attempt_json, millis};
use super::{
    Attempt, Claim, Clock, DeadLetter, DeliveryPage, DeliveryQuery, DeliveryRecord, Depth,
    Enqueued, Handoff, History, LaneState, Lease, NewEvent, Queue, QueueError, Resend,
};

/// The queue in a local redb file, for a single dispatcher.
pub struct EmbeddedQueue {
    db: Arc<Database>,
    folder: PathBuf,
    wake: Notify,
    committer: commit::Committer,
    clock: Clock,
    history: History,
}

impl EmbeddedQueue {
    /// Opens the queue in `folder`, creating the folder and its database
    /// file (`queue.redb`) if needed.
    ///
    /// Blocks while it opens: after an unclean shutdown redb checks and
    /// repairs the whole file first. Call it at start-up, or from a blocking
    /// thread.
    ///
    /// # Errors
    ///
    /// [`QueueError::Open`] if the folder or file cannot be created or read,
    /// or if another statushook (another process, or another queue in this
    /// one) has the folder open.
    pub fn open(folder: &Path) -> Result<Self, QueueError> {
        Self::open_with_clock(folder, Clock::system())
    }

    /// [`EmbeddedQueue::open`], reading the time from `clock` (tests move an
    /// adjustable one instead of sleeping).
    ///
    /// # Errors
    ///
    /// As [`EmbeddedQueue::open`].
    pub fn open_with_clock(folder: &Path, clock: Clock) -> Result<Self, QueueError> {
        let db = Arc::new(open::open(folder, &clock)?);
        let committer = commit::Committer::start(Arc::clone(&db))
            .map_err(|e| QueueError::open("cannot start the commit thread", e))?;
        Ok(EmbeddedQueue {
            db,
            folder: folder.to_path_buf(),
            wake: Notify::new(),
            committer,
            clock,
            history: History::OFF,
        })
    }

    /// Keeps a [delivery log](History) as `history` says (off until set).
    pub fn with_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// Runs `op` on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, Fault> + Send + 'static,
    ) -> Result<T, QueueError> {
        let db = Arc::clone(&self.db);
        match tokio::task::spawn_blocking(move || op(&db)).await {
            Ok(result) => result.map_err(QueueError::from),
            Err(e) => Err(QueueError::unavailable("embedded queue operation", e)),
        }
    }

    /// Whether a lease's end did anything; wakes the workers when it made
    /// the next delivery of an ordered message due.
    fn settled(&self, settled: settle::Settled) -> bool {
        if settled == settle::Settled::NextDue {
            self.wake.notify_one();
        }
        settled != settle::Settled::Stale
    }

    /// Acks `lease`; `soon` lets its commit wait a moment for another
    /// write to share it (see [`commit`]).
    async fn ack_with(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        soon: bool,
    ) -> Result<bool, QueueError> {
        let attempt = attempt_json(&lease.id, attempt)?;
        let Lease { id, token } = lease.clone();
        let now = self.clock.now_ms();
        let history = self.history;
        let op =
            move |t: &mut Tables<'_>| settle::ack(t, &id, token, attempt.as_deref(), history, now);
        let settled = if soon {
            self.committer.write_soon(op).await?
        } else {
            self.write(op).await?
        };
        Ok(self.settled(settled))
    }

    /// Runs `op` in the next group commit (see [`commit`]).
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<(T, Commit), Fault> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.committer.write(op).await
    }
}

impl fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue_leasing(
        &self,
        events: &[NewEvent],
        dedup_window: Duration,
        handoff: Handoff,
    ) -> Result<Enqueued, QueueError> {
        let events = events.to_vec();
        let window_ms = millis(dedup_window).max(1);
        let now = self.clock.now_ms();
        let history = self.history;
        let (enqueued, queued) = self
            .write(move |t| enqueue::enqueue(t, &events, now, window_ms, history, handoff))
            .await?;
        // What was handed off is the caller's already: only work left for a
        // claim is worth waking the workers for.
        if queued {
            self.wake.notify_one();
        }
        Ok(enqueued)
    }

    async fn claim(
        &self,
        max: usize,
        per_lane: usize,
        lease: Duration,
    ) -> Result<Claim, QueueError> {
        let lease_ms = millis(lease);
        let now = self.clock.now_ms();
        let history = self.history;
        self.write(move |t| claim::claim(t, now, lease_ms, max, per_lane, history))
            .await
    }

    async fn hold(&self, bot: &str, webhook: &str, until_ms: u64) -> Result<(), QueueError> {
        let lane = super::lane(bot, webhook);
        let now = self.clock.now_ms();
        self.write(move |t| {
            t.hold(&lane, until_ms, now)?;
            Ok(((), Commit::Yes))
        })
        .await
    }

    async fn ack(&self, lease: &Lease, attempt: Option<&Attempt>) -> Result<bool, QueueError> {
        self.ack_with(lease, attempt, false).await
    }

    async fn ack_unordered(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
    ) -> Result<bool, QueueError> {
        self.ack_with(lease, attempt, true).await
    }

    async fn retry(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        due_ms: u64,
    ) -> Result<bool, QueueError> {
        let attempt = attempt_json(&lease.id, attempt)?;
        let Lease { id, token } = lease.clone();
        let now = self.clock.now_ms();
        self.write(move |t| settle::retry(t, &id, token, attempt.as_deref(), due_ms, now))
            .await
    }

    async fn dead_letter(
        &self,
        lease: &Lease,
        attempt: Option<&Attempt>,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let attempt = attempt_json(&lease.id, attempt)?;
        let Lease { id, token } = lease.clone();
        let reason = reason.to_string();
        let now = self.clock.now_ms();
        let settled = self
            .write(move |t| settle::dead_letter(t, &id, token, attempt.as_deref(), &reason, now))
            .await?;
        Ok(self.settled(settled))
    }

    async fn dead_letters(&self, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let bot = bot.to_string();
        self.run(move |db| dead::list(db, &bot, limit.max(1))).await
    }

    async fn replay(&self, bot: &str, id: Option<&str>) -> Result<usize, QueueError> {
        let bot = bot.to_string();
        let id = id.map(str::to_string);
        let now = self.clock.now_ms();
        let replayed = self
            .write(move |t| dead::replay(t, &bot, id.as_deref(), now))
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
        let (bot, query) = (
            bot.to_string(),
            query.kept(self.history, self.clock.now_ms()),
        );
        self.run(move |db| log::page(db, &bot, &query)).await
    }

    async fn delivery(&self, bot: &str, id: &str) -> Result<Option<DeliveryRecord>, QueueError> {
        let floor = self.history.floor_ms(self.clock.now_ms());
        let (bot, id) = (bot.to_string(), id.to_string());
        Ok(self
            .run(move |db| log::one(db, &bot, &id))
            .await?
            .filter(|record| record.delivery.created_ms >= floor))
    }

    async fn resend(&self, bot: &str, id: &str) -> Result<Resend, QueueError> {
        // Only what the log still shows may be sent again (a rare admin
        // step: the extra read is worth the one rule for both backends).
        if self.delivery(bot, id).await?.is_none() {
            return Ok(Resend::NotFound);
        }
        let (bot, id) = (bot.to_string(), id.to_string());
        let now = self.clock.now_ms();
        let resend = self.write(move |t| log::resend(t, &bot, &id, now)).await?;
        if resend == Resend::Queued {
            self.wake.notify_one();
        }
        Ok(resend)
    }

    async fn sweep_log(&self, bots: &[&str]) -> Result<usize, QueueError> {
        let history = self.history;
        if !history.is_on() {
            return Ok(0);
        }
        let bots: Vec<String> = bots.iter().map(|b| b.to_string()).collect();
        let now = self.clock.now_ms();
        self.write(move |t| {
            let bots: Vec<&str> = bots.iter().map(String::as_str).collect();
            let gone = log::trim(t, history, &bots, now, SWEEP)?;
            let commit = if gone > 0 { Commit::Yes } else { Commit::No };
            Ok((gone, commit))
        })
        .await
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let now = self.clock.now_ms();
        self.run(move |db| inspect::depth(db, now)).await
    }

    async fn lanes(&self, lanes: &[(&str, &str)]) -> Result<Vec<LaneState>, QueueError> {
        let lanes: Vec<String> = lanes.iter().map(|(b, w)| super::lane(b, w)).collect();
        let now = self.clock.now_ms();
        self.run(move |db| inspect::lanes(db, &lanes, now)).await
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, QueueError> {
        self.run(inspect::next_due_ms).await
    }

    async fn wait_for_work(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.run(inspect::ping).await
    }
}
