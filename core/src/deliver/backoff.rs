//! When to try a failed delivery again: the configured `retry_schedule` with
//! ±20 % jitter, and a receiver's `Retry-After` honoured within bounds.
//!
//! Pure functions: the caller owns the clock and the random source, so these
//! are tested without sleeping.

use std::time::{Duration, SystemTime};

/// The jitter as a fraction of the scheduled wait: ±1/5 = ±20 %.
const JITTER_DIVISOR: u128 = 5;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The wait before the next attempt after `attempts_made` failed attempts:
/// one failed attempt waits about `schedule[0]`, two about `schedule[1]`, and
/// so on, each drawn uniformly within ±20 % of the configured wait (never
/// more). `None` when the schedule is exhausted: the delivery becomes a dead
/// letter. Zero attempts made means the first attempt, which does not wait.
pub fn scheduled_wait(
    schedule: &[Duration],
    attempts_made: u32,
    rng: &mut fastrand::Rng,
) -> Option<Duration> {
    let Some(index) = attempts_made.checked_sub(1) else {
        return Some(Duration::ZERO);
    };
    let base = *schedule.get(usize::try_from(index).ok()?)?;
    Some(jitter(base, rng))
}

/// `base` moved uniformly within ±20 %, in whole nanoseconds; the bound is
/// rounded towards `base`, so the result never leaves ±20 %.
fn jitter(base: Duration, rng: &mut fastrand::Rng) -> Duration {
    let nanos = base.as_nanos();
    let span = nanos / JITTER_DIVISOR;
    let jittered = nanos - span + rng.u128(0..=2 * span);
    from_nanos(jittered)
}

fn from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9 and fits in u32.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

/// Parses a `Retry-After` header value: delta-seconds (`"120"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date
/// in the past means no wait (zero); anything unparseable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64: as long as can be; the caller caps it.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait to use when a `429`/`503` response carried `Retry-After`: the
/// receiver's wait, capped at twice the wait the schedule gave (`scheduled`,
/// the value [`scheduled_wait`] returned for this retry). A shorter
/// `Retry-After` is honoured as is; the number of attempts is still bounded
/// by the schedule.
pub fn honour_retry_after(retry_after: Duration, scheduled: Duration) -> Duration {
    retry_after.min(scheduled.saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        ["5s", "1m", "10m", "1h", "6h"]
            .iter()
            .map(|s| {
                let (n, unit) = s.split_at(s.len() - 1);
                let n: u64 = n.parse().expect("number");
                Duration::from_secs(match unit {
                    "s" => n,
                    "m" => n * 60,
                    "h" => n * 3600,
                    _ => unreachable!(),
                })
            })
            .collect()
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = schedule();
        let mut rng = fastrand::Rng::with_seed(7);
        for (i, &base) in schedule.iter().enumerate() {
            let attempts = u32::try_from(i + 1).expect("small");
            let low = base.mul_f64(0.8);
            let high = base.mul_f64(1.2);
            let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
            for _ in 0..10_000 {
                let wait = scheduled_wait(&schedule, attempts, &mut rng).expect("in schedule");
                assert!(
                    wait >= low && wait <= high,
                    "{wait:?} outside {low:?}..={high:?}"
                );
                min = min.min(wait);
                max = max.max(wait);
            }
            // The draws spread over the whole band, not just near the middle.
            assert!(min < base.mul_f64(0.82), "min {min:?} for {base:?}");
            assert!(max > base.mul_f64(1.18), "max {max:?} for {base:?}");
        }
    }

    #[test]
    fn jitter_bounds_hold_for_tiny_and_odd_waits() {
        let mut rng = fastrand::Rng::with_seed(1);
        for base in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(4),
            Duration::from_nanos(7),
            Duration::from_millis(3),
            Duration::from_secs(u64::MAX),
        ] {
            for _ in 0..1_000 {
                let wait = scheduled_wait(&[base], 1, &mut rng).expect("in schedule");
                let diff = wait.abs_diff(base);
                assert!(
                    diff.as_nanos() * 5 <= base.as_nanos(),
                    "{wait:?} vs {base:?}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_waits() {
        let schedule = schedule();
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (1..=5)
                .map(|n| scheduled_wait(&schedule, n, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn exhausted_schedule_is_none() {
        let schedule = schedule();
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(scheduled_wait(&schedule, 0, &mut rng), Some(Duration::ZERO));
        assert!(scheduled_wait(&schedule, 5, &mut rng).is_some());
        assert_eq!(scheduled_wait(&schedule, 6, &mut rng), None);
        assert_eq!(scheduled_wait(&schedule, u32::MAX, &mut rng), None);
        assert_eq!(scheduled_wait(&[], 1, &mut rng), None);
    }

    #[test]
    fn first_failure_uses_the_first_wait() {
        let schedule = schedule();
        let mut rng = fastrand::Rng::with_seed(9);
        let wait = scheduled_wait(&schedule, 1, &mut rng).expect("in schedule");
        assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6));
        let wait = scheduled_wait(&schedule, 2, &mut rng).expect("in schedule");
        assert!(wait >= Duration::from_secs(48) && wait <= Duration::from_secs(72));
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:30 GMT", now),
            Some(Duration::from_secs(150))
        );
        // The obsolete formats HTTP still requires recipients to accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:29:00 2015", now),
            Some(Duration::from_secs(60))
        );
        // In the past: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage() {
        let now = SystemTime::UNIX_EPOCH;
        for value in [
            "",
            "  ",
            "-5",
            "1.5",
            "5s",
            "soon",
            "12 0",
            "Wed, 99 Oct 2015",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn retry_after_is_capped_at_twice_the_schedule() {
        let scheduled = Duration::from_secs(60);
        assert_eq!(
            honour_retry_after(Duration::from_secs(90), scheduled),
            Duration::from_secs(90)
        );
        assert_eq!(
            honour_retry_after(Duration::from_secs(120), scheduled),
            Duration::from_secs(120)
        );
        assert_eq!(
            honour_retry_after(Duration::from_secs(86_400), scheduled),
            Duration::from_secs(120)
        );
        assert_eq!(
            honour_retry_after(Duration::from_secs(10), scheduled),
            Duration::from_secs(10)
        );
        assert_eq!(
            honour_retry_after(Duration::MAX, Duration::MAX),
            Duration::MAX
        );
    }
}
