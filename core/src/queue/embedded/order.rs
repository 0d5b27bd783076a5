//! Per-message order (see [`Order`](crate::queue::Order)): an ordered job
//! of message M in lane L is either M's head (the one job of M in the lane:
//! due, leased or waiting for a retry) or waits in `waiting`, by rank, out
//! of the lane until its turn. The same rules as `lua/lanes.lua`'s
//! `place_ordered` and `advance`.

use redb::ReadableTable;

use super::fault::Fault;
use super::job::{Job, Stage};
use super::tables::Tables;

/// Where message `message` of `lane` stands: its head (`""` when none),
/// the highest rank delivered + 1 (0: none), when the state expires (0
/// while it has a head) and how long it lives without one.
struct State {
    head: String,
    top: u64,
    expires: u64,
    ttl: u64,
}

fn state(t: &mut Tables<'_>, lane: &str, message: &str) -> Result<Option<State>, Fault> {
    Ok(t.order()?.messages.get((lane, message))?.map(|v| {
        let (head, top, expires, ttl) = v.value();
        State {
            head: head.to_string(),
            top,
            expires,
            ttl,
        }
    }))
}

/// Writes `state`, keeping the expiry index in step with `old_expires`.
fn put(
    t: &mut Tables<'_>,
    lane: &str,
    message: &str,
    state: &State,
    old_expires: u64,
) -> Result<(), Fault> {
    let order = t.order()?;
    if old_expires != 0 && old_expires != state.expires {
        order.message_expiry.remove((old_expires, lane, message))?;
    }
    if state.expires != 0 {
        order
            .message_expiry
            .insert((state.expires, lane, message), ())?;
    }
    order.messages.insert(
        (lane, message),
        (state.head.as_str(), state.top, state.expires, state.ttl),
    )?;
    Ok(())
}

/// Places the new ordered `job` (`id`), due at `now`: as its message's head
/// (in the lane) if the message has none, or if the head is not leased and
/// ranks later (the head then waits); waiting otherwise. Writes the job.
/// `ttl_ms`: how long the message's state outlives its last head.
pub(super) fn place(
    t: &mut Tables<'_>,
    id: &str,
    mut job: Job,
    now: u64,
    ttl_ms: u64,
) -> Result<(), Fault> {
    let Some(ordered) = job.ordered.clone() else {
        return Ok(());
    };
    let lane = job.lane();
    let message = ordered.message.as_str();
    let old = state(t, &lane, message)?;
    let old_expires = old.as_ref().map_or(0, |s| s.expires);
    let mut next = old.unwrap_or(State {
        head: String::new(),
        top: 0,
        expires: 0,
        ttl: ttl_ms,
    });
    if !next.head.is_empty()
        && let Some(mut head) = t.job(&next.head)?
        && let (Stage::Pending { due_ms }, Some(head_order)) = (&head.stage, &head.ordered)
    {
        if head.token != 0 || ordered.rank >= head_order.rank {
            t.order()?
                .waiting
                .insert((lane.as_str(), message, u64::from(ordered.rank), id), ())?;
            job.stage = Stage::Waiting { since_ms: now };
            return t.put_job(id, &job);
        }
        // The head waits for its turn (not leased) and comes later in the
        // message's life: it gives way.
        let head_id = next.head.clone();
        t.lane_due
            .remove((lane.as_str(), *due_ms, head_id.as_str()))?;
        t.order()?.waiting.insert(
            (
                lane.as_str(),
                message,
                u64::from(head_order.rank),
                head_id.as_str(),
            ),
            (),
        )?;
        head.stage = Stage::Waiting { since_ms: now };
        t.put_job(&head_id, &head)?;
    }
    // (A head that is gone or finished is simply replaced.)
    next.head = id.to_string();
    next.expires = 0;
    next.ttl = ttl_ms;
    put(t, &lane, message, &next, old_expires)?;
    t.lane_due.insert((lane.as_str(), now, id), ())?;
    job.stage = Stage::Pending { due_ms: now };
    t.put_job(id, &job)
}

/// Ordered `job` (`id`) has left its lane, `delivered` or not: records its
/// rank if delivered, and if it was its message's head, the lowest waiting
/// job of the message becomes the head, due at `now`. The caller rescores
/// the lane. Returns whether a job became due.
pub(super) fn advance(
    t: &mut Tables<'_>,
    id: &str,
    job: &Job,
    delivered: bool,
    now: u64,
) -> Result<bool, Fault> {
    let Some(ordered) = &job.ordered else {
        return Ok(false);
    };
    let lane = job.lane();
    let message = ordered.message.as_str();
    let Some(mut next) = state(t, &lane, message)? else {
        return Ok(false);
    };
    let mut promoted = false;
    let old_expires = next.expires;
    if delivered {
        next.top = next.top.max(u64::from(ordered.rank) + 1);
    }
    if next.head == id {
        let first = t
            .order()?
            .waiting
            .range((lane.as_str(), message, 0u64, "")..(lane.as_str(), message, u64::MAX, ""))?
            .next()
            .transpose()?
            .map(|(key, _)| {
                let (_, _, rank, waiting) = key.value();
                (rank, waiting.to_string())
            });
        next.head = match first {
            Some((rank, waiting)) => {
                t.order()?
                    .waiting
                    .remove((lane.as_str(), message, rank, waiting.as_str()))?;
                if let Some(mut job) = t.job(&waiting)? {
                    t.schedule(&waiting, &mut job, now)?;
                    promoted = true;
                }
                waiting
            }
            None => String::new(),
        };
    }
    next.expires = if next.head.is_empty() {
        now.saturating_add(next.ttl)
    } else {
        0
    };
    put(t, &lane, message, &next, old_expires)?;
    Ok(promoted)
}

/// Whether `job` is a regression to suppress: its webhook suppresses them
/// and a later status of its message was delivered already.
pub(super) fn regresses(t: &mut Tables<'_>, job: &Job) -> Result<bool, Fault> {
    let Some(ordered) = job.ordered.as_ref().filter(|o| o.suppress) else {
        return Ok(false);
    };
    Ok(state(t, &job.lane(), &ordered.message)?
        .is_some_and(|s| u64::from(ordered.rank) + 1 < s.top))
}

/// Removes up to `max` order states that expired by `now` (no head, past
/// the dedup window), oldest first. Returns how many went. Enqueues of
/// ordered deliveries call it, so a deployment without ordered webhooks
/// never opens the order's tables.
pub(super) fn purge_expired(t: &mut Tables<'_>, now: u64, max: usize) -> Result<usize, Fault> {
    let order = t.order()?;
    let mut gone = Vec::new();
    for entry in order
        .message_expiry
        .range((0u64, "", "")..(now.saturating_add(1), "", ""))?
        .take(max)
    {
        let (key, _) = entry?;
        let (expires, lane, message) = key.value();
        gone.push((expires, lane.to_string(), message.to_string()));
    }
    for (expires, lane, message) in &gone {
        order
            .message_expiry
            .remove((*expires, lane.as_str(), message.as_str()))?;
        order.messages.remove((lane.as_str(), message.as_str()))?;
    }
    Ok(gone.len())
}
