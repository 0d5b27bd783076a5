//! Claimed jobs waiting in this process for a busy endpoint.
//!
//! A job claimed for an endpoint already at its in-flight cap used to go
//! straight back to the queue (one queue write), to be claimed again a
//! moment later: under load to one endpoint that churn cost more queue
//! writes than the deliveries themselves. Instead it waits here, bounded,
//! and the next send to that endpoint that finishes hands its slot to it.
//!
//! Jobs beyond the backlog do go back to the queue, but paced: each is due
//! when the endpoint should have room for it (its recent latency divided by
//! its cap, one after another), not all after the same fixed wait, so each
//! overflow job is put back about once instead of bouncing until its turn.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use crate::queue::Claimed;

/// A job parked for its endpoint, with when it was claimed (its lease runs
/// from then).
pub(crate) struct Parked {
    pub(crate) job: Claimed,
    pub(crate) claimed_at: Instant,
}

/// Per-endpoint queues of parked jobs, and the pacing of overflow.
pub(crate) struct Backlog {
    waiting: Mutex<HashMap<String, VecDeque<Parked>>>,
    pacing: Mutex<HashMap<String, Pace>>,
    per_endpoint: usize,
}

/// An endpoint's recent latency and the due time of its last overflow job.
#[derive(Clone, Copy)]
struct Pace {
    latency_ms: f64,
    /// Fractional: slots are often well under a millisecond apart.
    next_due_ms: f64,
}

impl Backlog {
    /// A backlog holding at most `per_endpoint` jobs for one endpoint.
    pub(crate) fn new(per_endpoint: usize) -> Self {
        Backlog {
            waiting: Mutex::new(HashMap::new()),
            pacing: Mutex::new(HashMap::new()),
            per_endpoint: per_endpoint.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Parked>>> {
        // The map stays consistent even if a holder panicked.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `job` for `endpoint`; gives it back when that endpoint's
    /// backlog is full.
    #[allow(clippy::result_large_err)] // the "error" is the job handed back, moved not copied
    pub(crate) fn park(&self, endpoint: &str, parked: Parked) -> Result<(), Parked> {
        let mut waiting = self.lock();
        let queue = waiting.entry(endpoint.to_string()).or_default();
        if queue.len() >= self.per_endpoint {
            return Err(parked);
        }
        queue.push_back(parked);
        Ok(())
    }

    /// The oldest job waiting for `endpoint`.
    pub(crate) fn take(&self, endpoint: &str) -> Option<Parked> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(endpoint)?;
        let parked = queue.pop_front();
        if queue.is_empty() {
            waiting.remove(endpoint);
        }
        parked
    }

    /// How many jobs wait, across endpoints.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }

    /// Feeds the time of a send to `endpoint` into its latency average.
    pub(crate) fn record_latency(&self, endpoint: &str, took_ms: f64) {
        let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
        let pace = pacing.entry(endpoint.to_string()).or_insert(Pace {
            latency_ms: took_ms,
            next_due_ms: 0.0,
        });
        pace.latency_ms = 0.8 * pace.latency_ms + 0.2 * took_ms;
    }

    /// When an overflow job for `endpoint` (at its cap of `cap` in flight)
    /// should be due again: a slot's worth of time after the previous one,
    /// and not sooner than `min_wait_ms` from `now_ms`.
    pub(crate) fn overflow_due(
        &self,
        endpoint: &str,
        cap: usize,
        now_ms: u64,
        min_wait_ms: u64,
    ) -> u64 {
        let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
        if pacing.len() > 10_000 {
            // Forget endpoints whose pacing is in the past: bounded memory.
            pacing.retain(|_, pace| pace.next_due_ms > now_ms as f64);
        }
        // Before any send has been timed, assume a fast endpoint: a
        // mistaken bounce costs one queue write, a mistaken delay costs latency.
        let pace = pacing.entry(endpoint.to_string()).or_insert(Pace {
            latency_ms: 1.0,
            next_due_ms: 0.0,
        });
        let spacing = pace.latency_ms / cap.max(1) as f64;
        let due = pace.next_due_ms.max((now_ms + min_wait_ms) as f64);
        pace.next_due_ms = due + spacing;
        due.ceil() as u64
    }

    /// Every waiting job (at shutdown, to return them to the queue).
    pub(crate) fn drain(&self) -> Vec<Parked> {
        self.lock().drain().flat_map(|(_, queue)| queue).collect()
    }
}
