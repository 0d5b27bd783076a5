//! Read-only questions: depth, the next due time, liveness.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::fault::Fault;
use super::tables::{DUE, JOBS};
use crate::queue::Depth;

/// Pending jobs (due, scheduled or leased) and how many are due at `now`.
///
/// Counting the due ones walks them: cheap while workers keep up, linear in
/// the backlog when they do not.
pub(super) fn depth(db: &Database, now: u64) -> Result<Depth, Fault> {
    let txn = db.begin_read()?;
    let due = txn.open_table(DUE)?;
    let pending = due.len()?;
    let mut due_now = 0;
    for entry in due.range((0u64, "")..(now.saturating_add(1), ""))? {
        entry?;
        due_now += 1;
    }
    Ok(Depth {
        pending,
        due: due_now,
    })
}

/// When the earliest pending job is due, if any.
pub(super) fn next_due_ms(db: &Database) -> Result<Option<u64>, Fault> {
    let txn = db.begin_read()?;
    let due = txn.open_table(DUE)?;
    Ok(due.first()?.map(|(key, _)| key.value().0))
}

/// Checks that the store answers: a read transaction sees the tables.
pub(super) fn ping(db: &Database) -> Result<(), Fault> {
    let txn = db.begin_read()?;
    let jobs = txn.open_table(JOBS)?;
    jobs.first()?;
    Ok(())
}
