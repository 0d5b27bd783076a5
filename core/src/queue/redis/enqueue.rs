//! Enqueueing a batch: dedup marks and deliveries of every event, one
//! script call per shard the batch touches.

use std::time::Duration;

use futures_util::future::try_join_all;

use super::acks::answer_all;
use super::{RedisQueue, unavailable};
use crate::queue::delivery::millis;
use crate::queue::{Claimed, Enqueued, Handoff, Lease, NewDelivery, NewEvent, QueueError};

/// What `enqueue.lua` answers: a flag per event (1 accepted), the id and
/// token of each delivery handed off, how many were left for a claim, and
/// the result of each ack that rode along.
type Answer = (Vec<u8>, Vec<(String, u64)>, u64, Vec<i64>);

/// What one shard's call wrote: [`Answer`] without the acks' results
/// (already answered).
type Written = (Vec<u8>, Vec<(String, u64)>, u64);

/// Runs `enqueue.lua` over `events`; see [`Queue::enqueue_leasing`](crate::queue::Queue::enqueue_leasing).
///
/// A batch whose bots live in several shards is one call per shard, made
/// together. Each call is atomic on its own, not the batch: should a later
/// shard fail, the error is answered (`503`) while the shards already
/// written keep their events, and the client's retry finds those as
/// duplicates. Nothing is lost or doubled either way. Such a batch hands
/// nothing off (the shards would each lease up to the whole allowance).
pub(super) async fn enqueue(
    queue: &RedisQueue,
    events: &[NewEvent],
    dedup_window: Duration,
    handoff: Handoff,
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
    let handoff = if by_shard.len() == 1 {
        handoff
    } else {
        Handoff::NONE
    };
    let calls = by_shard.iter().map(|(shard, members)| {
        let (shard, members, metas) = (*shard, members.as_slice(), &metas);
        async move {
            let written =
                write_shard(queue, shard, events, members, metas, dedup_window, handoff).await?;
            if queue.wait_replicas > 0 {
                replicated(queue, shard).await?;
            }
            Ok::<_, QueueError>(written)
        }
    });
    let answers = try_join_all(calls).await?;
    let mut duplicate = vec![false; events.len()];
    let mut leased = Vec::new();
    for ((shard, members), (flags, handed, queued)) in by_shard.iter().zip(answers) {
        for (&i, accepted) in members.iter().zip(flags) {
            duplicate[i] = accepted == 0;
        }
        leased.extend(handed_off(events, members, handed, *shard, queue));
        // What was handed off is this dispatcher's already: only work left
        // for a claim is worth waking the workers for.
        if queued > 0 {
            queue.shards.work_at(*shard, 0);
            queue.wake.notify_one();
        }
    }
    let mut outcome = Enqueued::default();
    for duplicate in duplicate {
        outcome.record(duplicate);
    }
    outcome.leased = leased;
    Ok(outcome)
}

/// The deliveries `handed` (id and shard token, in batch order) names,
/// taken from `members` of `events`, leased as a claim of `shard` leases.
fn handed_off(
    events: &[NewEvent],
    members: &[usize],
    handed: Vec<(String, u64)>,
    shard: usize,
    queue: &RedisQueue,
) -> Vec<Claimed> {
    let mut deliveries = members
        .iter()
        .flat_map(|&i| &events[i].deliveries)
        .map(NewDelivery::delivery);
    let mut leased = Vec::with_capacity(handed.len());
    for (id, seq) in handed {
        // The script answers in batch order, so one pass finds them all.
        if let Some(delivery) = deliveries.by_ref().find(|d| d.id == id) {
            leased.push(Claimed {
                delivery: delivery.clone(),
                lease: Lease {
                    id,
                    token: queue.token(shard, seq),
                },
                attempts: 0,
            });
        }
    }
    leased
}

/// One `enqueue.lua` call: the events `members` of `events`, all in `shard`.
async fn write_shard(
    queue: &RedisQueue,
    shard: usize,
    events: &[NewEvent],
    members: &[usize],
    metas: &[Vec<Vec<u8>>],
    dedup_window: Duration,
    handoff: Handoff,
) -> Result<Written, QueueError> {
    let mut conn = queue.conn().await?;
    // Acks waiting for a write to this shard ride in this one.
    let riders = queue.acks.take(shard);
    let answer: Result<Answer, _> = queue
        .run_on(&mut conn, shard, &queue.scripts.enqueue, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(dedup_window).max(1))
                .arg(queue.origin)
                .arg(queue.keep_ms())
                .arg(queue.history.max_per_bot)
                .arg(millis(handoff.lease))
                .arg(handoff.max)
                .arg(handoff.per_lane)
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
            call.arg(riders.len());
            for ack in &riders {
                call.arg(&ack.id).arg(ack.seq).arg(&ack.attempt);
            }
        })
        .await;
    match answer {
        Ok((flags, leased, queued, acked)) => {
            answer_all(riders, Ok(acked));
            Ok((flags, leased, queued))
        }
        Err(error) => {
            answer_all(riders, Err(error.clone()));
            Err(unavailable(error))
        }
    }
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
