//! Group commit: one committer thread applies every write operation waiting
//! at that moment in one redb transaction, with one fsync.
//!
//! redb has one writer at a time and each durable commit is an fsync, so
//! committing each ack, retry and claim on its own caps the store at a few
//! hundred operations a second on an ordinary disk. Concurrent operations
//! queue up here while a commit is in progress and then share the next one.
//! Each caller is answered only after the commit that holds its write is
//! durable. If one operation fails, the whole group is aborted (nothing of
//! it is written) and every caller in it gets an error to retry.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::oneshot;

use super::fault::Fault;
use super::tables::{Commit, Tables};
use crate::queue::QueueError;
use crate::queue::pace::{ACK_RIDE, Pace};

/// The most operations one transaction takes.
const MAX_GROUP: usize = 512;

/// An operation on its way to the committer, and whether it may wait.
struct Queued {
    op: Op,
    may_wait: bool,
}

/// An operation for the committer: applies its writes, answers later.
type Op = Box<dyn FnOnce(&mut Tables<'_>) -> Result<Applied, ()> + Send>;

/// How to answer a caller once its group's commit is known.
type Answer = Box<dyn FnOnce(Result<(), QueueError>) + Send>;

/// An applied operation: whether it wrote, and how to answer its caller.
struct Applied {
    commit: Commit,
    answer: Answer,
}

/// The handle to the committer thread. Dropping it stops the thread and
/// waits for it, so the database is closed when the queue is.
pub(super) struct Committer {
    ops: Option<mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.ops.take()); // the thread's recv now fails: it finishes its group and stops
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The wait is one commit at most, but it blocks: on a multi-threaded
        // runtime, tell tokio so its other tasks move to other threads. (The
        // committer needs no runtime to finish, so a current-thread runtime
        // can simply wait.)
        let join = move || {
            let _ = thread.join();
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(join),
            _ => join(),
        }
    }
}

impl Committer {
    /// Starts the committer thread for `db`.
    pub(super) fn start(db: Arc<Database>) -> std::io::Result<Self> {
        let (ops, queue) = mpsc::channel::<Queued>();
        let thread = std::thread::Builder::new()
            .name("statushook-commit".into())
            .spawn(move || run(&db, &queue))?;
        Ok(Committer {
            ops: Some(ops),
            thread: Some(thread),
        })
    }

    /// Applies `op` in the next group commit and returns its result once that
    /// commit is durable.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<(T, Commit), Fault> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.queue(op, false).await
    }

    /// [`Committer::write`] for an operation nothing waits on: alone, its
    /// commit waits up to [`ACK_RIDE`] for another write to share it (one
    /// commit, one fsync, then serves both).
    pub(super) async fn write_soon<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<(T, Commit), Fault> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.queue(op, true).await
    }

    async fn queue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Tables<'_>) -> Result<(T, Commit), Fault> + Send + 'static,
        may_wait: bool,
    ) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel::<Result<T, QueueError>>();
        let op: Op = Box::new(move |tables| match op(tables) {
            Ok((value, commit)) => Ok(Applied {
                commit,
                answer: Box::new(move |outcome| {
                    let _ = reply.send(outcome.map(|()| value));
                }),
            }),
            Err(fault) => {
                let _ = reply.send(Err(QueueError::from(fault)));
                Err(())
            }
        });
        let stopped =
            || QueueError::unavailable_because("the embedded queue's committer has stopped");
        self.ops
            .as_ref()
            .ok_or_else(stopped)?
            .send(Queued { op, may_wait })
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| {
            Err(QueueError::unavailable_because(
                "another operation in the same commit failed; nothing was written, retry",
            ))
        })
    }
}

fn run(db: &Database, queue: &mpsc::Receiver<Queued>) {
    // Waiting to share a commit is worth it only when the next write that
    // does not wait is likely within ACK_RIDE.
    let mut pace = Pace::default();
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        // Only operations that may wait: give another write a moment to
        // come and share the commit.
        let now = Instant::now();
        if group.iter().any(|q| !q.may_wait) {
            pace.wrote(now);
        }
        let worth_waiting = pace.expected_within(ACK_RIDE);
        let until = now + ACK_RIDE;
        while worth_waiting && group.len() < MAX_GROUP && group.iter().all(|q| q.may_wait) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match queue.recv_timeout(left) {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let group: Vec<Op> = group.into_iter().map(|q| q.op).collect();
        let mut answers = Vec::with_capacity(group.len());
        match commit_group(db, group, &mut answers) {
            Ok(()) => answers.into_iter().for_each(|answer| answer(Ok(()))),
            Err(Some(fault)) => {
                let message = QueueError::from(fault).to_string();
                for answer in answers {
                    answer(Err(QueueError::unavailable_because(message.clone())));
                }
            }
            // An operation failed and answered for itself; the others'
            // answers are dropped, which tells their callers to retry.
            Err(None) => {}
        }
    }
}

/// Applies `group` in one transaction; `Err(None)` when an operation failed.
fn commit_group(
    db: &Database,
    group: Vec<Op>,
    answers: &mut Vec<Answer>,
) -> Result<(), Option<Fault>> {
    let mut txn = db.begin_write().map_err(|e| Some(Fault::from(e)))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| Some(Fault::from(e)))?;
    let mut wrote = false;
    {
        let mut tables = Tables::open(&txn).map_err(Some)?;
        for op in group {
            let applied = op(&mut tables).map_err(|()| None)?;
            wrote |= matches!(applied.commit, Commit::Yes);
            answers.push(applied.answer);
        }
    }
    if wrote {
        txn.commit().map_err(|e| Some(Fault::from(e)))?;
    } else {
        txn.abort().map_err(|e| Some(Fault::from(e)))?;
    }
    Ok(())
}
