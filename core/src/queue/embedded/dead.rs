//! Dead letters: listing a bot's, and replaying them.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::fault::{Fault, corrupt};
use super::job::{Job, Stage};
use super::tables::{ATTEMPTS, Commit, DEAD, DEAD_END_MS, JOBS, PAYLOADS, Tables};
use crate::queue::{Attempt, BORN_DEAD, DeadLetter, Delivery};

/// The newest `limit` dead letters of `bot`, newest first (ties by id,
/// descending, as Redis orders them).
pub(super) fn list(db: &Database, bot: &str, limit: usize) -> Result<Vec<DeadLetter>, Fault> {
    let txn = db.begin_read()?;
    let dead = txn.open_table(DEAD)?;
    let jobs = txn.open_table(JOBS)?;
    let payloads = txn.open_table(PAYLOADS)?;
    let attempts = txn.open_table(ATTEMPTS)?;
    let mut out = Vec::new();
    for entry in dead
        .range((bot, 0u64, "")..(bot, DEAD_END_MS, ""))?
        .rev()
        .take(limit)
    {
        let (key, _) = entry?;
        let (_, _, id) = key.value();
        let read = || -> Result<Option<DeadLetter>, Fault> {
            let Some(job) = jobs.get(id)? else {
                return Ok(None);
            };
            let job = Job::decode(id, job.value())?;
            let Stage::Dead { dead_ms, reason } = job.stage else {
                return Ok(None);
            };
            let Some(payload) = payloads.get(id)? else {
                return Err(corrupt(id, "job without its payload"));
            };
            let (meta, body) = payload.value();
            let mut history = Vec::with_capacity(job.attempts as usize);
            for seq in 0..job.attempts {
                if let Some(attempt) = attempts.get((id, seq))? {
                    history.push(Attempt::from_json(id, seq as usize, attempt.value())?);
                }
            }
            Ok(Some(DeadLetter {
                delivery: Delivery::from_parts(id, meta, Vec::new())?,
                body_bytes: body.len(),
                reason,
                dead_ms,
                attempts: history,
            }))
        };
        match read() {
            Ok(Some(letter)) => out.push(letter),
            Ok(None) => {}
            // One unreadable letter must not hide the others.
            Err(fault) if fault.is_corrupt() => {
                tracing::warn!(delivery = id, error = %fault.0, "a dead letter cannot be read; left out of the list");
            }
            Err(fault) => return Err(fault),
        }
    }
    Ok(out)
}

/// Queues dead letters of `bot` again (all, or the one with `id`), due at
/// `now`, with a fresh attempt count; their attempts are kept. Returns how
/// many were replayed.
pub(super) fn replay(
    t: &mut Tables<'_>,
    bot: &str,
    id: Option<&str>,
    now: u64,
) -> Result<(usize, Commit), Fault> {
    let mut ids = Vec::new();
    match id {
        None => {
            for entry in t.dead.range((bot, 0u64, "")..(bot, DEAD_END_MS, ""))? {
                let (key, _) = entry?;
                ids.push(key.value().2.to_string());
            }
        }
        Some(id) => {
            let is_dead_here = t
                .job(id)?
                .is_some_and(|job| job.bot == bot && matches!(job.stage, Stage::Dead { .. }));
            if is_dead_here {
                ids.push(id.to_string());
            }
        }
    }
    let mut replayed = 0;
    let mut lanes = std::collections::BTreeSet::new();
    for id in &ids {
        let Some(mut job) = t.job(id)? else { continue };
        if matches!(&job.stage, Stage::Dead { reason, .. } if reason.starts_with(BORN_DEAD)) {
            continue;
        }
        lanes.insert(t.requeue(id, &mut job, now)?);
        replayed += 1;
    }
    for lane in &lanes {
        t.rescore(lane, now)?;
    }
    let commit = if replayed > 0 {
        Commit::Yes
    } else {
        Commit::No
    };
    Ok((replayed, commit))
}
