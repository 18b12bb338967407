//! Limit state in this process: governor's keyed GCRA for requests per
//! minute (one limiter per distinct quota, so a reload that changes one
//! token's quota starts that token afresh and leaves every other token's
//! state alone), and a counted map for concurrency slots.

use super::{Admission, RateQuota, SlotGuard, SlotOutcome};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

/// Keyed by the shared key of the call (`sub:<sub>`): a key that has
/// state already costs no copy per call.
type KeyedLimiter<C> = RateLimiter<
    Arc<str>,
    DefaultKeyedStateStore<Arc<str>>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// In-process limit state; cheap to clone (shared inside). Generic over
/// governor's clock so tests can drive time (`FakeRelativeClock`).
pub struct MemoryBackend<C: Clock = DefaultClock> {
    clock: C,
    limiters: Arc<Mutex<HashMap<RateQuota, Arc<KeyedLimiter<C>>>>>,
    slots: Arc<Mutex<SlotMap>>,
}

/// Slots by key (verified subjects, `total`): foldhash, keyed per process.
type SlotMap = HashMap<Arc<str>, Slots, foldhash::fast::RandomState>;

impl<C: Clock + Clone> Clone for MemoryBackend<C> {
    fn clone(&self) -> Self {
        Self {
            clock: self.clock.clone(),
            limiters: self.limiters.clone(),
            slots: self.slots.clone(),
        }
    }
}

impl<C: Clock + Clone> std::fmt::Debug for MemoryBackend<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quotas = self.lock_limiters().len();
        f.debug_struct("MemoryBackend")
            .field("quotas", &quotas)
            .finish_non_exhaustive()
    }
}

/// The slots one key holds: (id, when it was taken). A vector that keeps
/// its capacity: taking the only slot of a key allocates nothing once the
/// key has held one (a map's node was allocated and freed on every call).
#[derive(Default)]
struct Slots {
    next_id: u64,
    started: Vec<(u64, Instant)>,
}

impl Default for MemoryBackend<DefaultClock> {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl MemoryBackend<DefaultClock> {
    /// Empty state on the real clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C: Clock + Clone> MemoryBackend<C> {
    /// Empty state on `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: Arc::default(),
            slots: Arc::default(),
        }
    }

    fn lock_limiters(&self) -> std::sync::MutexGuard<'_, HashMap<RateQuota, Arc<KeyedLimiter<C>>>> {
        self.limiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn limiter(&self, quota: RateQuota) -> Arc<KeyedLimiter<C>> {
        self.lock_limiters()
            .entry(quota)
            .or_insert_with(|| {
                let q = Quota::with_period(quota.emission_interval())
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                    .allow_burst(quota.burst);
                Arc::new(RateLimiter::new(
                    q,
                    DefaultKeyedStateStore::default(),
                    self.clock.clone(),
                ))
            })
            .clone()
    }

    /// Counts one call of `key` against `quota`.
    pub fn check_rate(&self, key: &Arc<str>, quota: RateQuota) -> Admission {
        let limiter = self.limiter(quota);
        match limiter.check_key(key) {
            Ok(()) => Admission::Allowed,
            Err(not_until) => Admission::Denied {
                // Measured on the limiter's own clock (its instants are
                // relative to it).
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            },
        }
    }

    /// Takes a slot of `key` if fewer than `max` are held.
    pub fn acquire_slot(&self, key: &Arc<str>, max: NonZeroU32) -> SlotOutcome {
        let mut map = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // The key is shared (not copied) when it holds no slot yet.
        let slots = match map.get_mut(&**key) {
            Some(slots) => slots,
            None => map.entry(key.clone()).or_default(),
        };
        if slots.started.len() >= max.get() as usize {
            let oldest_age = slots
                .started
                .iter()
                .map(|(_, at)| *at)
                .min()
                .map(|at| at.elapsed())
                .unwrap_or_default();
            return SlotOutcome::Full { oldest_age };
        }
        let id = slots.next_id;
        slots.next_id += 1;
        slots.started.push((id, Instant::now()));
        SlotOutcome::Acquired(SlotGuard::Memory(MemorySlot {
            slots: self.slots.clone(),
            key: key.clone(),
            id,
        }))
    }

    /// Drops rate state of keys that are back to a full bucket, the
    /// limiters of quotas no key uses any more (a reload left them behind)
    /// and the slot entries of keys holding none: memory stays bounded by
    /// the keys active within about a minute.
    pub fn retain_recent(&self) {
        let mut map = self.lock_limiters();
        for limiter in map.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        map.retain(|_, limiter| !limiter.is_empty());
        drop(map);
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, slots| !slots.started.is_empty());
    }

    /// Slots held now by `key`.
    pub fn in_flight(&self, key: &str) -> usize {
        let map = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map_or(0, |s| s.started.len())
    }

    /// Distinct keys with rate state (for tests of [`Self::retain_recent`]).
    pub fn rate_keys(&self) -> usize {
        self.lock_limiters().values().map(|l| l.len()).sum()
    }
}

