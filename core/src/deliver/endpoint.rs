//! Per-endpoint fairness, so one dead or slow endpoint cannot hold the
//! workers other bots need.
//!
//! Each endpoint (a key the caller chooses, usually [`endpoint_key`] of the
//! URL) has an in-flight cap and a circuit breaker:
//!
//! - **closed**: requests go through up to the cap; `failure_threshold`
//!   consecutive failures open the breaker;
//! - **open** for a period: [`Endpoints::try_start`] answers
//!   [`Busy::Open`] and the caller re-schedules the job for `until` without
//!   an HTTP call;
//! - **half-open** once the period is over: exactly one probe goes through.
//!   Its success closes the breaker; its failure re-opens it for twice the
//!   previous period, capped at `max_open_for`.
//!
//! Entries for idle endpoints with a closed breaker and no failures are
//! removed, so memory is bounded by the endpoints busy or failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long callers turned away while a half-open probe is in flight wait
/// before asking again.
pub const PROBE_WAIT: Duration = Duration::from_secs(1);

/// The endpoint key for a URL: `scheme://host:port`, with the scheme's
/// default port filled in, so `https://a.example/x` and
/// `https://a.example:443/y` share one endpoint.
pub fn endpoint_key(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// When a circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (at least 1; default 5).
    pub failure_threshold: u32,
    /// The first open period (default 5 s).
    pub open_for: Duration,
    /// The cap on the open period as failed probes double it (default 5 min).
    pub max_open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(5 * 60),
        }
    }
}

/// Why a request to an endpoint may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The endpoint's in-flight cap is reached; try another job.
    #[error("the endpoint has as many requests in flight as allowed")]
    Full,
    /// The endpoint's circuit breaker is open (or its one half-open probe is
    /// in flight): re-schedule the job for `until` without an HTTP call.
    #[error("the endpoint's circuit breaker is open")]
    Open {
        /// When to ask again.
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
        period: Duration,
    },
    HalfOpen {
        /// The period of the open state before this one, doubled on failure.
        period: Duration,
        probing: bool,
    },
}

#[derive(Debug)]
struct EndpointState {
    in_flight: usize,
    breaker: Breaker,
}

