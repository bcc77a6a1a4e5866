//! When each assertion signing key is used and published. Pure.
//!
//! Time is cut into slots of `period`; slot `n` (from `n·period`) signs with
//! its own key. Every node derives the same slots from the clock and reads
//! each slot's key from the customer directory (the first node to need it
//! writes it), so every node signs with the same key and publishes the same
//! set. The next key is published `ahead` before it signs, so backends that
//! cache the JWKS know it in time; the previous key stays published `keep`
//! after it stopped signing, until its last assertion has expired. Never
//! signs with a key that was not published at least `ahead` earlier (except
//! in the very first slot of a deployment).

/// The rotation settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub period: u64,
    /// How long before its slot a key is published.
    pub ahead: u64,
    /// How long after its slot a key stays published.
    pub keep: u64,
}

impl Schedule {
    /// A schedule for keys rotated every `period` signing assertions that
    /// live `ttl`: published ahead by half a period (at most an hour, well
    /// over a JWKS cache's 5 minutes), kept for the assertion life plus the
    /// JWKS cache time (at most a period: with very short periods, as in
    /// tests, the set would otherwise hold hundreds of keys).
    pub fn new(period: u64, ttl: u64) -> Schedule {
        let period = period.max(2);
        Schedule {
            period,
            ahead: (period / 2).min(3600),
            keep: ttl + period.min(300),
        }
    }

    /// The slot whose key signs at `now`.
    pub fn active(&self, now: u64) -> i64 {
        (now / self.period) as i64
    }

    /// The slots whose keys are published at `now`, oldest first: every
    /// slot that ended less than `keep` ago (one, unless the period is
    /// shorter than `keep`), the active one, and the next one `ahead` of it.
    pub fn published(&self, now: u64) -> Vec<i64> {
        let n = self.active(now);
        let start = n as u64 * self.period;
        // Slot s ends at (s + 1)·period and stays while now < that + keep.
        let oldest = (now.saturating_sub(self.keep) / self.period) as i64;
        let mut out: Vec<i64> = (oldest.min(n)..=n).collect();
        if now + self.ahead >= start + self.period {
            out.push(n + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_day_of_hourly_keys() {
        let s = Schedule::new(3600, 60);
        assert_eq!(s.ahead, 1800);
        assert_eq!(s.published(10 * 3600 + 100), vec![9, 10]);
        assert_eq!(s.published(10 * 3600 + 400), vec![10]);
        assert_eq!(s.published(10 * 3600 + 1900), vec![10, 11]);
        assert_eq!(s.active(10 * 3600 + 1900), 10);
    }

    proptest! {
        /// Whatever the period, ttl and moment: the signing key was
        /// published `ahead` before (backends caching the JWKS know it), and
        /// an assertion signed now verifies until it expires.
        #[test]
        fn keys_are_published_before_use_and_kept_until_their_last_assertion_expires(
            period in 2u64..200_000,
            ttl in 1u64..61,
            now in 1_000_000u64..2_000_000_000,
        ) {
            let s = Schedule::new(period, ttl);
            let signing = s.active(now);
            for t in [now.saturating_sub(s.ahead), now - (now % 7).min(s.ahead), now] {
                // Before this deployment's clock: nothing to check.
                prop_assert!(s.published(t).contains(&signing), "slot {} not published at {} (now {})", signing, t, now);
            }
            for t in [now, now + ttl / 2, now + ttl] {
                prop_assert!(s.published(t).contains(&signing), "slot {} withdrawn at {} (signed {}, ttl {})", signing, t, now, ttl);
            }
            let bound = (s.keep / s.period) as usize + 3;
            prop_assert!(s.published(now).len() <= bound);
        }
    }
}