/// A slot held in this process's state; freed on drop.
pub struct MemorySlot {
    slots: Arc<Mutex<SlotMap>>,
    key: Arc<str>,
    id: u64,
}

impl Drop for MemorySlot {
    fn drop(&mut self) {
        let mut map = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // An emptied key stays (its next call need not copy it again);
        // `retain_recent` drops it.
        if let Some(slots) = map.get_mut(&*self.key)
            && let Some(at) = slots.started.iter().position(|(id, _)| *id == self.id)
        {
            slots.started.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn key(name: &str) -> Arc<str> {
        name.into()
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn burst_then_exactly_one_per_interval() {
        let clock = FakeRelativeClock::default();
        let m = MemoryBackend::with_clock(clock.clone());
        let q = RateQuota {
            per_minute: nz(60),
            burst: nz(10),
        };
        let allowed = (0..200)
            .filter(|_| m.check_rate(&key("alice"), q) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 10, "the burst, no more");
        match m.check_rate(&key("alice"), q) {
            Admission::Denied { retry_after } => assert_eq!(retry_after, Duration::from_secs(1)),
            Admission::Allowed => panic!("denied expected"),
        }
        clock.advance(Duration::from_millis(250));
        match m.check_rate(&key("alice"), q) {
            Admission::Denied { retry_after } => {
                assert_eq!(retry_after, Duration::from_millis(750));
            }
            Admission::Allowed => panic!("denied expected"),
        }
        clock.advance(Duration::from_millis(750));
        assert_eq!(m.check_rate(&key("alice"), q), Admission::Allowed);
        assert!(matches!(
            m.check_rate(&key("alice"), q),
            Admission::Denied { .. }
        ));
        clock.advance(Duration::from_secs(30));
        let refilled = (0..200)
            .filter(|_| m.check_rate(&key("alice"), q) == Admission::Allowed)
            .count();
        assert_eq!(refilled, 10, "refill is capped at the burst");
        assert_eq!(
            m.check_rate(&key("bob"), q),
            Admission::Allowed,
            "another key is unaffected"
        );
    }

    #[test]
    fn a_changed_quota_is_a_fresh_bucket_and_old_state_is_dropped() {
        let clock = FakeRelativeClock::default();
        let m = MemoryBackend::with_clock(clock.clone());
        let slow = RateQuota {
            per_minute: nz(6),
            burst: nz(1),
        };
        let fast = RateQuota {
            per_minute: nz(600),
            burst: nz(5),
        };
        assert_eq!(m.check_rate(&key("k"), slow), Admission::Allowed);
        assert!(matches!(
            m.check_rate(&key("k"), slow),
            Admission::Denied { .. }
        ));
        assert_eq!(m.check_rate(&key("k"), fast), Admission::Allowed);
        assert_eq!(m.rate_keys(), 2);
        clock.advance(Duration::from_secs(60));
        m.retain_recent();
        assert_eq!(m.rate_keys(), 0, "full buckets are forgotten");
        assert_eq!(m.lock_limiters().len(), 0, "unused quotas are dropped");
    }

    #[test]
    fn concurrency_slots_are_counted_and_freed() {
        let m = MemoryBackend::new();
        let guards: Vec<_> = (0..3)
            .map(|_| match m.acquire_slot(&key("k"), nz(3)) {
                SlotOutcome::Acquired(g) => g,
                SlotOutcome::Full { .. } => panic!("slot expected"),
            })
            .collect();
        assert!(matches!(
            m.acquire_slot(&key("k"), nz(3)),
            SlotOutcome::Full { .. }
        ));
        assert!(matches!(
            m.acquire_slot(&key("other"), nz(3)),
            SlotOutcome::Acquired(_)
        ));
        assert_eq!(m.in_flight("k"), 3);
        drop(guards);
        assert_eq!(m.in_flight("k"), 0);
        assert!(matches!(
            m.acquire_slot(&key("k"), nz(3)),
            SlotOutcome::Acquired(_)
        ));
    }
}
