//! Per-address admission at accept, before any TLS work: a token bucket of
//! new connections per address (`connections.accept_rate_per_address`,
//! `accept_burst_per_address`), as nginx's `limit_req` keyed by address.
//! A connection over it is closed at once: it costs the edge an accept and
//! a close, where a TLS handshake would cost milliseconds of CPU that the
//! other clients' handshakes wait behind. A full bucket is the same as no
//! bucket, so full ones are dropped (amortised); memory stays bounded.

use std::{collections::HashMap, net::IpAddr};
use tokio::time::Instant;

/// Most addresses with a bucket at once; past it (after dropping the full
/// ones) every bucket is forgotten, i.e. each address gets its burst again.
const MAX_BUCKETS: usize = 100_000;
/// The map is swept of full buckets when it grows past this (or twice its
/// size after the last sweep).
const SWEEP_MIN: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every address (keys from [`super::address_key`]).
#[derive(Debug)]
pub(crate) struct AcceptRate {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    sweep_at: usize,
}

impl AcceptRate {
    /// `rate` new connections a second, `burst` at once (`rate` 0: off).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            sweep_at: SWEEP_MIN,
        }
    }

    /// Takes one new connection of `key` at `now`; false: over its rate.
    pub(crate) fn take(&mut self, key: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= self.sweep_at {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// Drops the buckets that refilled (as good as absent).
    fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_BUCKETS {
            self.buckets.clear();
        }
        self.sweep_at = (self.buckets.len() * 2).max(SWEEP_MIN);
    }

    /// Addresses with a bucket.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate_per_address_and_full_buckets_are_dropped() {
        let mut rate = AcceptRate::new(10, 20);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let now = Instant::now();
        assert_eq!((0..100).filter(|_| rate.take(a, now)).count(), 20);
        assert!(rate.take(b, now), "another address has its own bucket");
        tokio::time::advance(Duration::from_millis(500)).await;
        let later = Instant::now();
        assert_eq!((0..100).filter(|_| rate.take(a, later)).count(), 5);
        for i in 0..5000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rate.take(addr, later));
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        for i in 0..5000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            assert!(rate.take(addr, Instant::now()));
        }
        // The first 5000 refilled: swept when the map grew.
        assert!(rate.tracked() < 10_000, "{} buckets kept", rate.tracked());
        assert!(AcceptRate::new(0, 0).take(a, now), "0: off");
    }
}
