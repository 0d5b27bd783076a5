//! Claiming due jobs: `claim.lua` leases them, this reads them back.

use std::time::Duration;

use super::{RedisQueue, millis};
use crate::queue::{Claimed, Delivery, Lease, QueueError};

/// Runs `claim.lua`; see [`Queue::claim`](crate::queue::Queue::claim).
pub(super) async fn claim(
    queue: &RedisQueue,
    max: usize,
    per_lane: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, QueueError> {
    // id, fencing token, metadata, body, attempts made.
    type Row = (String, u64, Vec<u8>, Vec<u8>, i64);
    let rows: Vec<Row> = queue
        .run(&queue.scripts.claim, |call| {
            call.arg(queue.clock.now_ms())
                .arg(millis(lease))
                .arg(max)
                .arg(per_lane);
        })
        .await?;
    rows.into_iter()
        .map(|(id, token, meta, body, attempts)| {
            Ok(Claimed {
                delivery: Delivery::from_parts(&id, &meta, body)?,
                lease: Lease { id, token },
                attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
            })
        })
        .collect()
}
