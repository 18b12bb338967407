//! The per-address failure budget: an address (an IPv4 address, or the /64
//! of an IPv6 one, which one host usually holds whole) may fail
//! authentication `jwt.failure_budget` times per `jwt.failure_window`.
//! Past that, until its window ends, its tokens are first put through the
//! checks that need no signature ([`crate::auth::TokenVerifier::precheck`]:
//! header, key, expiry, issuer, audience, subject, lifetime, revocation) and
//! refused cheaply when they fail. A token that passes is verified in full:
//! a valid token is never refused for its address's failures, so behind a
//! NAT or a load balancer one bad client cannot lock out the others.
//! Memory is bounded: at most [`MAX_TRACKED`] addresses are tracked; when
//! full, ended windows are dropped first, then the oldest.
//!
//! Refusals of an address past its budget may be answered after a delay
//! ([`FailureBudget::with_delay`]; the edge uses [`REFUSAL_DELAY`]), a
//! tarpit: a client that retries bad tokens in a loop, one call at a time,
//! then makes one call per delay instead of thousands a second that the
//! other clients' calls (a NAT's valid ones included) would queue behind.

use crate::conn::address_key as key;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// Most addresses tracked at once (a few MB at most).
pub const MAX_TRACKED: usize = 10_000;
/// How long the edge holds the refusal of a token from an address past
/// its budget before answering.
pub const REFUSAL_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// See the module doc.
#[derive(Debug)]
pub struct FailureBudget {
    limit: u32,
    window: Duration,
    max_tracked: usize,
    windows: Mutex<HashMap<IpAddr, Window>>,
    refusals: AtomicU64,
    delay: Option<Duration>,
}

impl FailureBudget {
    /// `limit` failures per `window` (`limit` 0: no budget, never refuses).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_capacity(limit, window, MAX_TRACKED)
    }

    /// As [`FailureBudget::new`], tracking at most `max_tracked` addresses.
    pub fn with_capacity(limit: u32, window: Duration, max_tracked: usize) -> Self {
        Self {
            limit,
            window: window.max(Duration::from_secs(1)),
            max_tracked: max_tracked.max(1),
            windows: Mutex::new(HashMap::new()),
            refusals: AtomicU64::new(0),
            delay: None,
        }
    }

    /// Refusals past the budget are answered after `delay` (zero: at once).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay).filter(|d| !d.is_zero());
        self
    }

    /// The tarpit's delay, if any.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// `Err(wait)` when `addr` has spent its budget: how long until its
    /// window ends.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        match windows.get(&key(addr)) {
            Some(w) if w.failures >= self.limit => {
                let end = w.start + self.window;
                if now < end { Err(end - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `addr`; whether it has spent its budget now
    /// (what [`check`](Self::check) would say next).
    pub fn record_failure(&self, addr: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let addr = key(addr);
        if !windows.contains_key(&addr) && windows.len() >= self.max_tracked {
            let window = self.window;
            windows.retain(|_, w| now < w.start + window);
            if windows.len() >= self.max_tracked
                && let Some(oldest) = windows.iter().min_by_key(|(_, w)| w.start).map(|(a, _)| *a)
            {
                windows.remove(&oldest);
            }
        }
        let entry = windows.entry(addr).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= entry.start + self.window {
            *entry = Window {
                start: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.failures >= self.limit
    }

    /// Counts a token refused cheaply because its address is over budget.
    pub fn refused(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Tokens refused cheaply so far (`vibectl_auth_budget_refusals_total`).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_refuses_then_recovers() {
        let budget = FailureBudget::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(budget.check(a, Instant::now()).is_ok());
            budget.record_failure(a, Instant::now());
        }
        let wait = budget.check(a, Instant::now()).expect_err("spent");
        assert_eq!(wait, Duration::from_secs(60));
        assert!(budget.check(b, Instant::now()).is_ok(), "per address");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(
            budget.check(a, Instant::now()).expect_err("still"),
            Duration::from_secs(30)
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(budget.check(a, Instant::now()).is_ok(), "window ended");
        budget.record_failure(a, Instant::now());
        assert!(budget.check(a, Instant::now()).is_ok(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_by_slash_64_and_memory_is_bounded() {
        let budget = FailureBudget::with_capacity(1, Duration::from_secs(60), 100);
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        budget.record_failure(one, Instant::now());
        assert!(budget.check(same_64, Instant::now()).is_err());
        for i in 0..1000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            budget.record_failure(addr, Instant::now());
            assert!(budget.tracked() <= 100);
        }
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 999));
        assert!(budget.check(last, Instant::now()).is_err());
    }

    #[test]
    fn zero_limit_is_off() {
        let budget = FailureBudget::new(0, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            budget.record_failure(a, Instant::now());
        }
        assert!(budget.check(a, Instant::now()).is_ok());
        assert_eq!(budget.tracked(), 0);
    }
}
