//! Per-replica leases of a shared (Redis) budget, so that most calls
//! reserve in this process's memory instead of a Redis round trip.
//!
//! A call that goes to Redis (the direct path) may ask its script to carve
//! a lease: `lease_calls` more reservations of the call's own size, in
//! every budget of the call, recorded in Redis like a reservation (it
//! counts as reserved, on Redis' clock, and stops counting
//! [`LEASE_WINDOW`] + `reservation_ttl` after it was carved, so a crashed
//! replica's lease expires like its reservations). The script carves only
//! while the budget's remainder after the lease is at least
//! [`LEASE_SHARE`] leases: near the limit every call goes to Redis and the
//! refusals stay exact.
//!
//! Calls then take their reservation out of the local lease (a mutex and
//! a map: the memory backend's cost); a call that does not fit goes to
//! Redis again, giving the lease's unused part back in the same script.
//! A call that took from a lease settles against it in Redis (the lease
//! shrinks by what the call had taken, its use is charged), so Redis' used
//! amounts stay exact. A lease serves calls for [`LEASE_WINDOW`] at most;
//! then (or at shutdown) its unused part is given back.

use super::backend::{Line, Settle};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a lease serves calls; it then goes back to Redis.
pub const LEASE_WINDOW: Duration = Duration::from_secs(2);

/// A lease is carved only if the budget keeps at least this many leases'
/// worth unreserved after it (so several replicas can hold one each, and
/// near the limit no replica holds budget another one's call needs).
pub const LEASE_SHARE: u64 = 8;

/// One budget's lease held by this replica.
#[derive(Debug, Clone)]
struct Held {
    id: Arc<str>,
    /// What calls may still take.
    free: u64,
    /// The limit and mode it was carved under (a reload that changes
    /// them sends calls to Redis, which gives the lease back).
    limit: u64,
    enforce: bool,
    /// Calls take from it until then (this process's clock).
    until: Instant,
    /// When the budget's counter may be forgotten (for giving it back).
    expire_at: i64,
}

#[derive(Debug, Default)]
struct Slot {
    lease: Option<Held>,
    /// A call is asking Redis for a lease of this budget: others do not.
    carving: bool,
}

/// This replica's leases, by budget key.
#[derive(Debug, Default)]
pub struct LeaseBook {
    slots: Mutex<HashMap<Arc<str>, Slot>>,
}

/// What a direct call asks of the lease book: the leases of its budgets
/// to give back, and whether it may carve new ones. Dropping it (the call
/// was cancelled, or Redis failed) lets other calls carve again.
#[derive(Debug)]
pub struct Ask<'a> {
    book: &'a LeaseBook,
    keys: Vec<Arc<str>>,
    /// Per line: the lease to give back and its unused part.
    pub give_back: Vec<Option<(Arc<str>, u64)>>,
    /// This call may carve (no other call of this replica is carving).
    pub carve: bool,
}

impl Drop for Ask<'_> {
    fn drop(&mut self) {
        if !self.carve {
            return;
        }
        let mut slots = self.book.lock();
        for k in &self.keys {
            if let Some(s) = slots.get_mut(&**k) {
                s.carving = false;
            }
        }
    }
}

/// The per-line ids of the leases a call took its reservation from.
pub type Taken = Vec<Arc<str>>;

impl LeaseBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes every line's amount from this replica's leases, or nothing
    /// (`None`: some line has no live lease with room).
    pub fn take(&self, lines: &[Line], now: Instant) -> Option<Taken> {
        let mut slots = self.lock();
        let fits = lines.iter().all(|l| {
            slots
                .get(&*l.key)
                .and_then(|s| s.lease.as_ref())
                .is_some_and(|h| {
                    h.until > now
                        && h.free >= l.amount
                        && h.limit == l.limit
                        && h.enforce == l.enforce
                })
        });
        if !fits {
            return None;
        }
        let mut taken = Vec::with_capacity(lines.len());
        for l in lines {
            let held = slots
                .get_mut(&*l.key)
                .and_then(|s| s.lease.as_mut())
                .expect("checked above");
            held.free -= l.amount;
            taken.push(held.id.clone());
        }
        Some(taken)
    }

    /// For a call going to Redis: hands over its budgets' leases (to be
    /// given back by its script) and claims the right to carve new ones
    /// unless another call is already carving one of them.
    pub fn ask(&self, lines: &[Line]) -> Ask<'_> {
        let mut slots = self.lock();
        let carve = lines
            .iter()
            .all(|l| !slots.get(&*l.key).is_some_and(|s| s.carving));
        let give_back = lines
            .iter()
            .map(|l| {
                let slot = slots.entry(l.key.clone()).or_default();
                slot.carving |= carve;
                slot.lease.take().map(|h| (h.id, h.free))
            })
            .collect();
        Ask {
            book: self,
            keys: lines.iter().map(|l| l.key.clone()).collect(),
            give_back,
            carve,
        }
    }

    /// Records the lease `id` Redis carved for `ask`'s call: `free` per
    /// line is what later calls may take. Returns leases it replaced (to
    /// give back; none unless a reload raced).
    pub fn carved(
        &self,
        ask: &Ask<'_>,
        lines: &[Line],
        id: &Arc<str>,
        free: impl Fn(&Line) -> u64,
        expire_at: impl Fn(usize) -> i64,
        until: Instant,
    ) -> Vec<Settle> {
        let mut slots = self.lock();
        let mut replaced = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let slot = slots.entry(ask.keys[i].clone()).or_default();
            let held = Held {
                id: id.clone(),
                free: free(l),
                limit: l.limit,
                enforce: l.enforce,
                until,
                expire_at: expire_at(i),
            };
            if let Some(old) = slot.lease.replace(held) {
                replaced.push(give_back(&l.key, &old));
            }
        }
        replaced
    }

    /// Removes the leases that stopped serving calls by `now` (all of
    /// them with `now = None`: at shutdown), as settlements giving their
    /// unused parts back.
    pub fn expired(&self, now: Option<Instant>) -> Vec<Settle> {
        let mut slots = self.lock();
        let mut out = Vec::new();
        slots.retain(|key, slot| {
            if let Some(held) = &slot.lease
                && now.is_none_or(|now| held.until <= now)
            {
                out.push(give_back(key, held));
                slot.lease = None;
            }
            slot.lease.is_some() || slot.carving
        });
        out
    }

    /// What calls may still take from `key`'s lease (for tests).
    #[cfg(feature = "test-support")]
    pub fn free(&self, key: &str) -> Option<u64> {
        self.lock()
            .get(key)
            .and_then(|s| s.lease.as_ref())
            .map(|h| h.free)
    }
}

/// The settlement that gives a lease's unused part back: no use charged.
fn give_back(key: &Arc<str>, held: &Held) -> Settle {
    Settle {
        key: key.clone(),
        lease: Some(held.id.clone()),
        reserved: held.free,
        actual: 0,
        expire_at: held.expire_at,
    }
}
