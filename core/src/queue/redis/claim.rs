//! Claiming due jobs: `claim.lua` leases them, this reads them back.

use std::time::Duration;

use super::{RedisQueue, millis};
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
    let jobs = rows
        .into_iter()
        .map(|(id, token, meta, body, attempts)| {
            Ok(Claimed {
                delivery: Delivery::from_parts(&id, &meta, body)?,
                lease: Lease { id, token },
                attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
            })
        })
        .collect::<Result<_, QueueError>>()?;
    Ok(Claim {
        jobs,
        next_due_ms: u64::try_from(next).ok(),
    })
}
