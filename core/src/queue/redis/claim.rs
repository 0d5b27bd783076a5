//! Claiming due jobs: `claim.lua` leases them shard by shard, this reads
//! them back.

use std::time::Duration;

use super::RedisQueue;
use crate::queue::Queue as _;
use crate::queue::delivery::millis;
use crate::queue::{Claim, Claimed, Delivery, Lease, QueueError, SUPPRESSED};

/// Claims from the shards that may have due work, starting at a different
/// shard each time so none is always served last; see
/// [`Queue::claim`](crate::queue::Queue::claim).
///
/// A shard that cannot be reached (its primary failing over) does not stop
/// the others: its error is answered only when no other shard gave a job.
pub(super) async fn claim(
    queue: &RedisQueue,
    max: usize,
    per_lane: usize,
    lease: Duration,
) -> Result<Claim, QueueError> {
    let shards = &queue.shards;
    let now = queue.clock.now_ms();
    let first = shards.first_turn();
    let mut claim = Claim::default();
    let mut next: Option<u64> = None;
    let mut failure = None;
    for k in 0..shards.len() {
        let shard = (first + k) % shards.len();
        if claim.jobs.len() >= max || !shards.worth_asking(shard, now) {
            next = earliest(next, shards.next_due(shard));
            continue;
        }
        match claim_shard(queue, shard, max - claim.jobs.len(), per_lane, lease).await {
            Ok((jobs, shard_next, suppressed)) => {
                shards.claimed(shard, now, shard_next);
                claim.jobs.extend(jobs);
                claim.suppressed.extend(suppressed);
                next = earliest(next, shards.next_due(shard));
            }
            Err(error) => {
                // Ask again after a short pause rather than at once.
                shards.claimed(shard, now, Some(now + 500));
                failure = Some(error);
            }
        }
    }
    if let Some(error) = failure.filter(|_| claim.jobs.is_empty()) {
        return Err(error);
    }
    // Shards not asked are rechecked by the worker's idle poll, which is
    // no longer than their recheck.
    claim.next_due_ms = next;
    Ok(claim)
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one shard's claim gave: its jobs, when it next has any, and the
/// lanes of the deliveries it suppressed.
type ShardClaim = (Vec<Claimed>, Option<u64>, Vec<(String, String)>);

/// Runs `claim.lua` on one shard.
async fn claim_shard(
    queue: &RedisQueue,
    shard: usize,
    max: usize,
    per_lane: usize,
    lease: Duration,
) -> Result<ShardClaim, QueueError> {
    // id, fencing token, metadata, body, attempts made.
    type Row = (String, u64, Vec<u8>, Vec<u8>, i64);
    let (rows, next, suppressed): (Vec<Row>, i64, Vec<String>) = queue
        .run(shard, &queue.scripts.claim, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(lease))
                .arg(max)
                .arg(per_lane)
                .arg(queue.keep_ms())
                .arg(SUPPRESSED);
        })
        .await?;
    let suppressed = suppressed
        .iter()
        .filter_map(|lane| lane.rsplit_once('/'))
        .map(|(bot, webhook)| (bot.to_string(), webhook.to_string()))
        .collect();
    let mut jobs = Vec::with_capacity(rows.len());
    for (id, seq, meta, body, attempts) in rows {
        let lease = Lease {
            id,
            token: queue.token(shard, seq),
        };
        match Delivery::from_parts(&lease.id, &meta, body) {
            Ok(delivery) => jobs.push(Claimed {
                delivery,
                lease,
                attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
            }),
            // One record this version cannot read must not fail the claim
            // of the others (which are leased now) nor come back every
            // cycle: it becomes a dead letter with the reason. Should that
            // write fail, its lease runs out and the next claim tries again.
            Err(error) => {
                let reason = format!("unreadable queue record: {error}");
                tracing::error!(delivery = %lease.id, %reason, "dead-lettering a queue record this version cannot read");
                let attempt = None;
                // Not `?`: the others are leased to us now and must go out.
                if let Err(failed) = queue.dead_letter(&lease, attempt, &reason).await {
                    tracing::error!(delivery = %lease.id, error = %failed, "cannot dead-letter the unreadable record yet; it comes back when its lease ends");
                }
            }
        }
    }
    Ok((jobs, u64::try_from(next).ok(), suppressed))
}
