//! The end of a lease: ack, retry or dead-letter, each only with the
//! current fencing token.

use super::fault::Fault;
use super::job::Stage;
use super::tables::{Commit, Tables};
use super::{log, order};
use crate::queue::History;

/// What ending a lease did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// The lease was stale: nothing changed.
    Stale,
    /// Done.
    Done,
    /// Done, and the next delivery of its message (per-message order)
    /// became due: worth a wake-up.
    NextDue,
}

impl Settled {
    fn after(promoted: bool) -> Self {
        if promoted {
            Settled::NextDue
        } else {
            Settled::Done
        }
    }
}

/// Marks a delivered job, recording `attempt` (JSON) if any: kept in the
/// delivery log while `history` keeps it, else removed with its payload
/// and attempts.
pub(super) fn ack(
    t: &mut Tables<'_>,
    id: &str,
    token: u64,
    attempt: Option<&[u8]>,
    history: History,
    now: u64,
) -> Result<(Settled, Commit), Fault> {
    let Some(mut job) = end_attempt(t, id, token, attempt)? else {
        return Ok((Settled::Stale, Commit::No));
    };
    let promoted = order::advance(t, id, &job, true, now)?;
    t.rescore(&job.lane(), now)?;
    if log::keeps(t, history, id, now)? {
        job.token = 0;
        job.stage = Stage::Delivered { done_ms: now };
        t.put_job(id, &job)?;
    } else {
        t.delete(id, &job)?;
    }
    Ok((Settled::after(promoted), Commit::Yes))
}

/// Records `attempt` (JSON) if any, makes the job due at `due_ms` and ends
/// the lease. `false` for a stale lease.
pub(super) fn retry(
    t: &mut Tables<'_>,
    id: &str,
    token: u64,
    attempt: Option<&[u8]>,
    due_ms: u64,
    now: u64,
) -> Result<(bool, Commit), Fault> {
    let Some(mut job) = end_attempt(t, id, token, attempt)? else {
        return Ok((false, Commit::No));
    };
    t.schedule(id, &mut job, due_ms)?;
    t.rescore(&job.lane(), now)?;
    Ok((true, Commit::Yes))
}

/// Records `attempt` (JSON) if any and moves the job to its bot's dead
/// letters, dead at `now`.
pub(super) fn dead_letter(
    t: &mut Tables<'_>,
    id: &str,
    token: u64,
    attempt: Option<&[u8]>,
    reason: &str,
    now: u64,
) -> Result<(Settled, Commit), Fault> {
    let Some(mut job) = end_attempt(t, id, token, attempt)? else {
        return Ok((Settled::Stale, Commit::No));
    };
    job.token = 0;
    job.stage = Stage::Dead {
        dead_ms: now,
        reason: reason.to_string(),
    };
    t.dead.insert((job.bot.as_str(), now, id), ())?;
    t.put_job(id, &job)?;
    let promoted = order::advance(t, id, &job, false, now)?;
    t.rescore(&job.lane(), now)?;
    Ok((Settled::after(promoted), Commit::Yes))
}

/// The job leased as `id` with `token`, taken out of its lane's index with
/// `attempt` (JSON) recorded; `None` for a stale lease (nothing changed).
/// Shared by ack, retry and dead-letter.
fn end_attempt(
    t: &mut Tables<'_>,
    id: &str,
    token: u64,
    attempt: Option<&[u8]>,
) -> Result<Option<super::job::Job>, Fault> {
    let Some(mut job) = t.leased(id, token)? else {
        return Ok(None);
    };
    if let Some(attempt) = attempt {
        t.record_attempt(id, &mut job, attempt)?;
    }
    t.unindex(id, &job)?;
    Ok(Some(job))
}
