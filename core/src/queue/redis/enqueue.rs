//! Enqueueing a batch: dedup marks and deliveries of every event, in one
//! script call.

use std::time::Duration;

use super::RedisQueue;
use crate::queue::delivery::millis;
use crate::queue::{Enqueued, NewDelivery, NewEvent, QueueError};

/// Runs `enqueue.lua` over `events`; see [`Queue::enqueue`](crate::queue::Queue::enqueue).
pub(super) async fn enqueue(
    queue: &RedisQueue,
    events: &[NewEvent],
    dedup_window: Duration,
) -> Result<Enqueued, QueueError> {
    // Serialise first: a delivery that cannot be written fails the batch
    // before anything reaches Redis.
    let mut metas = Vec::new();
    for event in events {
        for new in &event.deliveries {
            metas.push(new.delivery().meta_json()?);
        }
    }
    let flags: Vec<u8> = queue
        .run(&queue.scripts.enqueue, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(dedup_window).max(1))
                .arg(queue.origin)
                .arg(queue.keep_ms())
                .arg(queue.history.max_per_bot)
                .arg(events.len());
            let mut metas = metas.into_iter();
            for event in events {
                call.arg(&event.bot)
                    .arg(&event.event_id)
                    .arg(event.deliveries.len());
                for new in &event.deliveries {
                    let delivery = new.delivery();
                    let dead = match new {
                        NewDelivery::Pending(_) => "",
                        NewDelivery::Dead(_, reason) => reason.as_str(),
                    };
                    call.arg(&delivery.id)
                        .arg(delivery.lane())
                        .arg(metas.next().unwrap_or_default())
                        .arg(&delivery.body)
                        .arg(dead)
                        .arg(delivery.message_id.as_deref().unwrap_or(""))
                        .arg(delivery.recipient.as_deref().unwrap_or(""))
                        .arg(delivery.created_ms);
                }
            }
        })
        .await?;
    let mut outcome = Enqueued::default();
    for accepted in flags {
        outcome.record(accepted == 0);
    }
    Ok(outcome)
}
