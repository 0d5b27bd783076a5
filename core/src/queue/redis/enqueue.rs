//! Enqueueing a batch: dedup marks and deliveries of every event, one
//! script call per shard the batch touches.

use std::time::Duration;

use futures_util::future::try_join_all;

use super::RedisQueue;
use crate::queue::delivery::millis;
use crate::queue::{Enqueued, NewDelivery, NewEvent, QueueError};

/// Runs `enqueue.lua` over `events`; see [`Queue::enqueue`](crate::queue::Queue::enqueue).
///
/// A batch whose bots live in several shards is one call per shard, made
/// together. Each call is atomic on its own, not the batch: should a later
/// shard fail, the error is answered (`503`) while the shards already
/// written keep their events, and the client's retry finds those as
/// duplicates. Nothing is lost or doubled either way.
pub(super) async fn enqueue(
    queue: &RedisQueue,
    events: &[NewEvent],
    dedup_window: Duration,
) -> Result<Enqueued, QueueError> {
    // Serialise first: a delivery that cannot be written fails the batch
    // before anything reaches Redis.
    let mut metas = Vec::with_capacity(events.len());
    for event in events {
        let mut of_event = Vec::with_capacity(event.deliveries.len());
        for new in &event.deliveries {
            of_event.push(new.delivery().meta_json()?);
        }
        metas.push(of_event);
    }
    // The events of each shard, in batch order.
    let by_shard = queue.by_shard(events, |event| &event.bot);
    let calls = by_shard.iter().map(|(shard, members)| {
        let (shard, members, metas) = (*shard, members.as_slice(), &metas);
        async move {
            let flags = write_shard(queue, shard, events, members, metas, dedup_window).await?;
            if queue.wait_replicas > 0 {
                replicated(queue, shard).await?;
            }
            Ok::<_, QueueError>(flags)
        }
    });
    let answers = try_join_all(calls).await?;
    let mut duplicate = vec![false; events.len()];
    for ((shard, members), flags) in by_shard.iter().zip(answers) {
        for (&i, accepted) in members.iter().zip(flags) {
            duplicate[i] = accepted == 0;
        }
        queue.shards.work_at(*shard, 0);
    }
    let mut outcome = Enqueued::default();
    for duplicate in duplicate {
        outcome.record(duplicate);
    }
    Ok(outcome)
}

/// One `enqueue.lua` call: the events `members` of `events`, all in `shard`.
async fn write_shard(
    queue: &RedisQueue,
    shard: usize,
    events: &[NewEvent],
    members: &[usize],
    metas: &[Vec<Vec<u8>>],
    dedup_window: Duration,
) -> Result<Vec<u8>, QueueError> {
    queue
        .run(shard, &queue.scripts.enqueue, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(dedup_window).max(1))
                .arg(queue.origin)
                .arg(queue.keep_ms())
                .arg(queue.history.max_per_bot)
                .arg(members.len());
            for &i in members {
                let event = &events[i];
                call.arg(&event.bot)
                    .arg(&event.event_id)
                    .arg(event.deliveries.len());
                for (new, meta) in event.deliveries.iter().zip(&metas[i]) {
                    let delivery = new.delivery();
                    let dead = match new {
                        NewDelivery::Pending(_) => "",
                        NewDelivery::Dead(_, reason) => reason.as_str(),
                    };
                    call.arg(&delivery.id)
                        .arg(delivery.lane())
                        .arg(meta)
                        .arg(&delivery.body)
                        .arg(dead)
                        .arg(delivery.message_id.as_deref().unwrap_or(""))
                        .arg(delivery.recipient.as_deref().unwrap_or(""))
                        .arg(delivery.created_ms);
                    match delivery.ordered_message() {
                        Some(_) => call
                            .arg(delivery.order.code())
                            .arg(delivery.status.lifecycle_rank()),
                        None => call.arg("").arg(0),
                    };
                }
            }
        })
        .await
}

/// Waits for `wait_replicas` replicas of `shard`'s primary to hold what was
/// just written (see `replicas.rs`).
async fn replicated(queue: &RedisQueue, shard: usize) -> Result<(), QueueError> {
    let mut conn = queue.conn().await?;
    queue
        .barriers
        .replicated(
            shard,
            &mut conn,
            queue.shards.tag(shard),
            queue.wait_replicas,
        )
        .await
}
