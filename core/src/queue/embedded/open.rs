//! Opening the store: the folder, the file lock, the tables.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Builder, Database, DatabaseError, ReadableTable, RepairSession};

use super::tables::{self, Commit, SCHEMA, SCHEMA_VERSION};
use crate::queue::QueueError;

/// The database file inside the queue folder.
pub(super) const FILE_NAME: &str = "queue.redb";

/// Opens (creating if needed) the store in `folder`, repairing it first if
/// the last process using it did not shut down cleanly.
pub(super) fn open(folder: &Path) -> Result<Database, QueueError> {
    std::fs::create_dir_all(folder).map_err(|e| {
        QueueError::Open(format!(
            "cannot create the queue folder {}: {e}",
            folder.display()
        ))
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
            DatabaseError::DatabaseAlreadyOpen => QueueError::Open(format!(
                "another statushook is using the queue folder {} (its file {FILE_NAME} is locked, by \
                 another process or by this one): one embedded queue serves one dispatcher; stop \
                 the other one, or give this one its own [queue] path",
                folder.display()
            )),
            e => QueueError::Open(format!("cannot open the queue file {}: {e}", file.display())),
        })?;
    init(&db).map_err(|e| match e {
        QueueError::Open(_) => e,
        e => QueueError::Open(format!(
            "cannot set up the queue file {}: {e}",
            file.display()
        )),
    })?;
    Ok(db)
}

/// Creates the tables, and refuses a file laid out by another version.
fn init(db: &Database) -> Result<(), QueueError> {
    tables::write(db, |t| {
        let layout = t.counters.get(SCHEMA)?.map(|v| v.value());
        match layout {
            Some(SCHEMA_VERSION) => Ok(((), Commit::No)),
            Some(other) => Err(QueueError::Open(format!(
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
