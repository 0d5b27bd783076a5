//! Rate limits: `"N/s"` or `"N/m"`, enforced with token buckets.
//!
//! Used at two doors: a bot's ingest (`[[bots]] ingest_rate_limit`: events
//! over the limit are answered `429` with `Retry-After`) and a webhook's
//! deliveries (`[[bots.webhooks]] rate_limit`: the partner's capacity; jobs
//! over it wait in their held lane, they do not fail). Each dispatcher keeps
//! its own buckets, so N dispatchers sharing a queue allow up to N times the
//! limit between them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `count` per `period` (one second or one minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many in one period; also the largest burst.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Parses `"1000/s"` or `"50/m"`.
    ///
    /// # Errors
    ///
    /// What is wrong, as a sentence fragment for a config problem.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected = "expected \"N/s\" or \"N/m\", e.g. \"50/s\"";
        let Some((count, unit)) = text.split_once('/') else {
            return Err(format!("{text:?} is not a rate; {expected}"));
        };
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            other => return Err(format!("unknown unit {other:?} in {text:?}; {expected}")),
        };
        match count.trim().parse::<u32>() {
            Ok(0) => Err(format!(
                "{text:?} allows nothing; remove the key for no limit"
            )),
            Ok(count) => Ok(Rate { count, period }),
            Err(_) => Err(format!(
                "{text:?}: {count:?} is not a whole number; {expected}"
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.period >= Duration::from_secs(60) {
            "m"
        } else {
            "s"
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A token bucket per key (a bot, a webhook).
#[derive(Debug, Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens available at `at`.
    tokens: f64,
    at: Instant,
    rate: Rate,
}

impl Buckets {
    /// Takes `n` tokens of `key` under `rate` at `now`: `Ok` if there were
    /// enough, else how long until there are (nothing is taken then). A
    /// request for more than a whole period's worth waits for a full bucket
    /// and takes it all.
    pub fn take(&self, key: &str, rate: Rate, n: u32, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Bounded memory: forget full buckets, which hold no state.
            buckets.retain(|_, b| b.tokens < f64::from(b.rate.count));
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: f64::from(rate.count),
            at: now,
            rate,
        });
        if bucket.rate != rate {
            // The limit changed with a reload: start from a full bucket.
            *bucket = Bucket {
                tokens: f64::from(rate.count),
                at: now,
                rate,
            };
        }
        let per_second = f64::from(rate.count) / rate.period.as_secs_f64();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(rate.count));
        bucket.at = now;
        let wanted = f64::from(n.min(rate.count));
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            Ok(())
        } else {
            let missing = wanted - bucket.tokens;
            Err(Duration::from_secs_f64(missing / per_second).max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(
            Rate::parse("50/s"),
            Ok(Rate {
                count: 50,
                period: Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse(" 3 / m").map(|r| r.to_string()),
            Ok("3/m".into())
        );
        for bad in ["50", "50/h", "0/s", "-1/s", "x/s", ""] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate() {
        let buckets = Buckets::default();
        let rate = Rate::parse("10/s").expect("rate");
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(buckets.take("a", rate, 1, t0), Ok(()));
        }
        let wait = buckets.take("a", rate, 1, t0).expect_err("empty");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(buckets.take("b", rate, 10, t0), Ok(()));
        // 100 ms later one token is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(buckets.take("a", rate, 1, t1), Ok(()));
        assert!(buckets.take("a", rate, 1, t1).is_err());
        // A batch takes as many as it carries, all or nothing.
        let t2 = t1 + Duration::from_millis(500);
        assert!(buckets.take("a", rate, 6, t2).is_err(), "5 back, 6 asked");
        assert_eq!(buckets.take("a", rate, 5, t2), Ok(()));
    }
}
