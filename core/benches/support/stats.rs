//! Timing for the bench binaries: medians and p90 of repeated samples.

// Each bench binary includes this file and uses a different part of it.
#![allow(dead_code)]

use std::time::Instant;

/// Median and 90th percentile (nearest rank) of a set of samples, in
/// nanoseconds per unit.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub p90: f64,
    pub samples: usize,
}

impl Stats {
    pub fn of(mut xs: Vec<f64>) -> Stats {
        assert!(!xs.is_empty(), "no samples");
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let median = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        // Nearest-rank p90: the smallest sample with at least 90% at or below it.
        let rank = (n * 9).div_ceil(10).max(1);
        Stats {
            median,
            p90: xs[rank - 1],
            samples: n,
        }
    }
}

/// Calls `f` `warmup` times untimed, then takes `samples` samples, each
/// timing `calls` back-to-back calls of `f`; returns nanoseconds per call
/// divided by `units_per_call` (events per call, for batches).
pub fn measure(
    warmup: usize,
    samples: usize,
    calls: usize,
    units_per_call: usize,
    mut f: impl FnMut(),
) -> Stats {
    for _ in 0..warmup {
        f();
    }
    let per = (calls * units_per_call) as f64;
    let times = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_nanos() as f64 / per
        })
        .collect();
    Stats::of(times)
}
