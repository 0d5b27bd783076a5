//! Reading a bot's dead letters back.

use super::RedisQueue;
use crate::queue::{Attempt, DeadLetter, Delivery, QueueError};

/// Runs `dead_letters.lua`; see
/// [`Queue::dead_letters`](crate::queue::Queue::dead_letters).
pub(super) async fn dead_letters(
    queue: &RedisQueue,
    bot: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    type Row = (String, Vec<u8>, usize, String, String, Vec<Vec<u8>>);
    let rows: Vec<Row> = queue
        .run(queue.shard_of(bot), &queue.scripts.dead_letters, |call| {
            call.arg(bot).arg(limit.max(1));
        })
        .await?;
    let mut letters = Vec::with_capacity(rows.len());
    for (id, meta, body_bytes, reason, dead_ms, attempts) in rows {
        let corrupt = |reason: String| QueueError::Corrupt {
            id: id.clone(),
            reason,
        };
        let read = || -> Result<DeadLetter, QueueError> {
            let attempts = attempts
                .iter()
                .enumerate()
                .map(|(seq, a)| Attempt::from_json(&id, seq, a))
                .collect::<Result<_, _>>()?;
            Ok(DeadLetter {
                delivery: Delivery::from_parts(&id, &meta, Vec::new())?,
                body_bytes,
                reason: reason.clone(),
                dead_ms: dead_ms
                    .parse()
                    .map_err(|e: std::num::ParseIntError| corrupt(e.to_string()))?,
                attempts,
            })
        };
        match read() {
            Ok(letter) => letters.push(letter),
            // One unreadable letter must not hide the others.
            Err(error) => {
                tracing::warn!(delivery = %id, %error, "a dead letter cannot be read; left out of the list");
            }
        }
    }
    Ok(letters)
}
