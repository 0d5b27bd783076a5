//! `wait_replicas`: an enqueue is answered only once replicas hold it.
//!
//! Redis `WAIT` blocks the connection it is sent on until the replicas
//! answer, and a dispatcher shares one connection per node, so one `WAIT`
//! per enqueue would make concurrent enqueues queue behind each other's. A
//! `WAIT` acknowledges every write made before it on its connection, so
//! enqueues share them: per shard one `WAIT` at a time, and an enqueue
//! whose write had finished before a `WAIT` was sent is covered by it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use super::connect::Conn;
use super::unavailable;
use crate::queue::QueueError;

/// One barrier per shard.
pub(super) struct Barriers {
    shards: Vec<Barrier>,
}

#[derive(Default)]
struct Barrier {
    /// `WAIT`s sent so far, numbered from 1; counted before each is sent.
    sent: AtomicU64,
    /// The latest `WAIT` to finish. Held while one is in flight, so there
    /// is one at a time and the others wait for its answer.
    finished: Mutex<Finished>,
}

#[derive(Default)]
struct Finished {
    /// Its number (0: none yet).
    number: u64,
    /// How many replicas confirmed; `None` if it failed.
    held: Option<u64>,
}

impl Barriers {
    /// Barriers for `shards` shards.
    pub(super) fn new(shards: usize) -> Self {
        Barriers {
            shards: (0..shards).map(|_| Barrier::default()).collect(),
        }
    }

    /// Waits until `wanted` replicas of the primary of shard `shard` (tag
    /// `tag`) hold every write this dispatcher finished there before the
    /// call. Fewer within the wait is an error (`503`): a failover now could
    /// lose those events.
    pub(super) async fn replicated(
        &self,
        shard: usize,
        conn: &mut Conn,
        tag: &str,
        wanted: u16,
    ) -> Result<(), QueueError> {
        let barrier = &self.shards[shard];
        // Any `WAIT` numbered from here on is sent after this write finished.
        let covering = barrier.sent.load(Ordering::SeqCst) + 1;
        let mut finished = barrier.finished.lock().await;
        if finished.number < covering {
            let number = barrier.sent.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = conn.wait_replicas(tag, wanted).await;
            *finished = Finished {
                number,
                held: answer.as_ref().ok().copied(),
            };
            answer.map_err(unavailable)?;
        }
        match finished.held {
            Some(held) if held >= u64::from(wanted) => Ok(()),
            Some(held) => Err(QueueError::unavailable_because(format!(
                "Redis: the write reached {held} of the {wanted} replica(s) wait_replicas asks for"
            ))),
            None => Err(QueueError::unavailable_because(
                "Redis: could not learn whether the replicas hold the write (WAIT failed)",
            )),
        }
    }
}
