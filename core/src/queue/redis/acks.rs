//! Acks grouped: they ride in the next enqueue's script, or go together in
//! one `ack.lua` call per shard.
//!
//! Under load most of a delivery's queue work was its ack, one script call
//! each; at a moderate rate each ack also woke Redis and then the
//! dispatcher once more. A task of its own sends them instead. An ack the
//! caller lets wait ([`Ack::may_wait`]: its delivery is not ordered per
//! message, so nothing else waits on it) waits up to [`ACK_RIDE`], when
//! enqueues come that often, for an enqueue to the same shard, which takes
//! it into its own script ([`Acks::take`]); whatever is still waiting then goes in one call per
//! shard. An ack that may not wait goes at once, with all the others. The
//! delivery was sent before its ack is even queued, so waiting adds nothing
//! to a delivery's latency; a crash while acks wait costs a second send of
//! the same bytes and `webhook-id`, as a crash between a send and its ack
//! always could.

use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::join_all;
use redis::Script;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::connect::Conn;
use super::scripts::invoke;
use super::shards::Shards;
use crate::queue::pace::{ACK_RIDE, Pace};
use crate::queue::{Clock, QueueError};

/// At most this many acks per call: a script blocks its Redis while it
/// runs (about ten commands per ack).
const MAX_PER_CALL: usize = 256;

/// One ack waiting for its call.
pub(super) struct Ack {
    /// The connection to send on (the queue's shared one).
    pub(super) conn: Conn,
    /// The job's shard.
    pub(super) shard: usize,
    /// The job id.
    pub(super) id: String,
    /// The lease's token within the shard.
    pub(super) seq: u64,
    /// The attempt that succeeded, as JSON; empty for none.
    pub(super) attempt: Vec<u8>,
    /// The delivery log's retention in ms (0: no log), the same for every
    /// ack of one queue.
    pub(super) keep_ms: u64,
    /// Whether it may wait for an enqueue to ride with.
    pub(super) may_wait: bool,
    /// Where its result goes: 0 stale, 1 acked, 2 acked and its message's
    /// next delivery became due.
    pub(super) answer: oneshot::Sender<Result<i64, QueueError>>,
}

impl Ack {
    /// Answers the ack with `result`.
    pub(super) fn answer(self, result: Result<i64, QueueError>) {
        // The caller may have given up (a send abandoned at shutdown).
        let _ = self.answer.send(result);
    }
}

/// The acks waiting, shared by the task and the enqueues that take them.
#[derive(Default)]
struct Waiting {
    acks: Mutex<Vec<Ack>>,
    /// Rung when an ack arrives or an enqueue took some.
    changed: Notify,
    /// How often enqueues come.
    pace: Mutex<Pace>,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, Vec<Ack>> {
        // A plain list: consistent even if a holder panicked.
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle to the task that sends acks. Stops it when dropped.
pub(super) struct Acks {
    waiting: Arc<Waiting>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.task.abort();
        for ack in self.waiting.lock().drain(..) {
            ack.answer(Err(QueueError::unavailable_because(
                "Redis: the queue was closed with the ack unsent",
            )));
        }
    }
}

impl Acks {
    /// Starts the task; it runs `script` (`ack.lua`). Must be called
    /// within a tokio runtime.
    pub(super) fn start(script: Script, shards: Arc<Shards>, clock: Clock) -> Self {
        let waiting = Arc::new(Waiting::default());
        let task = tokio::spawn(send_acks(Arc::clone(&waiting), script, shards, clock));
        Acks { waiting, task }
    }

    /// Queues `ack` for an enqueue to take, or the task's next call.
    pub(super) fn send(&self, ack: Ack) {
        self.waiting.lock().push(ack);
        self.waiting.changed.notify_one();
    }

