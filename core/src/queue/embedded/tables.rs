//! The tables of the store, and the record-level steps operations share.
//!
//! | table | key | value |
//! |---|---|---|
//! | `jobs` | id | [`Job`]: bot, webhook, lease token, attempt counts, due time or death |
//! | `payloads` | id | (delivery metadata JSON, body): written once |
//! | `lane_due` | (lane, due ms, id) | — : every pending job, leased or not, in its lane |
//! | `lanes` | lane | (score, hold until ms): score = when the lane can next be claimed from (its earliest job, or its hold if later); `u64::MAX` for a lane with no jobs but a live hold |
//! | `lane_order` | (score, lane) | — : the lanes with jobs, by score |
//! | `attempts` | (id, seq) | attempt JSON, seq from 0 |
//! | `dead` | (bot, dead ms, id) | — : the bot's dead letters |
//! | `log` | (bot, by, created ms, id) | — : the bot's [delivery log](crate::queue::History); by is `""` for the whole log, `m:<message_id>` and `r:<recipient>` for one message or recipient |
//! | `log_order` | (created ms, id) | (bot, message id, recipient): every logged delivery by age, to expire and cap the log |
//! | `dedup` | (bot, event id) | expiry ms of the mark |
//! | `dedup_expiry` | (expiry ms, bot, event id) | — : marks in expiry order, to purge |
//! | `messages` | (lane, message id) | (head id, top, expires ms, ttl ms): per-message order; head `""` when none, top the highest rank delivered + 1 (0: none), expires 0 while a head exists |
//! | `waiting` | (lane, message id, rank, id) | — : ordered jobs waiting behind their message's head |
//! | `message_expiry` | (expires ms, lane, message id) | — : order states without a head, to purge |
//! | `counters` | name | `token` (last fencing token), `schema` (layout version), `log:<bot>` (entries in the bot's log) |

use redb::{Durability, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::fault::{Fault, corrupt};
use super::job::{Job, Stage};

pub(super) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub(super) const PAYLOADS: TableDefinition<&str, (&[u8], &[u8])> = TableDefinition::new("payloads");
pub(super) const LANE_DUE: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("lane_due");
pub(super) const LANES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("lanes");
pub(super) const LANE_ORDER: TableDefinition<(u64, &str), ()> = TableDefinition::new("lane_order");
/// The single due index of layout version 1, before lanes (migrated away).
pub(super) const OLD_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("due");
pub(super) const ATTEMPTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("attempts");
pub(super) const DEAD: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("dead");
pub(super) const DEDUP: TableDefinition<(&str, &str), u64> = TableDefinition::new("dedup");
pub(super) const DEDUP_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("dedup_expiry");
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(super) const MESSAGES: TableDefinition<(&str, &str), (&str, u64, u64, u64)> =
    TableDefinition::new("messages");
pub(super) const WAITING: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("waiting");
pub(super) const MESSAGE_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("message_expiry");
pub(super) const LOG: TableDefinition<(&str, &str, u64, &str), ()> = TableDefinition::new("log");
pub(super) const LOG_ORDER: TableDefinition<(u64, &str), (&str, &str, &str)> =
    TableDefinition::new("log_order");

/// `counters` key: the last fencing token handed out.
pub(super) const TOKEN_SEQ: &str = "token";
/// `counters` key: the layout version of the tables.
pub(super) const SCHEMA: &str = "schema";
/// The layout this version writes and reads.
pub(super) const SCHEMA_VERSION: u64 = 2;
/// The layout before lanes, which opening migrates.
pub(super) const SCHEMA_WITHOUT_LANES: u64 = 1;

/// The `lanes` score of a lane with no pending job (kept for its hold).
const NO_JOBS: u64 = u64::MAX;

/// The end (exclusive) of the key range of `bot`'s dead letters; the start
/// is `(bot, 0, "")`. No job dies at `u64::MAX` ms.
pub(super) const DEAD_END_MS: u64 = u64::MAX;

/// Whether a write transaction changed anything: an unchanged one is
/// aborted, so a claim that finds nothing costs no fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Commit (and fsync).
    Yes,
    /// Nothing was written: abort.
    No,
}

