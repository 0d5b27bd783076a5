//! Enqueue: dedup marks and deliveries of a whole batch in one transaction.

use redb::ReadableTable;

use std::collections::HashMap;

use super::fault::Fault;
use super::job::{Job, Ordered, Stage};
use super::tables::{Commit, TOKEN_SEQ, Tables};
use super::{log, order};
use crate::queue::delivery::millis;
use crate::queue::{Claimed, Enqueued, Handoff, History, Lease, NewDelivery, NewEvent, Order};

/// Expired dedup marks purged per enqueue at least; plus two per event in
/// the batch, so purging keeps up with marking.
const PURGE_BASE: usize = 64;

/// Marks each event not seen within its window and queues its deliveries
/// (due at `now`, or dead at birth), logging them as `history` says;
/// counts the rest as duplicates. Leases what `handoff` allows to the
/// caller (see [`Handoff`]), and says whether it queued any delivery for a
/// claim.
pub(super) fn enqueue(
    t: &mut Tables<'_>,
    events: &[NewEvent],
    now: u64,
    window_ms: u64,
    history: History,
    handoff: Handoff,
) -> Result<((Enqueued, bool), Commit), Fault> {
    let mut taking = Taking::start(t, handoff, now)?;
    let mut purged = purge_expired_marks(t, now, PURGE_BASE + 2 * events.len())?;
    let ordered = events
        .iter()
        .flat_map(|e| &e.deliveries)
        .any(|d| d.delivery().ordered_message().is_some());
    if ordered {
        purged += order::purge_expired(t, now, PURGE_BASE + 2 * events.len())?;
    }
    let expiry = now.saturating_add(window_ms);
    let mut out = Enqueued::default();
    let mut lanes = std::collections::BTreeSet::new();
    for event in events {
        let fresh = mark(t, &event.bot, &event.event_id, now, expiry)?;
        out.record(!fresh);
        if !fresh {
            continue;
        }
        for new in &event.deliveries {
            if let Some(lane) = insert(t, &event.bot, new, now, window_ms, &mut taking)? {
                lanes.insert(lane);
            }
            if history.is_on() {
                log::add(t, new.delivery())?;
            }
        }
    }
    for lane in &lanes {
        t.rescore(lane, now)?;
    }
    if history.is_on() {
        let mut bots: Vec<&str> = events.iter().map(|e| e.bot.as_str()).collect();
        bots.sort_unstable();
        bots.dedup();
        let logged = events.iter().map(|e| e.deliveries.len()).sum::<usize>();
        purged += log::trim(t, history, &bots, now, 2 * logged)?;
    }
    let queued = taking.queued > 0;
    out.leased = taking.finish(t)?;
    let commit = if out.accepted > 0 || purged > 0 {
        Commit::Yes
    } else {
        Commit::No
    };
    Ok(((out, queued), commit))
}

/// Sets the dedup mark of (`bot`, `event_id`) to expire at `expiry`, unless
/// a live one exists: `false` for a duplicate. An expired mark is absent.
fn mark(
    t: &mut Tables<'_>,
    bot: &str,
    event_id: &str,
    now: u64,
    expiry: u64,
) -> Result<bool, Fault> {
    let previous = t.dedup.get((bot, event_id))?.map(|v| v.value());
    if let Some(previous) = previous {
        if previous > now {
            return Ok(false);
        }
        t.dedup_expiry.remove((previous, bot, event_id))?;
    }
    t.dedup.insert((bot, event_id), expiry)?;
    t.dedup_expiry.insert((expiry, bot, event_id), ())?;
    Ok(true)
}

/// The deliveries an enqueue leases to its caller, as it goes.
struct Taking {
    /// How many more it may lease (0 once none may).
    left: usize,
    /// At most this many of one lane.
    per_lane: usize,
    /// Their lease ends then.
    until: u64,
    /// The last fencing token handed out.
    token: u64,
    /// Leased so far per lane, or `per_lane` for a held lane.
    per: HashMap<String, usize>,
    /// What was leased.
    leased: Vec<Claimed>,
    /// Pending deliveries left for a claim.
    queued: usize,
}

impl Taking {
    /// Leases nothing unless nothing in the queue is due now: a claim made
    /// now would take an older due job first.
    fn start(t: &Tables<'_>, handoff: Handoff, now: u64) -> Result<Self, Fault> {
        let caught_up = handoff.max > 0
            && t.lane_order
                .range((0u64, "")..(now.saturating_add(1), ""))?
                .next()
                .is_none();
        Ok(Taking {
            left: if caught_up { handoff.max } else { 0 },
            per_lane: handoff.per_lane,
            until: now.saturating_add(millis(handoff.lease)),
            token: 0,
            per: HashMap::new(),
            leased: Vec::new(),
            queued: 0,
        })
    }

