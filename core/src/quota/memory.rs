//! The quota counters in this process's memory (one core). Restarting
//! loses them; the core restores the used amounts from the ledger at start
//! and after a reload ([`MemoryBackend::raise_used`]).

use super::backend::{BackendError, Counts, Line, QuotaBackend, ReserveOutcome, Reserved, Settle};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

#[derive(Debug, Default)]
struct Counter {
    used: u64,
    /// Reservation id → (amount, expiry).
    reservations: HashMap<String, (u64, Instant)>,
    /// Unix seconds after which the counter is dropped (0: not yet known).
    expire_at: i64,
}

impl Counter {
    fn counts(&mut self, now: Instant) -> Counts {
        self.reservations.retain(|_, (_, until)| *until > now);
        Counts {
            used: self.used,
            reserved: self.reservations.values().map(|(a, _)| a).sum(),
        }
    }
}

/// Counters in a mutex-guarded map; every step holds the lock once.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    map: HashMap<Arc<str>, Counter>,
    /// Reservations since the last sweep of ended windows.
    since_sweep: u32,
}

/// Ended windows are swept every this many reservations (not on every
/// call: a sweep visits every counter).
const SWEEP_EVERY: u32 = 4096;

fn unix_now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    )
}

/// `key`'s counter, made on its first use (the key is shared, not copied).
fn counter<'a>(map: &'a mut HashMap<Arc<str>, Counter>, key: &Arc<str>) -> &'a mut Counter {
    map.entry(key.clone()).or_default()
}

impl MemoryBackend {
    /// Raises `key`'s settled use to at least `amount` (the ledger's total
    /// of its window).
    pub fn raise_used(&self, key: &str, amount: u64, expire_at: i64) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let c = counters.map.entry(Arc::from(key)).or_default();
        c.used = c.used.max(amount);
        c.expire_at = c.expire_at.max(expire_at);
    }
}

#[async_trait::async_trait]
impl QuotaBackend for MemoryBackend {
    async fn reserve(&self, id: &str, lines: &[Line], ttl: Duration) -> Reserved {
        let now = Instant::now();
        let (now_s, now_ms) = unix_now();
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.since_sweep += 1;
        if counters.since_sweep >= SWEEP_EVERY {
            // Windows that ended are forgotten (bounded memory).
            counters.since_sweep = 0;
            counters.map.retain(|_, c| {
                c.expire_at == 0 || c.expire_at > now_s || !c.reservations.is_empty()
            });
        }
        let map = &mut counters.map;
        let counts: Vec<Counts> = lines
            .iter()
            .map(|l| counter(map, &l.key).counts(now))
            .collect();
        let refused = lines.iter().zip(&counts).position(|(l, c)| {
            l.enforce && c.used.saturating_add(c.reserved).saturating_add(l.amount) > l.limit
        });
        if refused.is_none() {
            for l in lines {
                if let Some(c) = map.get_mut(&l.key) {
                    c.reservations.insert(id.to_owned(), (l.amount, now + ttl));
                }
            }
        }
        Ok(ReserveOutcome {
            now_ms,
            counts,
            refused,
            leased: false,
        })
    }

    async fn settle(&self, id: &str, lines: &[Settle]) -> Result<(), BackendError> {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let map = &mut counters.map;
        for l in lines {
            let c = counter(map, &l.key);
            c.reservations.remove(id);
            c.used = c.used.saturating_add(l.actual);
            c.expire_at = c.expire_at.max(l.expire_at);
        }
        Ok(())
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<Counts>, BackendError> {
        let now = Instant::now();
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let map = &mut counters.map;
        Ok(keys
            .iter()
            .map(|k| {
                map.get_mut(k.as_str())
                    .map(|c| c.counts(now))
                    .unwrap_or_default()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, limit: u64, amount: u64) -> Line {
        Line {
            key: key.into(),
            limit,
            amount,
            enforce: true,
        }
    }

    #[tokio::test]
    async fn reserve_all_or_none_then_settle() {
        let b = MemoryBackend::default();
        let ttl = Duration::from_secs(60);
        let ok = b
            .reserve("a", &[line("d", 100, 60), line("m", 1000, 60)], ttl)
            .await
            .expect("reserve");
        assert_eq!(ok.refused, None);
        // 60 reserved in "d": another 60 does not fit, and "m" stays untouched.
        let no = b
            .reserve("b", &[line("m", 1000, 60), line("d", 100, 60)], ttl)
            .await
            .expect("reserve");
        assert_eq!(no.refused, Some(1));
        assert_eq!(
            no.counts[1],
            Counts {
                used: 0,
                reserved: 60
            }
        );
        let m = b.counts(&["m".into()]).await.expect("counts");
        assert_eq!(
            m[0],
            Counts {
                used: 0,
                reserved: 60
            }
        );
        let settle = |key: &str| Settle {
            key: key.into(),
            lease: None,
            reserved: 60,
            actual: 25,
            expire_at: i64::MAX,
        };
        b.settle("a", &[settle("d"), settle("m")])
            .await
            .expect("settle");
        let d = b.counts(&["d".into()]).await.expect("counts");
        assert_eq!(
            d[0],
            Counts {
                used: 25,
                reserved: 0
            }
        );
        // Shadow lines reserve even over the limit.
        let mut shadow = line("d", 10, 60);
        shadow.enforce = false;
        let s = b.reserve("c", &[shadow], ttl).await.expect("reserve");
        assert_eq!(s.refused, None);
    }

    #[tokio::test]
    async fn reservations_expire() {
        let b = MemoryBackend::default();
        b.reserve("a", &[line("d", 100, 60)], Duration::from_millis(1))
            .await
            .expect("reserve");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let d = b.counts(&["d".into()]).await.expect("counts");
        assert_eq!(d[0], Counts::default());
    }
}
