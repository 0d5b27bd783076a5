//! How often writes come: an ack nothing waits on waits a moment for the
//! next write to carry it only when one is likely within that moment (at a
//! few events a second it would not be, and the wait would cost a timer's
//! wake-up and save nothing).

use std::time::{Duration, Instant};

/// How long an ack nothing waits on (its delivery is not ordered per
/// message) may wait for the next write to carry it: a Redis enqueue's
/// script, or the embedded store's next commit. The delivery was sent
/// before its ack is queued, so this adds nothing to a delivery's latency;
/// it holds the delivery's in-flight slot that much longer, and a crash
/// meanwhile costs a second send with the same `webhook-id`. Long enough
/// that at 30 events a second (a write every 33 ms) acks still ride: with
/// 5 ms they went alone below 200 a second, a second script call (or
/// commit and fsync) per delivery.
pub(crate) const ACK_RIDE: Duration = Duration::from_millis(50);

/// A moving average of the time between writes.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    last: Option<Instant>,
    /// The average gap, in seconds.
    gap: Option<f64>,
}

impl Pace {
    /// A write came at `now`.
    pub(crate) fn wrote(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            self.gap = Some(self.gap.map_or(gap, |avg| 0.8 * avg + 0.2 * gap));
        }
        self.last = Some(now);
    }

    /// Whether the next write is likely within `wait`.
    pub(crate) fn expected_within(&self, wait: Duration) -> bool {
        self.gap.is_some_and(|gap| gap < wait.as_secs_f64())
    }
}
