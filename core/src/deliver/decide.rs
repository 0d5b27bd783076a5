//! What happens to a delivery after one attempt: ack, retry after a wait, or
//! dead letter, and whether the answer counts against the endpoint.
//!
//! Pure: the answer, the attempt count, the schedule and the random source
//! go in, a [`Decision`] comes out. The worker carries it out in one queue
//! step ([`Deliverer::settle`](super::Deliverer)); here it is tested without
//! HTTP, a queue or a clock.

use std::time::Duration;

use super::attempt::Answer;
use super::backoff;

/// The queue step that ends an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Delivered: remove the job.
    Ack,
    /// Try again after `wait`.
    Retry {
        /// How long from now the next attempt is due.
        wait: Duration,
    },
    /// Give up and keep the delivery as a dead letter.
    DeadLetter {
        /// Why, in words, kept with the dead letter.
        reason: String,
        /// The same, as a metric label.
        code: &'static str,
    },
}

/// The step, and what the answer says about the endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// What to do with the job.
    pub step: Step,
    /// Whether the answer counts against the endpoint (circuit breaker):
    /// no answer, a 5xx or a 429. A 4xx is the receiver working as meant.
    pub endpoint_down: bool,
}

/// Decides what follows `answer`, the answer to attempt number
/// `attempts_made` (1 for the first), under `schedule` (the waits before
/// attempts 2, 3, ...).
pub(crate) fn decide(
    answer: &Answer,
    attempts_made: u32,
    schedule: &[Duration],
    rng: &mut fastrand::Rng,
) -> Decision {
    let (retry_after, endpoint_down) = match answer {
        Answer::Delivered(_) => {
            return Decision {
                step: Step::Ack,
                endpoint_down: false,
            };
        }
        Answer::Gone => {
            return Decision {
                step: Step::DeadLetter {
                    reason: "410 Gone: the receiver asked not to be sent this again".into(),
                    code: "gone",
                },
                endpoint_down: false,
            };
        }
        Answer::Rejected {
            retry_after,
            endpoint_down,
            ..
        } => (*retry_after, *endpoint_down),
        Answer::Failed(_) => (None, true),
        Answer::Refused(why) => {
            return Decision {
                step: Step::DeadLetter {
                    reason: format!("refused: {why}"),
                    code: "url_refused",
                },
                endpoint_down: false,
            };
        }
    };
    let step = match backoff::scheduled_wait(schedule, attempts_made, rng) {
        None => Step::DeadLetter {
            reason: format!("ran out of attempts ({attempts_made} made)"),
            code: "attempts_exhausted",
        },
        Some(scheduled) => Step::Retry {
            wait: retry_after.map_or(scheduled, |asked| {
                backoff::honour_retry_after(asked, scheduled)
            }),
        },
    };
    Decision {
        step,
        endpoint_down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn schedule() -> Vec<Duration> {
        vec![10 * S, 60 * S]
    }

    fn run(answer: Answer, attempts_made: u32) -> Decision {
        decide(
            &answer,
            attempts_made,
            &schedule(),
            &mut fastrand::Rng::with_seed(7),
        )
    }

    fn rejected(status: u16, retry_after: Option<Duration>, endpoint_down: bool) -> Answer {
        Answer::Rejected {
            status,
            retry_after,
            endpoint_down,
        }
    }

    fn wait(decision: &Decision) -> Duration {
        match decision.step {
            Step::Retry { wait } => wait,
            ref other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn a_2xx_is_acked_even_on_the_last_attempt() {
        let d = run(Answer::Delivered(204), 3);
        assert_eq!(d.step, Step::Ack);
        assert!(!d.endpoint_down);
    }

    #[test]
    fn gone_is_a_dead_letter_at_once_and_the_endpoint_is_healthy() {
        let d = run(Answer::Gone, 1);
        assert!(matches!(d.step, Step::DeadLetter { code: "gone", .. }));
        assert!(!d.endpoint_down);
    }

    #[test]
    fn failures_retry_on_the_schedule_with_jitter() {
        let first = wait(&run(Answer::Failed("timeout".into()), 1));
        assert!((8 * S..=12 * S).contains(&first), "{first:?}");
        let second = wait(&run(rejected(500, None, true), 2));
        assert!((48 * S..=72 * S).contains(&second), "{second:?}");
    }

    #[test]
    fn the_schedule_running_out_makes_a_dead_letter() {
        let d = run(rejected(500, None, true), 3);
        assert_eq!(
            d.step,
            Step::DeadLetter {
                reason: "ran out of attempts (3 made)".into(),
                code: "attempts_exhausted",
            }
        );
        assert!(d.endpoint_down);
    }

    #[test]
    fn retry_after_is_honoured_up_to_twice_the_scheduled_wait() {
        let short = wait(&run(rejected(429, Some(S), true), 1));
        assert_eq!(short, S);
        let long = wait(&run(rejected(503, Some(3600 * S), true), 1));
        assert!(long <= 24 * S && long >= 16 * S, "{long:?}");
    }

    #[test]
    fn a_refused_url_is_a_dead_letter_at_once_not_a_retry() {
        let d = run(Answer::Refused("host 10.0.0.1 is private".into()), 1);
        assert_eq!(
            d.step,
            Step::DeadLetter {
                reason: "refused: host 10.0.0.1 is private".into(),
                code: "url_refused",
            }
        );
        assert!(!d.endpoint_down, "nothing was asked of the endpoint");
    }

    #[test]
    fn only_failing_endpoints_count_against_the_breaker() {
        assert!(run(Answer::Failed("refused".into()), 1).endpoint_down);
        assert!(run(rejected(502, None, true), 1).endpoint_down);
        assert!(!run(rejected(400, None, false), 1).endpoint_down);
        assert!(wait(&run(rejected(400, None, false), 1)) > Duration::ZERO);
    }
}
