//! The delivery log in the embedded store (see
//! [`History`](crate::queue::History)): writing entries at enqueue,
//! expiring and capping them, and reading pages back.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::fault::{Fault, corrupt};
use super::job::{Job, Stage};
use super::tables::{ATTEMPTS, Commit, JOBS, LOG, PAYLOADS, Tables};
use crate::queue::history::Pager;
use crate::queue::{
    Attempt, BORN_DEAD, Delivery, DeliveryPage, DeliveryQuery, DeliveryRecord, History, Outcome,
    Resend,
};

/// Entries expired per enqueue at least; plus two per delivery written, so
/// expiry keeps up with logging.
const EXPIRE_BASE: usize = 64;

/// The `by` of the whole log, of one message, of one recipient.
fn by_message(message_id: &str) -> String {
    format!("m:{message_id}")
}

fn by_recipient(recipient: &str) -> String {
    format!("r:{recipient}")
}

/// The `counters` key of `bot`'s number of entries.
fn count_key(bot: &str) -> String {
    format!("log:{bot}")
}

/// Logs `delivery` under its bot, by its creation time (the time readers
/// filter on and see, and the one its retention counts from).
pub(super) fn add(t: &mut Tables<'_>, delivery: &Delivery) -> Result<(), Fault> {
    let (bot, id) = (delivery.bot.as_str(), delivery.id.as_str());
    let created = delivery.created_ms;
    let message = delivery.message_id.as_deref().unwrap_or("");
    let recipient = delivery.recipient.as_deref().unwrap_or("");
    t.log.insert((bot, "", created, id), ())?;
    if !message.is_empty() {
        t.log
            .insert((bot, by_message(message).as_str(), created, id), ())?;
    }
    if !recipient.is_empty() {
        t.log
            .insert((bot, by_recipient(recipient).as_str(), created, id), ())?;
    }
    t.log_order
        .insert((created, id), (bot, message, recipient))?;
    let key = count_key(bot);
    let count = t.counters.get(key.as_str())?.map_or(0, |v| v.value());
    t.counters.insert(key.as_str(), count + 1)?;
    Ok(())
}

/// Drops entries created before `now - retention`, and the oldest of each
/// of `bots` past `max_per_bot`; `extra` bounds the expiry work of this
/// call. Returns how many entries went.
pub(super) fn trim(
    t: &mut Tables<'_>,
    history: History,
    bots: &[&str],
    now: u64,
    extra: usize,
) -> Result<usize, Fault> {
    let cutoff = now.saturating_sub(crate::queue::delivery::millis(history.retention));
    let mut old = Vec::new();
    for entry in t
        .log_order
        .range((0u64, "")..(cutoff, ""))?
        .take(EXPIRE_BASE + extra)
    {
        let (key, _) = entry?;
        let (created, id) = key.value();
        old.push((created, id.to_string()));
    }
    let mut dropped = old.len();
    for (created, id) in old {
        remove(t, created, &id)?;
    }
    for bot in bots {
        let key = count_key(bot);
        let count = t.counters.get(key.as_str())?.map_or(0, |v| v.value());
        let over = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .saturating_sub(history.max_per_bot);
        let mut oldest = Vec::new();
        for entry in t
            .log
            .range((*bot, "", 0u64, "")..(*bot, "", u64::MAX, ""))?
            .take(over)
        {
            let (key, _) = entry?;
            let (_, _, created, id) = key.value();
            oldest.push((created, id.to_string()));
        }
        dropped += oldest.len();
        for (created, id) in oldest {
            remove(t, created, &id)?;
        }
    }
    Ok(dropped)
}

/// Takes delivery `id` (created at `created`) out of the log; a delivered
/// job goes with it (pending and dead ones stay: they are still work).
fn remove(t: &mut Tables<'_>, created: u64, id: &str) -> Result<(), Fault> {
    let Some(entry) = t.log_order.remove((created, id))? else {
        return Ok(());
    };
    let (bot, message, recipient) = entry.value();
    let (bot, message, recipient) = (bot.to_string(), message.to_string(), recipient.to_string());
    drop(entry);
    t.log.remove((bot.as_str(), "", created, id))?;
    if !message.is_empty() {
        t.log
            .remove((bot.as_str(), by_message(&message).as_str(), created, id))?;
    }
    if !recipient.is_empty() {
        t.log
            .remove((bot.as_str(), by_recipient(&recipient).as_str(), created, id))?;
    }
    let key = count_key(&bot);
    let count = t.counters.get(key.as_str())?.map_or(0, |v| v.value());
    t.counters.insert(key.as_str(), count.saturating_sub(1))?;
    if let Some(job) = t.job(id)?
        && matches!(
            job.stage,
            Stage::Delivered { .. } | Stage::Suppressed { .. }
        )
    {
        t.delete(id, &job)?;
    }
    Ok(())
}

/// Whether delivery `id` is still within the
/// log's retention at `now`: a delivered job is then kept.
pub(super) fn keeps(t: &Tables<'_>, history: History, id: &str, now: u64) -> Result<bool, Fault> {
    if !history.is_on() {
        return Ok(false);
    }
    let Some(payload) = t.payloads.get(id)? else {
        return Ok(false);
    };
    // Only the creation time: an ack should not pay for the whole record.
    #[derive(serde::Deserialize)]
    struct Created {
        created_ms: u64,
    }
    let created = serde_json::from_slice::<Created>(payload.value().0)
        .map_err(|e| corrupt(id, format!("unreadable delivery metadata: {e}")))?
        .created_ms;
    // The entry itself must still be there (not capped away).
    Ok(t.log_order.get((created, id))?.is_some()
        && created.saturating_add(crate::queue::delivery::millis(history.retention)) > now)
}