    /// Takes up to [`MAX_PER_CALL`] acks of `shard` waiting now, for an
    /// enqueue's script to carry; the caller answers them.
    pub(super) fn take(&self, shard: usize) -> Vec<Ack> {
        self.waiting
            .pace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wrote(std::time::Instant::now());
        let taken = {
            let mut waiting = self.waiting.lock();
            if waiting.is_empty() {
                return Vec::new();
            }
            let mut taken = Vec::new();
            let mut kept = Vec::new();
            for ack in waiting.drain(..) {
                if ack.shard == shard && taken.len() < MAX_PER_CALL {
                    taken.push(ack);
                } else {
                    kept.push(ack);
                }
            }
            *waiting = kept;
            taken
        };
        if !taken.is_empty() {
            // The task need not wake for them when their wait ends.
            self.waiting.changed.notify_one();
        }
        taken
    }
}

/// The task: when acks wait, lets those that may wait do so for up to
/// [`ACK_RIDE`], then sends what is left, one call per shard; repeats.
async fn send_acks(waiting: Arc<Waiting>, script: Script, shards: Arc<Shards>, clock: Clock) {
    loop {
        waiting.changed.notified().await;
        let since = Instant::now();
        let worth_waiting = waiting
            .pace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expected_within(ACK_RIDE);
        loop {
            let due = {
                let acks = waiting.lock();
                if acks.is_empty() {
                    break;
                }
                !worth_waiting
                    || acks.len() >= MAX_PER_CALL
                    || acks.iter().any(|ack| !ack.may_wait)
                    || since.elapsed() >= ACK_RIDE
            };
            if due {
                let acks: Vec<Ack> = {
                    let mut acks = waiting.lock();
                    let n = acks.len().min(MAX_PER_CALL);
                    acks.drain(..n).collect()
                };
                send(&script, &shards, &clock, acks).await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(since + ACK_RIDE) => {}
                _ = waiting.changed.notified() => {}
            }
        }
    }
}

/// Sends `acks`, one `ack.lua` call per shard, together.
async fn send(script: &Script, shards: &Shards, clock: &Clock, acks: Vec<Ack>) {
    let mut by_shard: Vec<(usize, Vec<Ack>)> = Vec::new();
    for ack in acks {
        match by_shard.iter_mut().find(|(shard, _)| *shard == ack.shard) {
            Some((_, acks)) => acks.push(ack),
            None => by_shard.push((ack.shard, vec![ack])),
        }
    }
    let now = clock.now_ms();
    join_all(
        by_shard
            .into_iter()
            .map(|(shard, acks)| call(script, shards.tag(shard), acks, now)),
    )
    .await;
}

/// One `ack.lua` call for `acks`, all of the shard tagged `tag`.
async fn call(script: &Script, tag: &str, acks: Vec<Ack>, now: u64) {
    let Some(first) = acks.first() else {
        return;
    };
    let (mut conn, keep_ms) = (first.conn.clone(), first.keep_ms);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(tag)
        .arg(tag)
        .arg(now)
        .arg(keep_ms)
        .arg(acks.len());
    for ack in &acks {
        invocation.arg(&ack.id).arg(ack.seq).arg(&ack.attempt);
    }
    answer_all(acks, invoke(&mut conn, &invocation).await);
}

/// Answers `acks` with what the script that carried them said: one result
/// each, in order, or the call's error for all.
pub(super) fn answer_all(acks: Vec<Ack>, done: redis::RedisResult<Vec<i64>>) {
    match done {
        Ok(done) if done.len() == acks.len() => {
            for (ack, done) in acks.into_iter().zip(done) {
                ack.answer(Ok(done));
            }
        }
        Ok(done) => {
            let reason = format!(
                "Redis: the script answered {} ack results for {} acks",
                done.len(),
                acks.len()
            );
            for ack in acks {
                ack.answer(Err(QueueError::unavailable_because(reason.clone())));
            }
        }
        Err(error) => {
            for ack in acks {
                ack.answer(Err(QueueError::unavailable("Redis", error.clone())));
            }
        }
    }
}
