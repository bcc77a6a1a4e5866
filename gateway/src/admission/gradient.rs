//! An adaptive concurrency limit from measured latency, after the
//! gradient algorithm of Netflix's concurrency-limits: the limit follows
//! the ratio of the long-term latency (what the upstream does when well) to
//! the short-term one (what it does now). While latency holds, the limit
//! grows by about √limit per window; when queueing inside the upstream
//! raises latency, the ratio falls below one and the limit shrinks. Pure:
//! fed samples, it answers the limit.

use crate::config::model::AdaptiveLimit;

/// Samples averaged into one short-term latency.
const WINDOW: u32 = 20;
/// Windows the long-term latency averages over.
const LONG_WINDOWS: f64 = 60.0;
/// How much slower than usual the upstream may answer before the limit falls.
const TOLERANCE: f64 = 1.5;
/// How far one window moves the limit towards its new estimate.
const SMOOTHING: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct Gradient {
    bounds: AdaptiveLimit,
    limit: f64,
    /// Exponential average of window latencies (seconds); 0 before the first.
    long: f64,
    windows: u32,
    sum: f64,
    samples: u32,
    /// The most requests in flight seen in this window.
    peak: usize,
}

impl Gradient {
    pub fn new(start: usize, bounds: AdaptiveLimit) -> Gradient {
        Gradient {
            bounds,
            limit: start.clamp(bounds.min, bounds.max) as f64,
            long: 0.0,
            windows: 0,
            sum: 0.0,
            samples: 0,
            peak: 0,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// One request's latency, with `in_flight` requests in flight when it
    /// ended. Returns the new limit when a window closed.
    pub fn sample(&mut self, seconds: f64, in_flight: usize) -> Option<usize> {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        self.sum += seconds;
        self.samples += 1;
        self.peak = self.peak.max(in_flight);
        if self.samples < WINDOW {
            return None;
        }
        let short = (self.sum / f64::from(self.samples)).max(1e-6);
        let peak = self.peak;
        self.sum = 0.0;
        self.samples = 0;
        self.peak = 0;
        self.close_window(short, peak);
        Some(self.limit())
    }

    fn close_window(&mut self, short: f64, peak: usize) {
        self.windows += 1;
        if self.windows == 1 {
            self.long = short;
        } else {
            let n = f64::from(self.windows).min(LONG_WINDOWS);
            self.long += (short - self.long) / n;
        }
        // After a long overload the average is stale-high: let it recover.
        if self.long / short > 2.0 {
            self.long *= 0.95;
        }
        // Far below the limit, latency says nothing about the limit.
        if (peak as f64) < self.limit / 2.0 {
            return;
        }
        let gradient = (TOLERANCE * self.long / short).clamp(0.5, 1.0);
        let estimate = self.limit * gradient + self.limit.sqrt();
        let next = self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING;
        self.limit = next.clamp(self.bounds.min as f64, self.bounds.max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDS: AdaptiveLimit = AdaptiveLimit { min: 4, max: 400 };

    fn feed(g: &mut Gradient, windows: u32, seconds: f64) {
        for _ in 0..windows * WINDOW {
            let busy = g.limit();
            g.sample(seconds, busy);
        }
    }

    #[test]
    fn steady_latency_under_load_grows_the_limit_to_its_bound() {
        let mut g = Gradient::new(20, BOUNDS);
        feed(&mut g, 400, 0.010);
        assert_eq!(g.limit(), 400);
    }

    #[test]
    fn latency_rising_shrinks_the_limit_then_it_recovers() {
        let mut g = Gradient::new(200, BOUNDS);
        feed(&mut g, 100, 0.010);
        let before = g.limit();
        feed(&mut g, 20, 0.080);
        let during = g.limit();
        assert!(during < before / 2, "{before} → {during}");
        feed(&mut g, 200, 0.010);
        assert!(g.limit() > during * 2, "{during} → {}", g.limit());
    }

    #[test]
    fn an_idle_upstream_keeps_its_limit() {
        let mut g = Gradient::new(100, BOUNDS);
        for _ in 0..1000 {
            g.sample(0.5, 3);
        }
        assert_eq!(g.limit(), 100);
    }

    proptest! {
        /// Whatever the samples, the limit stays inside its bounds, and
        /// nonsense samples change nothing.
        #[test]
        fn the_limit_stays_in_bounds(
            start in 0usize..1000,
            samples in proptest::collection::vec((0.0f64..5.0, 0usize..1000), 0..2000),
        ) {
            let mut g = Gradient::new(start, BOUNDS);
            for (s, busy) in samples {
                g.sample(s, busy);
                prop_assert!((BOUNDS.min..=BOUNDS.max).contains(&g.limit()));
            }
            let before = g.limit();
            prop_assert_eq!(g.sample(f64::NAN, 500), None);
            prop_assert_eq!(g.sample(-1.0, 500), None);
            prop_assert_eq!(g.limit(), before);
        }
    }
}
