//! How often certificates are ordered: the pause after failed orders in
//! a row, and a count of the orders of the last hour so the log says loudly
//! when something keeps ordering (a failing validation, a cache that is
//! not kept) before the CA starts refusing.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

const HOUR: Duration = Duration::from_secs(3600);
/// The pause after the first failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause between orders.
const MAX_BACKOFF: Duration = Duration::from_secs(12 * 3600);

/// Orders (finished, successful or not) of the last hour.
#[derive(Debug)]
pub(super) struct OrderRate {
    finished: VecDeque<Instant>,
    warn_above: usize,
}

impl OrderRate {
    pub(super) fn new(warn_above: usize) -> Self {
        Self {
            finished: VecDeque::new(),
            warn_above,
        }
    }

    /// Records an order that finished at `now`; returns how many finished
    /// within the hour up to `now`, and whether that is above the limit.
    pub(super) fn record(&mut self, now: Instant) -> (usize, bool) {
        while self
            .finished
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.finished.pop_front();
        }
        self.finished.push_back(now);
        let count = self.finished.len();
        (count, count > self.warn_above)
    }
}

/// The pause before the next order after `failures` failures in a row:
/// 30 s, doubling, at most 12 h.
pub(super) fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_above_the_hourly_limit_and_forgets_after_an_hour() {
        let mut rate = OrderRate::new(3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                rate.record(t0 + Duration::from_secs(i)),
                ((i + 1) as usize, false)
            );
        }
        assert_eq!(rate.record(t0 + Duration::from_secs(10)), (4, true));
        // An hour after the first ones, they no longer count.
        assert_eq!(rate.record(t0 + HOUR + Duration::from_secs(5)), (2, false));
    }

    #[test]
    fn backoff_doubles_up_to_12_hours() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(5), Duration::from_secs(480));
        assert_eq!(backoff(12), MAX_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
