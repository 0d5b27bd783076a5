//! Read-only questions: depth, the next due time, liveness.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::fault::Fault;
use super::tables::{JOBS, LANE_DUE, LANE_ORDER, LANES};
use crate::queue::{Depth, LaneState};

/// Pending jobs (due, scheduled or leased) and how many are due at `now`
/// in lanes not held.
///
/// Counting the due ones walks them: cheap while workers keep up, linear in
/// the backlog when they do not.
pub(super) fn depth(db: &Database, now: u64) -> Result<Depth, Fault> {
    let txn = db.begin_read()?;
    let lane_due = txn.open_table(LANE_DUE)?;
    let lane_order = txn.open_table(LANE_ORDER)?;
    let pending = lane_due.len()?;
    let end = now.saturating_add(1);
    let mut due_now = 0;
    for lane in lane_order.range((0u64, "")..(end, ""))? {
        let (key, _) = lane?;
        let lane = key.value().1;
        for entry in lane_due.range((lane, 0u64, "")..(lane, end, ""))? {
            entry?;
            due_now += 1;
        }
    }
    Ok(Depth {
        pending,
        due: due_now,
    })
}

/// Where each of `lanes` stands at `now`: its pending jobs (counted, so
/// linear in a lane's backlog) and its hold.
pub(super) fn lanes(db: &Database, lanes: &[String], now: u64) -> Result<Vec<LaneState>, Fault> {
    let txn = db.begin_read()?;
    let table = txn.open_table(LANES)?;
    let lane_due = txn.open_table(LANE_DUE)?;
    lanes
        .iter()
        .map(|lane| {
            let hold = table.get(lane.as_str())?.map_or(0, |v| v.value().1);
            let mut pending = 0;
            for entry in lane_due
                .range((lane.as_str(), 0u64, "")..=(lane.as_str(), u64::MAX, "\u{10ffff}"))?
            {
                entry?;
                pending += 1;
            }
            Ok(LaneState {
                pending,
                held_until_ms: Some(hold).filter(|&h| h > now),
            })
        })
        .collect()
}

/// When the earliest lane can next be claimed from, if any.
pub(super) fn next_due_ms(db: &Database) -> Result<Option<u64>, Fault> {
    let txn = db.begin_read()?;
    let lanes = txn.open_table(LANE_ORDER)?;
    Ok(lanes.first()?.map(|(key, _)| key.value().0))
}

/// Checks that the store answers: a read transaction sees the tables.
pub(super) fn ping(db: &Database) -> Result<(), Fault> {
    let txn = db.begin_read()?;
    let jobs = txn.open_table(JOBS)?;
    jobs.first()?;
    Ok(())
}
