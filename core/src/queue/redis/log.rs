//! Reading the delivery log: `log_page.lua` walks an index, `delivery.lua`
//! reads one delivery with its body.

use super::RedisQueue;
use crate::queue::history::Pager;
use crate::queue::{
    Attempt, Delivery, DeliveryPage, DeliveryQuery, DeliveryRecord, Outcome, QueueError,
};

/// How many index entries one script call reads: a page takes a few calls
/// when its filters match little.
const CHUNK: usize = 200;

/// A job as `read_job` (lanes.lua) returns it: metadata, body length,
/// reason, dead ms, done ms ('' when absent), attempts, why it was
/// suppressed ('' when it was not).
type Job = (Vec<u8>, usize, String, String, String, Vec<Vec<u8>>, String);

/// One page of `bot`'s log; see [`Queue::deliveries`](crate::queue::Queue::deliveries).
pub(super) async fn page(
    queue: &RedisQueue,
    bot: &str,
    query: &DeliveryQuery,
) -> Result<DeliveryPage, QueueError> {
    // The narrowest index the query allows.
    let shard = queue.shard_of(bot);
    let base = format!("{}:hist:{bot}", queue.shards.tag(shard));
    let key = match (&query.message_id, &query.recipient) {
        (Some(message), _) => format!("{base}:m:{message}"),
        (None, Some(recipient)) => format!("{base}:r:{recipient}"),
        (None, None) => base,
    };
    let (mut max, after) = query.start();
    let mut after = after.map(str::to_string);
    let min = query.since_ms.unwrap_or(0);
    let mut pager = Pager::new(query);
    loop {
        // id, created ms, the job (empty when gone).
        type Entry = (String, u64, Option<Job>);
        let entries: Vec<Entry> = queue
            .run(shard, &queue.scripts.log_page, |call| {
                call.arg(&key)
                    .arg(max)
                    .arg(after.as_deref().unwrap_or(""))
                    .arg(min)
                    .arg(CHUNK);
            })
            .await?;
        let exhausted = entries.len() < CHUNK;
        for (id, created_ms, job) in entries {
            let record = match job {
                Some(job) => readable(&id, job),
                None => None,
            };
            let go_on = pager.offer(created_ms, &id, record);
            (max, after) = (created_ms, Some(id));
            if !go_on {
                return Ok(pager.finish());
            }
        }
        if exhausted {
            return Ok(pager.finish());
        }
    }
}

/// Delivery `id` of `bot` with its body; see [`Queue::delivery`](crate::queue::Queue::delivery).
pub(super) async fn one(
    queue: &RedisQueue,
    bot: &str,
    id: &str,
) -> Result<Option<DeliveryRecord>, QueueError> {
    let found: Option<(Job, Vec<u8>)> = queue
        .run(queue.shard_of(bot), &queue.scripts.delivery, |call| {
            call.arg(bot).arg(id);
        })
        .await?;
    let Some((job, body)) = found else {
        return Ok(None);
    };
    let mut record = decode(id, job)?;
    record.delivery.body = body;
    Ok(Some(record))
}

/// The record of `job`, or `None` (with a warning) when it cannot be read:
/// one unreadable entry must not hide the rest of a page.
fn readable(id: &str, job: Job) -> Option<DeliveryRecord> {
    decode(id, job)
        .inspect_err(|error| {
            tracing::warn!(delivery = id, %error, "a logged delivery cannot be read; left out of the page");
        })
        .ok()
}

fn decode(id: &str, job: Job) -> Result<DeliveryRecord, QueueError> {
    let (meta, body_bytes, reason, dead_ms, done_ms, attempts, skip) = job;
    let ms = |text: &str| text.parse::<u64>().ok();
    let (outcome, reason, finished_ms) = if !reason.is_empty() {
        (Outcome::Dead, Some(reason), ms(&dead_ms))
    } else if !skip.is_empty() {
        (Outcome::Suppressed, Some(skip), ms(&done_ms))
    } else if !done_ms.is_empty() {
        (Outcome::Delivered, None, ms(&done_ms))
    } else {
        (Outcome::Pending, None, None)
    };
    Ok(DeliveryRecord {
        delivery: Delivery::from_parts(id, &meta, Vec::new())?,
        body_bytes,
        outcome,
        reason,
        finished_ms,
        attempts: attempts
            .iter()
            .enumerate()
            .map(|(seq, a)| Attempt::from_json(id, seq, a))
            .collect::<Result<_, _>>()?,
    })
}
