//! Claim: lease due jobs, lanes in the order of their oldest due job, a few
//! per lane, each with a new fencing token.

use redb::ReadableTable;

use super::fault::{Fault, corrupt};
use super::job::{Job, Stage};
use super::tables::{Commit, TOKEN_SEQ, Tables};
use super::{log, order};
use crate::queue::{Claim, Claimed, Delivery, History, Lease, SUPPRESSED};

/// Takes up to `max` jobs due by `now`, at most `per_lane` from each lane
/// not held, lanes by score and jobs by due time (ties by id); pushes each
/// one's due time to `now + lease_ms` and gives it a new token. Says when
/// the earliest lane can next be claimed from, after the claim. A
/// regression of an ordered message is suppressed rather than handed out
/// (kept in the log as `history` says).
pub(super) fn claim(
    t: &mut Tables<'_>,
    now: u64,
    lease_ms: u64,
    max: usize,
    per_lane: usize,
    history: History,
) -> Result<(Claim, Commit), Fault> {
    let end = now.saturating_add(1);
    let mut lanes = Vec::new();
    for entry in t.lane_order.range((0u64, "")..(end, ""))?.take(max) {
        lanes.push(entry?.0.value().1.to_string());
    }
    if lanes.is_empty() {
        let next_due_ms = t.next_due_ms()?;
        return Ok((
            Claim {
                next_due_ms,
                ..Claim::default()
            },
            Commit::No,
        ));
    }
    let mut token = t.counters.get(TOKEN_SEQ)?.map_or(0, |v| v.value());
    let until = now.saturating_add(lease_ms);
    let mut claimed = Vec::new();
    let mut suppressed = Vec::new();
    for lane in &lanes {
        let room = max.saturating_sub(claimed.len()).min(per_lane);
        if room == 0 {
            break;
        }
        let lane = lane.as_str();
        let mut due = Vec::new();
        for entry in t
            .lane_due
            .range((lane, 0u64, "")..(lane, end, ""))?
            .take(room)
        {
            let (key, _) = entry?;
            let (_, due_ms, id) = key.value();
            due.push((due_ms, id.to_string()));
        }
        for (due_ms, id) in due {
            t.lane_due.remove((lane, due_ms, id.as_str()))?;
            // A due entry without its job is dropped, as the Redis backend does.
            let mut job = match t.job(&id) {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(fault) if fault.is_corrupt() => {
                    poisoned(t, lane, &id, None, &fault, now)?;
                    continue;
                }
                Err(fault) => return Err(fault),
            };
            let delivery = match read_delivery(t, &id) {
                Ok(delivery) => delivery,
                Err(fault) if fault.is_corrupt() => {
                    poisoned(t, lane, &id, Some(job), &fault, now)?;
                    continue;
                }
                Err(fault) => return Err(fault),
            };
            if order::regresses(t, &job)? {
                suppress(t, &id, job, history, now)?;
                suppressed.push((delivery.bot, delivery.webhook));
                continue;
            }
            token += 1;
            job.token = token;
            job.stage = Stage::Pending { due_ms: until };
            t.lane_due.insert((lane, until, id.as_str()), ())?;
            t.put_job(&id, &job)?;
            claimed.push(Claimed {
                delivery,
                lease: Lease { id, token },
                attempts: job.attempts_in_cycle(),
            });
        }
        t.rescore(lane, now)?;
    }
    t.counters.insert(TOKEN_SEQ, token)?;
    let next_due_ms = t.next_due_ms()?;
    Ok((
        Claim {
            jobs: claimed,
            next_due_ms,
            suppressed,
        },
        Commit::Yes,
    ))
}

/// Ends `job` (`id`, already out of its lane) as suppressed instead of
/// handing it out: kept for the log like a delivered job (or removed when
/// the log does not keep it), and its message's next job moves up.
fn suppress(
    t: &mut Tables<'_>,
    id: &str,
    mut job: Job,
    history: History,
    now: u64,
) -> Result<(), Fault> {
    order::advance(t, id, &job, false, now)?;
    if log::keeps(t, history, id, now)? {
        job.token = 0;
        job.stage = Stage::Suppressed {
            done_ms: now,
            reason: SUPPRESSED.to_string(),
        };
        t.put_job(id, &job)
    } else {
        t.delete(id, &job)
    }
}

/// The stored delivery of job `id`.
fn read_delivery(t: &Tables<'_>, id: &str) -> Result<Delivery, Fault> {
    let Some(payload) = t.payloads.get(id)? else {
        return Err(corrupt(id, "job without its payload"));
    };
    let (meta, body) = payload.value();
    Ok(Delivery::from_parts(id, meta, body.to_vec())?)
}

/// Moves job `id` of `lane`, whose record (`job`, when that much could be
/// read) or delivery cannot be read, to its bot's dead letters with the
/// reason, in the claim's own transaction: one bad record must not fail
/// the claim of every other job, nor come back every cycle.
fn poisoned(
    t: &mut Tables<'_>,
    lane: &str,
    id: &str,
    job: Option<Job>,
    fault: &Fault,
    now: u64,
) -> Result<(), Fault> {
    let (bot, webhook) = lane.split_once('/').unwrap_or((lane, ""));
    let mut job = job.unwrap_or_else(|| Job::new(bot, webhook, Stage::Pending { due_ms: now }));
    let reason = format!("unreadable queue record: {}", fault.0);
    tracing::error!(delivery = id, %reason, "dead-lettering a queue record this version cannot read");
    job.token = 0;
    job.stage = Stage::Dead {
        dead_ms: now,
        reason,
    };
    t.dead.insert((job.bot.as_str(), now, id), ())?;
    t.put_job(id, &job)
}
