//! Opening the store: the folder, the file lock, the tables.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, RepairSession};

use super::fault::{Fault, corrupt};
use super::job::Stage;
use super::tables::{
    self, COUNTERS, Commit, OLD_DUE, SCHEMA, SCHEMA_VERSION, SCHEMA_WITHOUT_LANES, Tables,
};
use crate::queue::{Clock, Delivery, QueueError};

/// The database file inside the queue folder.
pub(super) const FILE_NAME: &str = "queue.redb";

/// Opens (creating if needed) the store in `folder`, repairing it first if
/// the last process using it did not shut down cleanly.
pub(super) fn open(folder: &Path, clock: &Clock) -> Result<Database, QueueError> {
    std::fs::create_dir_all(folder).map_err(|e| {
        QueueError::open(
            format!("cannot create the queue folder {}", folder.display()),
            e,
        )
    })?;
    let file = folder.join(FILE_NAME);
    let warned = AtomicBool::new(false);
    let db = Builder::new()
        .set_repair_callback(move |session: &mut RepairSession| {
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    progress = session.progress(),
                    "the embedded queue was not closed cleanly; checking and repairing it"
                );
            }
        })
        .create(&file)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => QueueError::open_refused(format!(
                "another statushook is using the queue folder {} (its file {FILE_NAME} is locked, by \
                 another process or by this one): one embedded queue serves one dispatcher; stop \
                 the other one, or give this one its own [queue] path",
                folder.display()
            )),
            e => QueueError::open(format!("cannot open the queue file {}", file.display()), e),
        })?;
    init(&db, clock).map_err(|e| match e {
        QueueError::Open { .. } => e,
        e => QueueError::open(
            format!("cannot set up the queue file {}", file.display()),
            e,
        ),
    })?;
    Ok(db)
}

/// Creates the tables, migrates a file laid out before lanes, and refuses
/// one laid out by another version.
fn init(db: &Database, clock: &Clock) -> Result<(), QueueError> {
    let layout = {
        let txn = db.begin_read().map_err(Fault::from)?;
        match txn.open_table(COUNTERS) {
            Ok(counters) => counters
                .get(SCHEMA)
                .map_err(Fault::from)?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(Fault::from(e).into()),
        }
    };
    if layout == Some(SCHEMA_WITHOUT_LANES) {
        let moved = migrate_to_lanes(db, clock.now_ms())?;
        tracing::info!(
            jobs = moved,
            "moved the embedded queue's pending jobs into per-webhook lanes"
        );
    }
    tables::write(db, |t| {
        let layout = t.counters.get(SCHEMA)?.map(|v| v.value());
        match layout {
            Some(SCHEMA_VERSION) => Ok(((), Commit::No)),
            Some(other) => Err(QueueError::open_refused(format!(
                "the queue file has layout version {other}; this statushook reads version \
                 {SCHEMA_VERSION}"
            ))
            .into()),
            None => {
                t.counters.insert(SCHEMA, SCHEMA_VERSION)?;
                Ok(((), Commit::Yes))
            }
        }
    })
    .map_err(QueueError::from)
}

/// Layout 1 → 2: gives every job its webhook (from its stored delivery) and
/// moves pending jobs from the single due index into their lanes, in one
/// transaction. Returns how many pending jobs moved.
fn migrate_to_lanes(db: &Database, now: u64) -> Result<usize, QueueError> {
    let txn = db.begin_write().map_err(Fault::from)?;
    let moved = {
        let mut t = Tables::open(&txn)?;
        let mut ids = Vec::new();
        for entry in t.jobs.iter().map_err(Fault::from)? {
            let (id, _) = entry.map_err(Fault::from)?;
            ids.push(id.value().to_string());
        }
        let mut lanes = std::collections::BTreeSet::new();
        let mut moved = 0;
        for id in &ids {
            let Some(mut job) = t.job(id)? else { continue };
            let webhook = {
                let Some(payload) = t.payloads.get(id.as_str()).map_err(Fault::from)? else {
                    return Err(corrupt(id, "job without its payload").into());
                };
                Delivery::from_parts(id, payload.value().0, Vec::new())?.webhook
            };
            job.webhook = webhook;
            if let Stage::Pending { due_ms } = job.stage {
                // As it is: a leased job keeps its lease.
                let lane = job.lane();
                t.lane_due
                    .insert((lane.as_str(), due_ms, id.as_str()), ())
                    .map_err(Fault::from)?;
                lanes.insert(lane);
                moved += 1;
            }
            t.put_job(id, &job)?;
        }
        for lane in &lanes {
            t.rescore(lane, now)?;
        }
        t.counters
            .insert(SCHEMA, SCHEMA_VERSION)
            .map_err(Fault::from)?;
        moved
    };
    txn.delete_table(OLD_DUE).map_err(Fault::from)?;
    txn.commit().map_err(Fault::from)?;
    Ok(moved)
}
