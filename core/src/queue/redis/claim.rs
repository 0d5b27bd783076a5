//! Claiming due jobs: `claim.lua` leases them, this reads them back.

use std::time::Duration;

use super::RedisQueue;
use crate::queue::Queue as _;
use crate::queue::delivery::millis;
use crate::queue::{Claim, Claimed, Delivery, Lease, QueueError};

/// Runs `claim.lua`; see [`Queue::claim`](crate::queue::Queue::claim).
pub(super) async fn claim(
    queue: &RedisQueue,
    max: usize,
    per_lane: usize,
    lease: Duration,
) -> Result<Claim, QueueError> {
    // id, fencing token, metadata, body, attempts made.
    type Row = (String, u64, Vec<u8>, Vec<u8>, i64);
    let (rows, next): (Vec<Row>, i64) = queue
        .run(&queue.scripts.claim, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(lease))
                .arg(max)
                .arg(per_lane);
        })
        .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for (id, token, meta, body, attempts) in rows {
        let lease = Lease { id, token };
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
    Ok(Claim {
        jobs,
        next_due_ms: u64::try_from(next).ok(),
    })
}