/// Every table, opened in one write transaction.
pub(super) struct Tables<'txn> {
    pub(super) jobs: Table<'txn, &'static str, &'static [u8]>,
    pub(super) payloads: Table<'txn, &'static str, (&'static [u8], &'static [u8])>,
    pub(super) lane_due: Table<'txn, (&'static str, u64, &'static str), ()>,
    pub(super) lanes: Table<'txn, &'static str, (u64, u64)>,
    pub(super) lane_order: Table<'txn, (u64, &'static str), ()>,
    pub(super) attempts: Table<'txn, (&'static str, u32), &'static [u8]>,
    pub(super) dead: Table<'txn, (&'static str, u64, &'static str), ()>,
    pub(super) dedup: Table<'txn, (&'static str, &'static str), u64>,
    pub(super) dedup_expiry: Table<'txn, (u64, &'static str, &'static str), ()>,
    pub(super) counters: Table<'txn, &'static str, u64>,
    pub(super) log: Table<'txn, (&'static str, &'static str, u64, &'static str), ()>,
    pub(super) log_order:
        Table<'txn, (u64, &'static str), (&'static str, &'static str, &'static str)>,
    /// The per-message order's tables, opened on first use: a deployment
    /// without ordered webhooks never pays for opening them.
    order: Option<OrderTables<'txn>>,
    txn: &'txn WriteTransaction,
}