/// One page of `bot`'s log; see [`Queue::deliveries`](crate::queue::Queue::deliveries).
pub(super) fn page(db: &Database, bot: &str, query: &DeliveryQuery) -> Result<DeliveryPage, Fault> {
    let txn = db.begin_read()?;
    let log = txn.open_table(LOG)?;
    let reader = Reader {
        jobs: txn.open_table(JOBS)?,
        payloads: txn.open_table(PAYLOADS)?,
        attempts: txn.open_table(ATTEMPTS)?,
    };
    let by = match (&query.message_id, &query.recipient) {
        (Some(message), _) => by_message(message),
        (None, Some(recipient)) => by_recipient(recipient),
        (None, None) => String::new(),
    };
    let by = by.as_str();
    let (max, after) = query.start();
    let min = query.since_ms.unwrap_or(0);
    let mut pager = Pager::new(query);
    if min > max {
        return Ok(pager.finish());
    }
    let low = (bot, by, min, "");
    // Within the cursor's ms, ids below the cursor's; else all of `max`.
    let entries = match (after, max.checked_add(1)) {
        (Some(after), _) => log.range(low..(bot, by, max, after))?,
        (None, Some(next)) => log.range(low..(bot, by, next, ""))?,
        (None, None) => log.range(low..=(bot, by, u64::MAX, "\u{10ffff}"))?,
    };
    for entry in entries.rev() {
        let (key, _) = entry?;
        let (_, _, created, id) = key.value();
        let record = reader.record(id, false).inspect_err(|fault| {
            tracing::warn!(delivery = id, error = %fault.0, "a logged delivery cannot be read; left out of the page");
        });
        if !pager.offer(created, id, record.ok().flatten()) {
            break;
        }
    }
    Ok(pager.finish())
}

/// Delivery `id` of `bot` with its body; see [`Queue::delivery`](crate::queue::Queue::delivery).
pub(super) fn one(db: &Database, bot: &str, id: &str) -> Result<Option<DeliveryRecord>, Fault> {
    let txn = db.begin_read()?;
    let reader = Reader {
        jobs: txn.open_table(JOBS)?,
        payloads: txn.open_table(PAYLOADS)?,
        attempts: txn.open_table(ATTEMPTS)?,
    };
    Ok(reader
        .record(id, true)?
        .filter(|record| record.delivery.bot == bot))
}

/// Sends delivery `id` of `bot` again; see [`Queue::resend`](crate::queue::Queue::resend).
pub(super) fn resend(
    t: &mut Tables<'_>,
    bot: &str,
    id: &str,
    now: u64,
) -> Result<(Resend, Commit), Fault> {
    let Some(mut job) = t.job(id)?.filter(|job| job.bot == bot) else {
        return Ok((Resend::NotFound, Commit::No));
    };
    match &job.stage {
        Stage::Pending { .. } | Stage::Waiting { .. } => {
            return Ok((Resend::AlreadyPending, Commit::No));
        }
        Stage::Dead { reason, .. } if reason.starts_with(BORN_DEAD) => {
            return Ok((Resend::NothingToSend, Commit::No));
        }
        Stage::Dead { .. } | Stage::Delivered { .. } | Stage::Suppressed { .. } => {}
    }
    let lane = t.requeue(id, &mut job, now)?;
    t.rescore(&lane, now)?;
    Ok((Resend::Queued, Commit::Yes))
}

/// The tables a record is read from, in one read transaction.
struct Reader {
    jobs: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    payloads: redb::ReadOnlyTable<&'static str, (&'static [u8], &'static [u8])>,
    attempts: redb::ReadOnlyTable<(&'static str, u32), &'static [u8]>,
}

impl Reader {
    /// Job `id` as the log shows it (with its body when `with_body`);
    /// `None` when it is gone.
    fn record(&self, id: &str, with_body: bool) -> Result<Option<DeliveryRecord>, Fault> {
        let Some(job) = self.jobs.get(id)? else {
            return Ok(None);
        };
        let job = Job::decode(id, job.value())?;
        let Some(payload) = self.payloads.get(id)? else {
            return Err(corrupt(id, "job without its payload"));
        };
        let (meta, body) = payload.value();
        let body_bytes = body.len();
        let delivery =
            Delivery::from_parts(id, meta, if with_body { body.to_vec() } else { Vec::new() })?;
        let (outcome, reason, finished_ms) = match job.stage {
            Stage::Pending { .. } | Stage::Waiting { .. } => (Outcome::Pending, None, None),
            Stage::Dead { dead_ms, reason } => (Outcome::Dead, Some(reason), Some(dead_ms)),
            Stage::Delivered { done_ms } => (Outcome::Delivered, None, Some(done_ms)),
            Stage::Suppressed { done_ms, reason } => {
                (Outcome::Suppressed, Some(reason), Some(done_ms))
            }
        };
        let mut attempts = Vec::with_capacity(job.attempts as usize);
        for seq in 0..job.attempts {
            if let Some(attempt) = self.attempts.get((id, seq))? {
                attempts.push(Attempt::from_json(id, seq as usize, attempt.value())?);
            }
        }
        Ok(Some(DeliveryRecord {
            delivery,
            body_bytes,
            outcome,
            reason,
            finished_ms,
            attempts,
        }))
    }
}
