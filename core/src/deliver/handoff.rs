//! Deliveries leased by the enqueue that wrote them, handed straight to this
//! dispatcher's delivery loop (see [`Handoff`](crate::queue::Handoff)).
//!
//! At a moderate rate nearly every event lands in a queue with nothing else
//! due, and its claim cost a queue round trip and a wake-up of the delivery
//! loop for a job that loop was sure to get. Instead, ingest reserves
//! in-flight room first (permits of the delivery loop's own cap, so the cap
//! holds), the enqueue leases what it may in the same atomic step, and the
//! loop starts those jobs as if it had claimed them.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::queue::Claimed;

/// At most this many deliveries are handed off per enqueue (a claim takes
/// as many per round trip).
pub(super) const MAX_HANDOFF: usize = 64;

/// A job handed off, with the in-flight permit reserved for it.
pub(super) type Handed = (Claimed, OwnedSemaphorePermit);

/// In-flight room reserved for the deliveries an enqueue may hand off;
/// released when dropped, as far as not used.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reserved {
    /// How many deliveries it has room for.
    pub(crate) fn room(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// The delivery loop's in-flight cap and its inbox of handed-off jobs.
pub(super) struct Inbox {
    /// One permit per job being worked on, claimed or handed off.
    pub(super) permits: Arc<Semaphore>,
    sender: UnboundedSender<Handed>,
    receiver: Mutex<Option<UnboundedReceiver<Handed>>>,
}

impl Inbox {
    /// An inbox for a loop working on at most `max_in_flight` jobs at once.
    pub(super) fn new(max_in_flight: usize) -> Self {
        let (sender, receiver) = unbounded_channel();
        Inbox {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            sender,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// The receiving end, for the one delivery loop (`None` once taken).
    pub(super) fn take_receiver(&self) -> Option<UnboundedReceiver<Handed>> {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Reserves room for up to `wanted` jobs (at most [`MAX_HANDOFF`]), as
    /// much as is free now.
    pub(super) fn reserve(&self, wanted: usize) -> Reserved {
        let free = self.permits.available_permits();
        let n = wanted.min(free).min(MAX_HANDOFF);
        let permit = u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .and_then(|n| Arc::clone(&self.permits).try_acquire_many_owned(n).ok());
        Reserved { permit }
    }

    /// Hands `jobs` (leased for it, no more than `reserved` has room for) to
    /// the delivery loop, each with one reserved permit; the rest of the
    /// room is released.
    pub(super) fn hand_over(&self, jobs: Vec<Claimed>, mut reserved: Reserved) {
        for job in jobs {
            let permit = reserved.permit.as_mut().and_then(|p| p.split(1));
            let Some(permit) = permit else {
                // More than reserved: cannot happen (the enqueue was told
                // the room). Its lease ends and it is claimed again then.
                tracing::error!(delivery = %job.delivery.id, "a handed-off delivery had no room reserved; it is delivered when its lease ends");
                continue;
            };
            if let Err(returned) = self.sender.send((job, permit)) {
                // The loop has stopped (shutting down): the lease ends and
                // the job is delivered then, by this dispatcher's next start
                // or another one.
                let (job, _) = returned.0;
                tracing::debug!(delivery = %job.delivery.id, "delivery stopped; a handed-off delivery waits for its lease to end");
            }
        }
    }
}
