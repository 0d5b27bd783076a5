//! Claimed jobs waiting in this process for a busy endpoint.
//!
//! A job claimed for an endpoint already at its in-flight cap used to go
//! straight back to the queue (one queue write), to be claimed again a
//! moment later: under load to one endpoint that churn cost more queue
//! writes than the deliveries themselves. Instead it waits here, bounded,
//! and the next send to that endpoint that finishes hands its slot to it.
//!
//! A job beyond the backlog goes back to the queue, and its webhook's lane
//! is held for about as long as the backlog takes to half drain (from the
//! endpoint's recent latency and its cap), doubling while overflows repeat
//! with no send finishing (an endpoint that stopped answering, before its
//! breaker opens), so other jobs of that lane are not claimed only to be put
//! back.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// An endpoint's recent latency, and its overflow holds since a send to it
/// last finished.
#[derive(Clone, Copy)]
struct Pace {
    latency_ms: f64,
    /// Holds since a send last finished: each doubles the next.
    overflows: u32,
    /// When the last hold ends: jobs overflowing before then were claimed
    /// with the one that set it, and share it instead of doubling it.
    held_until: Option<Instant>,
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

    /// Every job waiting for `endpoint`, oldest first.
    pub(crate) fn take_all(&self, endpoint: &str) -> Vec<Parked> {
        self.lock()
            .remove(endpoint)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// Whether jobs wait for `endpoint`.
    pub(crate) fn has_waiting(&self, endpoint: &str) -> bool {
        self.lock().contains_key(endpoint)
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
            overflows: 0,
            held_until: None,
        });
        pace.latency_ms = 0.8 * pace.latency_ms + 0.2 * took_ms;
        pace.overflows = 0;
    }

    /// How long to hold the lane of a job that overflowed the backlog of
    /// `endpoint` (at its cap of `cap` in flight): the time half the backlog
    /// takes to drain at the endpoint's recent latency, at least 1 ms,
    /// doubled for each hold since a send there last finished, at most
    /// `longest`.
    /// While a hold lasts, more overflows get what is left of it. `now` is
    /// passed in so the doubling can be tested without sleeping.
    pub(crate) fn overflow_hold(
        &self,
        endpoint: &str,
        cap: usize,
        longest: Duration,
        now: Instant,
    ) -> Duration {
        let mut pacing = self.pacing.lock().unwrap_or_else(|p| p.into_inner());
        if pacing.len() > 10_000 {
            // Bounded memory: forget endpoints that are not overflowing.
            pacing.retain(|_, pace| pace.overflows > 0);
        }
        // Before any send has been timed, assume a fast endpoint: the
        // doubling finds a slow one in a few steps.
        let pace = pacing.entry(endpoint.to_string()).or_insert(Pace {
            latency_ms: 1.0,
            overflows: 0,
            held_until: None,
        });
        if let Some(until) = pace.held_until.filter(|until| *until > now) {
            return until - now;
        }
        let drain_ms = pace.latency_ms * self.per_endpoint as f64 / (2 * cap.max(1)) as f64;
        let hold_ms = drain_ms.max(1.0) * f64::from(1u32 << pace.overflows.min(16));
        pace.overflows = pace.overflows.saturating_add(1);
        let hold = Duration::from_secs_f64(hold_ms / 1000.0).min(longest);
        pace.held_until = Some(now + hold);
        hold
    }

    /// Every waiting job (at shutdown, to return them to the queue).
    pub(crate) fn drain(&self) -> Vec<Parked> {
        self.lock().drain().flat_map(|(_, queue)| queue).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_holds_double_per_hold_not_per_job_and_reset_on_a_send() {
        let backlog = Backlog::new(64);
        let longest = Duration::from_secs(2);
        // Unknown latency (1 ms assumed), cap 16, backlog 64: half the
        // backlog drains in 2 ms.
        let mut now = Instant::now();
        let first = backlog.overflow_hold("e", 16, longest, now);
        assert_eq!(first, Duration::from_millis(2));
        // Jobs overflowing during that hold share what is left of it.
        now += Duration::from_millis(1);
        for _ in 0..15 {
            assert_eq!(
                backlog.overflow_hold("e", 16, longest, now),
                Duration::from_millis(1)
            );
        }
        now += Duration::from_millis(1);
        assert_eq!(
            backlog.overflow_hold("e", 16, longest, now),
            Duration::from_millis(4)
        );
        // A finished send resets the doubling and sets the latency.
        backlog.record_latency("e", 1.0);
        now += Duration::from_millis(5);
        assert_eq!(
            backlog.overflow_hold("e", 16, longest, now),
            Duration::from_millis(2)
        );
        // Never longer than `longest`.
        for _ in 0..40 {
            backlog
                .pacing
                .lock()
                .expect("lock")
                .get_mut("e")
                .expect("pace")
                .held_until = None;
            assert!(backlog.overflow_hold("e", 16, longest, now) <= longest);
        }
    }
}
