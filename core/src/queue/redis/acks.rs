//! Acks grouped: one `ack.lua` call per shard for every ack that comes
//! while the previous call is on its way.
//!
//! Under load most of a delivery's queue work was its ack, one script call
//! each. A task of its own sends them instead: it takes the acks waiting,
//! sends one call per shard with all of them, answers each, and takes the
//! next ones. An ack alone goes at once (nothing waits for a timer or a
//! batch to fill), so at a low rate it costs what it did; at a high rate
//! the calls carry many acks each. A crash between a send and its ack
//! costs a second send of the same bytes and `webhook-id`, as before.

use std::sync::Arc;

use futures_util::future::join_all;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use super::connect::Conn;
use super::scripts::invoke;
use super::shards::Shards;
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
    /// Where its result goes: 0 stale, 1 acked, 2 acked and its message's
    /// next delivery became due.
    pub(super) answer: oneshot::Sender<Result<i64, QueueError>>,
}

/// The handle to the task that sends acks. Stops it when dropped.
pub(super) struct Acks {
    sender: mpsc::UnboundedSender<Ack>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acks {
    /// Starts the task; it runs `script` (`ack.lua`). Must be called
    /// within a tokio runtime.
    pub(super) fn start(script: Script, shards: Arc<Shards>, clock: Clock) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(send_acks(receiver, script, shards, clock));
        Acks { sender, task }
    }

    /// Queues `ack` for the next call.
    pub(super) fn send(&self, ack: Ack) {
        if let Err(returned) = self.sender.send(ack) {
            // The task is gone only once the queue is dropped.
            let _ = returned.0.answer.send(Err(QueueError::unavailable_because(
                "Redis: the ack sender has stopped",
            )));
        }
    }
}

/// The task: takes what is waiting, one call per shard, answers, repeats.
async fn send_acks(
    mut receiver: mpsc::UnboundedReceiver<Ack>,
    script: Script,
    shards: Arc<Shards>,
    clock: Clock,
) {
    let mut waiting = Vec::new();
    while receiver.recv_many(&mut waiting, MAX_PER_CALL).await > 0 {
        let mut by_shard: Vec<(usize, Vec<Ack>)> = Vec::new();
        for ack in waiting.drain(..) {
            match by_shard.iter_mut().find(|(shard, _)| *shard == ack.shard) {
                Some((_, acks)) => acks.push(ack),
                None => by_shard.push((ack.shard, vec![ack])),
            }
        }
        let now = clock.now_ms();
        join_all(
            by_shard
                .into_iter()
                .map(|(shard, acks)| call(&script, shards.tag(shard), acks, now)),
        )
        .await;
    }
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
    let result: Result<Vec<i64>, _> = invoke(&mut conn, &invocation).await;
    match result {
        Ok(done) if done.len() == acks.len() => {
            for (ack, done) in acks.into_iter().zip(done) {
                let _ = ack.answer.send(Ok(done));
            }
        }
        Ok(done) => {
            let reason = format!(
                "Redis: ack.lua answered {} results for {} acks",
                done.len(),
                acks.len()
            );
            for ack in acks {
                let _ = ack
                    .answer
                    .send(Err(QueueError::unavailable_because(reason.clone())));
            }
        }
        Err(error) => {
            for ack in acks {
                let _ = ack
                    .answer
                    .send(Err(QueueError::unavailable("Redis", error.clone())));
            }
        }
    }
}
