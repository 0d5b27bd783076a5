//! The clock a queue reads: due times, leases, holds and dedup windows are
//! all unix milliseconds from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::now_ms;

/// Where a queue reads the time: the system clock, or (in tests) the system
/// clock moved forward by hand, so a lease can run out or a dedup window
/// close without the test sleeping.
///
/// Every backend takes the time from its clock and passes it to the store
/// (Redis scripts get it as an argument), so all of a queue's decisions use
/// one clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far this clock is ahead of the system clock, in ms; `None` for
    /// the system clock itself.
    ahead_ms: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that starts at the system time and that [`Clock::advance`]
    /// moves forward.
    pub fn adjustable() -> Self {
        Clock {
            ahead_ms: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Moves an adjustable clock (and every queue sharing it) forward by
    /// `by`.
    ///
    /// # Panics
    ///
    /// On the system clock, which cannot be moved.
    pub fn advance(&self, by: Duration) {
        let Some(ahead) = &self.ahead_ms else {
            panic!("the system clock cannot be advanced; use Clock::adjustable()");
        };
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        ahead.fetch_add(by, Ordering::SeqCst);
    }

    /// The time now, unix ms.
    pub fn now_ms(&self) -> u64 {
        let ahead = self
            .ahead_ms
            .as_ref()
            .map_or(0, |ahead| ahead.load(Ordering::SeqCst));
        now_ms().saturating_add(ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_by_hand_and_copies_share_it() {
        let clock = Clock::adjustable();
        let copy = clock.clone();
        let before = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(copy.now_ms() >= before + 3_600_000);
    }
}