/// The tables of per-message order (see `order.rs`).
pub(super) struct OrderTables<'txn> {
    pub(super) messages: Table<'txn, (&'static str, &'static str), (&'static str, u64, u64, u64)>,
    pub(super) waiting: Table<'txn, (&'static str, &'static str, u64, &'static str), ()>,
    pub(super) message_expiry: Table<'txn, (u64, &'static str, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    /// Opens (creating if needed) every table in `txn`.
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, Fault> {
        Ok(Tables {
            jobs: txn.open_table(JOBS)?,
            payloads: txn.open_table(PAYLOADS)?,
            lane_due: txn.open_table(LANE_DUE)?,
            lanes: txn.open_table(LANES)?,
            lane_order: txn.open_table(LANE_ORDER)?,
            attempts: txn.open_table(ATTEMPTS)?,
            dead: txn.open_table(DEAD)?,
            dedup: txn.open_table(DEDUP)?,
            dedup_expiry: txn.open_table(DEDUP_EXPIRY)?,
            counters: txn.open_table(COUNTERS)?,
            log: txn.open_table(LOG)?,
            log_order: txn.open_table(LOG_ORDER)?,
            order: None,
            txn,
        })
    }

    /// The per-message order's tables, opened now if not yet.
    pub(super) fn order(&mut self) -> Result<&mut OrderTables<'txn>, Fault> {
        let tables = match self.order.take() {
            Some(tables) => tables,
            None => OrderTables {
                messages: self.txn.open_table(MESSAGES)?,
                waiting: self.txn.open_table(WAITING)?,
                message_expiry: self.txn.open_table(MESSAGE_EXPIRY)?,
            },
        };
        Ok(self.order.insert(tables))
    }

    /// The state of job `id`, if it exists.
    pub(super) fn job(&self, id: &str) -> Result<Option<Job>, Fault> {
        match self.jobs.get(id)? {
            Some(bytes) => Ok(Some(Job::decode(id, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Writes the state of job `id`.
    pub(super) fn put_job(&mut self, id: &str, job: &Job) -> Result<(), Fault> {
        self.jobs.insert(id, job.encode().as_slice())?;
        Ok(())
    }

    /// The job `id` if `token` is its current lease: what ack, retry and
    /// dead-letter act on. `None` for a stale lease or a job gone.
    pub(super) fn leased(&self, id: &str, token: u64) -> Result<Option<Job>, Fault> {
        Ok(self.job(id)?.filter(|job| job.is_leased_with(token)))
    }

    /// Appends `attempt` (JSON) to the history of job `id`.
    pub(super) fn record_attempt(
        &mut self,
        id: &str,
        job: &mut Job,
        attempt: &[u8],
    ) -> Result<(), Fault> {
        let seq = job.attempts;
        job.attempts = seq
            .checked_add(1)
            .ok_or_else(|| corrupt(id, "attempt counter overflow"))?;
        self.attempts.insert((id, seq), attempt)?;
        Ok(())
    }

    /// Removes the index entry of `job` (due or dead), whichever it has.
    /// The caller [rescores](Tables::rescore) its lane afterwards.
    pub(super) fn unindex(&mut self, id: &str, job: &Job) -> Result<(), Fault> {
        match &job.stage {
            Stage::Pending { due_ms } => {
                self.lane_due.remove((job.lane().as_str(), *due_ms, id))?;
            }
            Stage::Dead { dead_ms, .. } => {
                self.dead.remove((job.bot.as_str(), *dead_ms, id))?;
            }
            Stage::Waiting { .. } => {
                if let Some(ordered) = &job.ordered {
                    let key = (
                        job.lane(),
                        ordered.message.as_str(),
                        u64::from(ordered.rank),
                        id,
                    );
                    self.order()?
                        .waiting
                        .remove((key.0.as_str(), key.1, key.2, key.3))?;
                }
            }
            Stage::Delivered { .. } | Stage::Suppressed { .. } => {}
        }
        Ok(())
    }

    /// Queues `job` again, due at `now`, with a fresh attempt count: its
    /// attempts so far are kept and the base moves past them. Returns its
    /// lane, which the caller rescores. Shared by replay and resend.
    /// An operator's replay or resend goes out as asked, outside its
    /// message's order.
    pub(super) fn requeue(&mut self, id: &str, job: &mut Job, now: u64) -> Result<String, Fault> {
        self.unindex(id, job)?;
        job.base = job.attempts;
        job.ordered = None;
        self.schedule(id, job, now)?;
        Ok(job.lane())
    }

    /// Removes job `id` with its payload and attempts.
    pub(super) fn delete(&mut self, id: &str, job: &Job) -> Result<(), Fault> {
        self.jobs.remove(id)?;
        self.payloads.remove(id)?;
        for seq in 0..job.attempts {
            self.attempts.remove((id, seq))?;
        }
        Ok(())
    }

    /// Makes `job` pending, due at `due_ms`, not leased; writes it and its
    /// lane entry. The caller has removed its previous index entry, and
    /// [rescores](Tables::rescore) its lane afterwards.
    pub(super) fn schedule(&mut self, id: &str, job: &mut Job, due_ms: u64) -> Result<(), Fault> {
        job.token = 0;
        job.stage = Stage::Pending { due_ms };
        self.lane_due
            .insert((job.lane().as_str(), due_ms, id), ())?;
        self.put_job(id, job)
    }

    /// The earliest due time in `lane`, if it has a pending job.
    pub(super) fn lane_head(&self, lane: &str) -> Result<Option<u64>, Fault> {
        match self
            .lane_due
            .range((lane, 0u64, "")..(lane, u64::MAX, ""))?
            .next()
        {
            Some(entry) => Ok(Some(entry?.0.value().1)),
            None => Ok(None),
        }
    }

    /// When the earliest lane can next be claimed from, if any lane has jobs.
    pub(super) fn next_due_ms(&self) -> Result<Option<u64>, Fault> {
        Ok(self.lane_order.first()?.map(|(key, _)| key.value().0))
    }

    /// Re-scores `lane` after its jobs or its hold changed: it can next be
    /// claimed from at its earliest job's due time, or when a live hold
    /// (one ending after `now`) ends, if later.
    pub(super) fn rescore(&mut self, lane: &str, now: u64) -> Result<(), Fault> {
        let (old_score, hold) = self.lanes.get(lane)?.map_or((NO_JOBS, 0), |v| v.value());
        let hold = if hold > now { hold } else { 0 };
        if old_score != NO_JOBS {
            self.lane_order.remove((old_score, lane))?;
        }
        match self.lane_head(lane)? {
            Some(head) => {
                let score = head.max(hold);
                self.lanes.insert(lane, (score, hold))?;
                self.lane_order.insert((score, lane), ())?;
            }
            // A live hold outlasts the lane's jobs: ones enqueued during it
            // wait too.
            None if hold > 0 => {
                self.lanes.insert(lane, (NO_JOBS, hold))?;
            }
            None => {
                self.lanes.remove(lane)?;
            }
        }
        Ok(())
    }

    /// Holds `lane` until `until_ms` (never shortening a longer hold).
    pub(super) fn hold(&mut self, lane: &str, until_ms: u64, now: u64) -> Result<(), Fault> {
        let (score, hold) = self.lanes.get(lane)?.map_or((NO_JOBS, 0), |v| v.value());
        if until_ms > hold {
            self.lanes.insert(lane, (score, until_ms))?;
        }
        self.rescore(lane, now)
    }
}

/// Runs `op` in one write transaction, durable when it returns
/// ([`Durability::Immediate`]: one fsync at commit), or aborted if `op`
/// fails or wrote nothing.
pub(super) fn write<T>(
    db: &redb::Database,
    op: impl FnOnce(&mut Tables<'_>) -> Result<(T, Commit), Fault>,
) -> Result<T, Fault> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let (out, commit) = {
        let mut tables = Tables::open(&txn)?;
        op(&mut tables)?
    };
    match commit {
        Commit::Yes => txn.commit()?,
        Commit::No => txn.abort()?,
    }
    Ok(out)
}