    /// A fencing token for a new delivery of `lane` to lease, if one may be.
    fn lease(&mut self, t: &Tables<'_>, lane: &str, now: u64) -> Result<Option<u64>, Fault> {
        if self.left == 0 {
            return Ok(None);
        }
        let taken = match self.per.get_mut(lane) {
            Some(taken) => taken,
            None => {
                let held = t.lanes.get(lane)?.is_some_and(|v| v.value().1 > now);
                let start = if held { self.per_lane } else { 0 };
                self.per.entry(lane.to_string()).or_insert(start)
            }
        };
        if *taken >= self.per_lane {
            return Ok(None);
        }
        *taken += 1;
        self.left -= 1;
        if self.token == 0 {
            self.token = t.counters.get(TOKEN_SEQ)?.map_or(0, |v| v.value());
        }
        self.token += 1;
        Ok(Some(self.token))
    }

    /// Records the last token handed out; what was leased.
    fn finish(self, t: &mut Tables<'_>) -> Result<Vec<Claimed>, Fault> {
        if !self.leased.is_empty() {
            t.counters.insert(TOKEN_SEQ, self.token)?;
        }
        Ok(self.leased)
    }
}

/// Writes one delivery: its payload, its state and its index entry (an
/// ordered one may wait behind its message's head instead; `window_ms` is
/// how long its message's order outlives the last of it; one `taking`
/// allows is leased to the caller at once).
/// Returns its lane if it is pending there (the caller rescores it).
fn insert(
    t: &mut Tables<'_>,
    bot: &str,
    new: &NewDelivery,
    now: u64,
    window_ms: u64,
    taking: &mut Taking,
) -> Result<Option<String>, Fault> {
    let delivery = new.delivery();
    let id = delivery.id.as_str();
    let meta = delivery.meta_json()?;
    t.payloads
        .insert(id, (meta.as_slice(), delivery.body.as_slice()))?;
    if let (NewDelivery::Pending(_), Some(message)) = (new, delivery.ordered_message()) {
        let mut job = Job::new(bot, &delivery.webhook, Stage::Waiting { since_ms: now });
        job.ordered = Some(Ordered {
            suppress: delivery.order == Order::PerMessageNoRegressions,
            message: message.to_string(),
            rank: delivery.status.lifecycle_rank(),
        });
        order::place(t, id, job, now, window_ms)?;
        taking.queued += 1;
        return Ok(Some(delivery.lane()));
    }
    let mut lane = None;
    let mut token = 0;
    let stage = match new {
        NewDelivery::Pending(_) => {
            let name = delivery.lane();
            let due_ms = match taking.lease(t, &name, now)? {
                Some(leased) => {
                    token = leased;
                    taking.leased.push(Claimed {
                        delivery: delivery.clone(),
                        lease: Lease {
                            id: id.to_string(),
                            token,
                        },
                        attempts: 0,
                    });
                    taking.until
                }
                None => {
                    taking.queued += 1;
                    now
                }
            };
            t.lane_due.insert((name.as_str(), due_ms, id), ())?;
            lane = Some(name);
            Stage::Pending { due_ms }
        }
        NewDelivery::Dead(_, reason) => {
            t.dead.insert((bot, now, id), ())?;
            Stage::Dead {
                dead_ms: now,
                reason: reason.clone(),
            }
        }
    };
    let mut job = Job::new(bot, &delivery.webhook, stage);
    job.token = token;
    t.put_job(id, &job)?;
    Ok(lane)
}

/// Removes up to `max` dedup marks that expired by `now`, oldest first, so
/// the table does not grow forever. Returns how many went.
pub(super) fn purge_expired_marks(
    t: &mut Tables<'_>,
    now: u64,
    max: usize,
) -> Result<usize, Fault> {
    let mut expired = Vec::new();
    for entry in t
        .dedup_expiry
        .range((0u64, "", "")..(now.saturating_add(1), "", ""))?
        .take(max)
    {
        let (key, _) = entry?;
        let (expiry, bot, event_id) = key.value();
        expired.push((expiry, bot.to_string(), event_id.to_string()));
    }
    for (expiry, bot, event_id) in &expired {
        let key = (bot.as_str(), event_id.as_str());
        t.dedup_expiry.remove((*expiry, key.0, key.1))?;
        // The index and the marks move together; check anyway, so a stray
        // index entry never removes a live mark.
        let current = t.dedup.get(key)?.map(|v| v.value());
        if current == Some(*expiry) {
            t.dedup.remove(key)?;
        }
    }
    Ok(expired.len())
}