impl EndpointState {
    fn new() -> Self {
        Self {
            in_flight: 0,
            breaker: Breaker::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// Idle with nothing to remember: the entry can go.
    fn is_idle(&self) -> bool {
        self.in_flight == 0
            && self.breaker
                == Breaker::Closed {
                    consecutive_failures: 0,
                }
    }
}

#[derive(Debug)]
struct Shared {
    max_in_flight: usize,
    policy: BreakerPolicy,
    endpoints: Mutex<HashMap<String, EndpointState>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, EndpointState>> {
        // The map is consistent after every critical section: a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, state: &mut EndpointState, now: Instant, period: Duration) {
        let period = period.min(self.policy.max_open_for);
        state.breaker = Breaker::Open {
            until: now + period,
            period,
        };
    }
}

/// Per-endpoint in-flight caps and circuit breakers, shared by all delivery
/// workers. Cloning is cheap and shares the state.
#[derive(Debug, Clone)]
pub struct Endpoints {
    shared: Arc<Shared>,
}

impl Endpoints {
    /// At most `max_in_flight` requests per endpoint (at least 1), with
    /// breakers following `breaker`.
    pub fn new(max_in_flight: usize, breaker: BreakerPolicy) -> Self {
        Self {
            shared: Arc::new(Shared {
                max_in_flight: max_in_flight.max(1),
                policy: breaker,
                endpoints: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes a request slot for `endpoint`, or says why not. Hold the
    /// returned guard for the whole request and report its outcome with
    /// [`InFlight::success`] or [`InFlight::failure`]; dropping it unreported
    /// (a cancelled request) frees the slot without judging the endpoint.
    pub fn try_start(&self, endpoint: &str, now: Instant) -> Result<InFlight, Busy> {
        let mut endpoints = self.shared.lock();
        let state = match endpoints.get_mut(endpoint) {
            Some(state) => state,
            None => endpoints
                .entry(endpoint.to_owned())
                .or_insert_with(EndpointState::new),
        };
        let mut probe = false;
        match state.breaker {
            Breaker::Closed { .. } => {}
            Breaker::Open { until, .. } if now < until => return Err(Busy::Open { until }),
            Breaker::Open { period, .. } => {
                state.breaker = Breaker::HalfOpen {
                    period,
                    probing: false,
                };
                probe = true;
            }
            Breaker::HalfOpen { probing: true, .. } => {
                return Err(Busy::Open {
                    until: now + PROBE_WAIT,
                });
            }
            Breaker::HalfOpen { probing: false, .. } => probe = true,
        }
        if state.in_flight >= self.shared.max_in_flight {
            return Err(Busy::Full);
        }
        if probe && let Breaker::HalfOpen { probing, .. } = &mut state.breaker {
            *probing = true;
        }
        state.in_flight += 1;
        Ok(InFlight {
            shared: Arc::clone(&self.shared),
            endpoint: endpoint.to_owned(),
            probe,
        })
    }

    /// Whether `endpoint` could take `more` requests at `now` on top of
    /// those in flight: its breaker closed and its cap not reached. Takes
    /// nothing (see [`Endpoints::try_start`]).
    pub fn has_room(&self, endpoint: &str, more: usize, now: Instant) -> bool {
        let endpoints = self.shared.lock();
        match endpoints.get(endpoint) {
            None => more <= self.shared.max_in_flight,
            Some(state) => {
                let closed = match state.breaker {
                    Breaker::Closed { .. } => true,
                    Breaker::Open { until, .. } => now >= until && more <= 1,
                    Breaker::HalfOpen { .. } => false,
                };
                closed && state.in_flight + more <= self.shared.max_in_flight
            }
        }
    }

    /// Where `endpoint`'s breaker stands at `now`, for the console: `closed`,
    /// `open` or `half-open`, and its requests in flight.
    pub fn breaker(&self, endpoint: &str, now: Instant) -> (&'static str, usize) {
        let endpoints = self.shared.lock();
        match endpoints.get(endpoint) {
            None => ("closed", 0),
            Some(state) => {
                let breaker = match state.breaker {
                    Breaker::Closed { .. } => "closed",
                    Breaker::Open { until, .. } if now < until => "open",
                    Breaker::Open { .. } | Breaker::HalfOpen { .. } => "half-open",
                };
                (breaker, state.in_flight)
            }
        }
    }

    /// Every known endpoint with its requests in flight and whether its
    /// breaker is open (or half-open), sorted by endpoint.
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(String, usize, bool)> {
        let endpoints = self.shared.lock();
        let mut rows: Vec<(String, usize, bool)> = endpoints
            .iter()
            .map(|(key, state)| {
                let open = !matches!(state.breaker, Breaker::Closed { .. });
                (key.clone(), state.in_flight, open)
            })
            .collect();
        rows.sort();
        rows
    }
}

/// A request slot for one endpoint, freed when dropped. Report the outcome
/// with [`InFlight::success`] or [`InFlight::failure`].
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<Shared>,
    endpoint: String,
    /// This request is the half-open breaker's one probe.
    probe: bool,
}

impl InFlight {
    /// Whether this request is the half-open breaker's probe: its outcome
    /// closes or re-opens the breaker.
    #[cfg(test)]
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded (a `2xx`): resets the failure count, and closes
    /// the breaker if this was the probe.
    pub fn success(self, now: Instant) {
        let _ = now; // the same signature as `failure`; closing needs no time
        self.settle(|_, state, probe| match state.breaker {
            Breaker::Closed { .. } => {
                state.breaker = Breaker::Closed {
                    consecutive_failures: 0,
                };
            }
            Breaker::HalfOpen { .. } if probe => {
                state.breaker = Breaker::Closed {
                    consecutive_failures: 0,
                };
            }
            // A request started before the breaker opened: only the probe
            // decides.
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => {}
        });
    }

    /// The request failed (timeout, connection error, non-`2xx`): counts
    /// towards opening the breaker, or re-opens it for twice the previous
    /// period if this was the probe.
    pub fn failure(self, now: Instant) {
        self.settle(|shared, state, probe| match state.breaker {
            Breaker::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= shared.policy.failure_threshold.max(1) {
                    shared.open(state, now, shared.policy.open_for);
                } else {
                    state.breaker = Breaker::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            Breaker::HalfOpen { period, .. } if probe => {
                shared.open(state, now, period.saturating_mul(2));
            }
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => {}
        });
    }

    /// Applies `outcome` to the endpoint's state; the slot itself is freed
    /// by `Drop`, which runs right after.
    fn settle(mut self, outcome: impl FnOnce(&Shared, &mut EndpointState, bool)) {
        let shared = Arc::clone(&self.shared);
        let mut endpoints = shared.lock();
        if let Some(state) = endpoints.get_mut(&self.endpoint) {
            outcome(&shared, state, self.probe);
        }
        // The outcome settled the probe (closed or re-opened the breaker).
        self.probe = false;
        drop(endpoints);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut endpoints = self.shared.lock();
        let Some(state) = endpoints.get_mut(&self.endpoint) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        if self.probe
            && let Breaker::HalfOpen { probing, .. } = &mut state.breaker
        {
            // A probe dropped without an outcome: let another one through.
            *probing = false;
        }
        if state.is_idle() {
            endpoints.remove(&self.endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "https://crm.example.com:443";

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 3,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(30),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn room_counts_what_is_in_flight_and_an_open_breaker_has_none() {
        let eps = Endpoints::new(2, policy());
        let t = Instant::now();
        assert!(eps.has_room(EP, 2, t), "unknown endpoint: its whole cap");
        assert!(!eps.has_room(EP, 3, t));
        let first = eps.try_start(EP, t).expect("slot");
        assert!(eps.has_room(EP, 1, t));
        assert!(!eps.has_room(EP, 2, t), "one of two in flight");
        first.failure(t);
        for _ in 0..2 {
            eps.try_start(EP, t).expect("slot").failure(t);
        }
        assert!(!eps.has_room(EP, 1, t), "open breaker");
        assert!(!eps.has_room(EP, 1, t + secs(1)));
    }

    #[test]
    fn default_policy() {
        let p = BreakerPolicy::default();
        assert_eq!(p.failure_threshold, 5);
        assert_eq!(p.open_for, secs(5));
        assert_eq!(p.max_open_for, secs(300));
    }

    #[test]
    fn endpoint_keys() {
        let key = |s: &str| endpoint_key(&url::Url::parse(s).expect(s));
        assert_eq!(key("https://a.example/x"), "https://a.example:443");
        assert_eq!(key("https://a.example:443/y?q=1"), "https://a.example:443");
        assert_eq!(key("http://a.example/x"), "http://a.example:80");
        assert_eq!(key("https://a.example:8443/"), "https://a.example:8443");
        assert_eq!(key("http://[::1]:8080/"), "http://[::1]:8080");
    }

    #[test]
    fn cap_reached_and_freed_on_drop() {
        let eps = Endpoints::new(2, policy());
        let t = Instant::now();
        let a = eps.try_start(EP, t).expect("first");
        let b = eps.try_start(EP, t).expect("second");
        assert_eq!(eps.try_start(EP, t).err(), Some(Busy::Full));
        // Other endpoints are unaffected.
        let other = eps
            .try_start("https://other.example:443", t)
            .expect("other");
        assert_eq!(
            eps.snapshot(),
            vec![
                (EP.to_owned(), 2, false),
                ("https://other.example:443".to_owned(), 1, false)
            ]
        );
        drop(a);
        let c = eps.try_start(EP, t).expect("slot freed");
        assert_eq!(eps.try_start(EP, t).err(), Some(Busy::Full));
        b.success(t);
        c.failure(t);
        other.success(t);
        // EP keeps its one failure; the idle, healthy endpoint is pruned.
        assert_eq!(eps.snapshot(), vec![(EP.to_owned(), 0, false)]);
    }

    #[test]
    fn idle_healthy_endpoints_are_pruned() {
        let eps = Endpoints::new(4, policy());
        let t = Instant::now();
        for i in 0..100 {
            eps.try_start(&format!("https://e{i}.example:443"), t)
                .expect("start")
                .success(t);
        }
        assert!(eps.snapshot().is_empty());
    }

    fn fail(eps: &Endpoints, t: Instant) {
        eps.try_start(EP, t).expect("start").failure(t);
    }

    #[test]
    fn breaker_opens_after_threshold() {
        let eps = Endpoints::new(4, policy());
        let t = Instant::now();
        fail(&eps, t);
        fail(&eps, t);
        assert!(eps.try_start(EP, t).is_ok());
        fail(&eps, t);
        assert_eq!(
            eps.try_start(EP, t).err(),
            Some(Busy::Open { until: t + secs(5) })
        );
        assert_eq!(
            eps.try_start(EP, t + secs(4)).err(),
            Some(Busy::Open { until: t + secs(5) })
        );
        assert_eq!(eps.snapshot(), vec![(EP.to_owned(), 0, true)]);
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let eps = Endpoints::new(4, policy());
        let t = Instant::now();
        fail(&eps, t);
        fail(&eps, t);
        eps.try_start(EP, t).expect("start").success(t);
        fail(&eps, t);
        fail(&eps, t);
        assert!(eps.try_start(EP, t).is_ok(), "still closed");
    }

    fn open(eps: &Endpoints, t: Instant) {
        for _ in 0..3 {
            fail(eps, t);
        }
        assert!(matches!(eps.try_start(EP, t), Err(Busy::Open { .. })));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let eps = Endpoints::new(4, policy());
        let t = Instant::now();
        open(&eps, t);
        let t1 = t + secs(5);
        let probe = eps.try_start(EP, t1).expect("probe");
        assert!(probe.is_probe());
        assert_eq!(
            eps.try_start(EP, t1).err(),
            Some(Busy::Open {
                until: t1 + PROBE_WAIT
            })
        );
        assert_eq!(
            eps.try_start(EP, t1 + secs(100)).err(),
            Some(Busy::Open {
                until: t1 + secs(100) + PROBE_WAIT
            })
        );
        assert_eq!(eps.snapshot(), vec![(EP.to_owned(), 1, true)]);
        // A probe dropped without an outcome lets another through.
        drop(probe);
        let probe = eps.try_start(EP, t1).expect("second probe");
        assert!(probe.is_probe());
        probe.success(t1);
        // Closed and reset: everything goes through, the entry is pruned.
        let a = eps.try_start(EP, t1).expect("closed");
        assert!(!a.is_probe());
        let b = eps.try_start(EP, t1).expect("closed");
        drop((a, b));
        assert!(eps.snapshot().is_empty());
    }

    #[test]
    fn success_resets_the_open_period() {
        let eps = Endpoints::new(4, policy());
        let t = Instant::now();
        open(&eps, t);
        let t1 = t + secs(5);
        eps.try_start(EP, t1).expect("probe").failure(t1); // open 10 s
        let t2 = t1 + secs(10);
        eps.try_start(EP, t2).expect("probe").success(t2);
        // Opening again starts from the first period, after the full threshold.
        fail(&eps, t2);
        fail(&eps, t2);
        assert!(eps.try_start(EP, t2).is_ok());
        fail(&eps, t2);
        assert_eq!(
            eps.try_start(EP, t2).err(),
            Some(Busy::Open {
                until: t2 + secs(5)
            })
        );
    }

    #[test]
    fn failed_probes_double_the_period_up_to_the_cap() {
        let eps = Endpoints::new(4, policy());
        let mut t = Instant::now();
        open(&eps, t);
        t += secs(5);
        for expected in [10, 20, 30, 30] {
            eps.try_start(EP, t).expect("probe").failure(t);
            assert_eq!(
                eps.try_start(EP, t).err(),
                Some(Busy::Open {
                    until: t + secs(expected)
                })
            );
            assert!(
                eps.try_start(EP, t + secs(expected) - Duration::from_millis(1))
                    .is_err()
            );
            t += secs(expected);
        }
    }

    #[test]
    fn stale_outcomes_do_not_decide_an_open_breaker() {
        let eps = Endpoints::new(8, policy());
        let t = Instant::now();
        // Started while closed, finish after the breaker opened.
        let slow_ok = eps.try_start(EP, t).expect("start");
        let slow_err = eps.try_start(EP, t).expect("start");
        open(&eps, t);
        slow_ok.success(t);
        slow_err.failure(t);
        assert_eq!(
            eps.try_start(EP, t).err(),
            Some(Busy::Open { until: t + secs(5) })
        );
        // During half-open, only the probe's outcome counts.
        let t1 = t + secs(5);
        let stale = eps.try_start(EP, t).err();
        assert!(stale.is_some());
        let probe = eps.try_start(EP, t1).expect("probe");
        assert!(probe.is_probe());
        probe.failure(t1);
        assert_eq!(
            eps.try_start(EP, t1).err(),
            Some(Busy::Open {
                until: t1 + secs(10)
            })
        );
    }

    #[test]
    fn a_stale_request_in_flight_does_not_block_the_probe() {
        let eps = Endpoints::new(2, policy());
        let t = Instant::now();
        let slow = eps.try_start(EP, t).expect("start");
        open(&eps, t);
        let t1 = t + secs(5);
        let probe = eps
            .try_start(EP, t1)
            .expect("probe fits beside the slow request");
        assert!(probe.is_probe());
        assert_eq!(eps.snapshot(), vec![(EP.to_owned(), 2, true)]);
        probe.success(t1);
        let a = eps.try_start(EP, t1).expect("closed again");
        assert_eq!(eps.try_start(EP, t1).err(), Some(Busy::Full));
        drop(slow);
        let b = eps.try_start(EP, t1).expect("slot freed");
        drop((a, b));
        assert!(eps.snapshot().is_empty());
    }

    #[test]
    fn zero_threshold_and_cap_are_treated_as_one() {
        let eps = Endpoints::new(
            0,
            BreakerPolicy {
                failure_threshold: 0,
                ..policy()
            },
        );
        let t = Instant::now();
        let a = eps.try_start(EP, t).expect("one slot");
        assert_eq!(eps.try_start(EP, t).err(), Some(Busy::Full));
        a.failure(t);
        assert!(matches!(eps.try_start(EP, t), Err(Busy::Open { .. })));
    }

    #[test]
    fn guards_are_send_and_endpoints_shared_across_threads() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<InFlight>();
        assert_send::<Endpoints>();
        let eps = Endpoints::new(3, policy());
        let t = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let eps = eps.clone();
                std::thread::spawn(move || eps.try_start(EP, t).map(|g| g.success(t)).is_ok())
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert!(eps.snapshot().is_empty());
    }
}
