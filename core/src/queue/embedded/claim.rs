//! Claim: lease due jobs, earliest first, each with a new fencing token.

use redb::ReadableTable;

use super::fault::{Fault, corrupt};
use super::job::Stage;
use super::tables::{Commit, TOKEN_SEQ, Tables};
use crate::queue::{Claimed, Delivery, Lease};

/// Takes up to `max` jobs due by `now` in due-time order (ties by id),
/// pushes each one's due time to `now + lease_ms` and gives it a new token.
pub(super) fn claim(
    t: &mut Tables<'_>,
    now: u64,
    lease_ms: u64,
    max: usize,
) -> Result<(Vec<Claimed>, Commit), Fault> {
    let mut due = Vec::new();
    for entry in t
        .due
        .range((0u64, "")..(now.saturating_add(1), ""))?
        .take(max)
    {
        let (key, _) = entry?;
        let (due_ms, id) = key.value();
        due.push((due_ms, id.to_string()));
    }
    if due.is_empty() {
        return Ok((Vec::new(), Commit::No));
    }
    let mut token = t.counters.get(TOKEN_SEQ)?.map_or(0, |v| v.value());
    let until = now.saturating_add(lease_ms);
    let mut claimed = Vec::with_capacity(due.len());
    for (due_ms, id) in due {
        t.due.remove((due_ms, id.as_str()))?;
        // A due entry without its job is dropped, as the Redis backend does.
        let Some(mut job) = t.job(&id)? else { continue };
        let delivery = {
            let Some(payload) = t.payloads.get(id.as_str())? else {
                return Err(corrupt(&id, "job without its payload"));
            };
            let (meta, body) = payload.value();
            Delivery::from_parts(&id, meta, body.to_vec())?
        };
        token += 1;
        job.token = token;
        job.stage = Stage::Pending { due_ms: until };
        t.due.insert((until, id.as_str()), ())?;
        t.put_job(&id, &job)?;
        claimed.push(Claimed {
            delivery,
            lease: Lease { id, token },
            attempts: job.attempts_in_cycle(),
        });
    }
    t.counters.insert(TOKEN_SEQ, token)?;
    Ok((claimed, Commit::Yes))
}
