//! [`ConnTable`]: every open client connection of the edge (all
//! listeners), with the caps in total and per client address (IPv4, or
//! the /64 of IPv6). At a cap the connection idle the longest (no request
//! in flight; silent ones first, see [`ConnState`]) is closed to make
//! room; with none idle, the newcomer is
//! refused. Each connection's [`ConnState`] says whether it is idle, since
//! when, and carries its close signal.

use crate::conn::{CloseReason, ConnStats, Limits, address_key};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One connection as the table and its own task see it.
#[derive(Debug)]
pub struct ConnState {
    id: u64,
    epoch: Instant,
    streams: AtomicU32,
    /// Milliseconds since `epoch` of the last stream start or end (or of
    /// the accept, before any).
    last_active_ms: AtomicU64,
    /// When the connection became ready for requests (TLS: handshake done).
    ready_ms: AtomicU64,
    used: AtomicBool,
    /// Set by [`ConnState::mark_ready`]: set-up (TLS, PROXY header) done.
    ready: AtomicBool,
    close: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// Premature-reset accounting: (streams ended, of which premature).
    resets: Mutex<(u32, u32)>,
}

impl ConnState {
    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Requests in flight.
    pub fn streams(&self) -> u32 {
        self.streams.load(Ordering::Acquire)
    }

    /// Whether a request ever arrived.
    pub fn used(&self) -> bool {
        self.used.load(Ordering::Acquire)
    }

    /// When the last request started or ended (or the connection was accepted).
    pub fn last_active(&self) -> Instant {
        self.at(self.last_active_ms.load(Ordering::Acquire))
    }

    /// When the connection became ready for its first request.
    pub fn ready_at(&self) -> Instant {
        self.at(self.ready_ms.load(Ordering::Acquire))
    }

    /// The TLS handshake (or PROXY header) is done: the first-request timer starts.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.start_timers();
    }

    fn start_timers(&self) {
        let now = self.ms(Instant::now());
        self.ready_ms.store(now, Ordering::Release);
        self.last_active_ms.store(now, Ordering::Release);
    }

    pub(crate) fn stream_opened(&self) {
        self.used.store(true, Ordering::Release);
        self.streams.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    /// A stream ended; `premature`: reset by the client right after opening.
    /// Returns true when the connection's recent streams trip the guard.
    pub(crate) fn stream_closed(&self, premature: bool, max_percent: u8) -> bool {
        self.streams.fetch_sub(1, Ordering::AcqRel);
        self.touch();
        if max_percent == 0 {
            return false;
        }
        let Ok(mut counts) = self.resets.lock() else {
            return false;
        };
        let (total, early) = &mut *counts;
        *total += 1;
        *early += u32::from(premature);
        // A window of the last ~100-200 streams: halve both past 200.
        if *total >= 200 {
            *total /= 2;
            *early /= 2;
        }
        *total >= 100 && u64::from(*early) * 100 > u64::from(*total) * u64::from(max_percent)
    }

    fn touch(&self) {
        let now = self.ms(Instant::now());
        self.last_active_ms.store(now, Ordering::Release);
    }

    /// Asks the connection's task to close it, for `reason` (the first wins).
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.close.cancel();
    }

    /// Fires when someone asked the connection to close.
    pub fn closing(&self) -> &CancellationToken {
        &self.close
    }

    /// Why it was asked to close, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    fn is_idle(&self) -> bool {
        self.streams() == 0 && !self.close.is_cancelled()
    }

    /// Which idle connections go first at a cap: silent ones that finished
    /// their set-up and never sent a request (what an attacker holds), then
    /// ones still in set-up (bounded by the handshake timeout anyway), then
    /// clients' idle keep-alive connections; within a class, the oldest.
    fn eviction_order(&self) -> (u8, u64) {
        let class = match (self.used(), self.ready.load(Ordering::Acquire)) {
            (false, true) => 0,
            (false, false) => 1,
            (true, _) => 2,
        };
        (class, self.last_active_ms.load(Ordering::Acquire))
    }
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, (IpAddr, Arc<ConnState>)>,
    per_address: HashMap<IpAddr, usize>,
}

/// See the module doc.
#[derive(Debug)]
pub struct ConnTable {
    limits: Limits,
    max_total: usize,
    epoch: Instant,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    stats: Arc<ConnStats>,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct ConnGuard {
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl ConnGuard {
    /// The connection's state.
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    /// The table's limits.
    pub fn limits(&self) -> &Limits {
        &self.table.limits
    }

    /// The table's counters.
    pub fn stats(&self) -> &Arc<ConnStats> {
        &self.table.stats
    }

    /// Moves the connection to the client address `addr` (from a PROXY
    /// header), applying the per-address cap there. False: refused.
    pub fn rekey(&self, addr: IpAddr) -> bool {
        self.table.rekey(&self.state, address_key(addr))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.remove(self.state.id);
        if let Some(reason) = self.state.close_reason() {
            self.table.stats.closed(reason);
        }
    }
}

impl ConnTable {
    /// A table with `limits`; the total cap is `limits.max_total` bounded
    /// by `fd_cap` (what the file-descriptor limit leaves for connections).
    pub fn new(limits: Limits, fd_cap: usize) -> Arc<Self> {
        let max_total = limits.max_total.min(fd_cap).max(1);
        let stats = Arc::new(ConnStats::default());
        stats.set_max(max_total);
        Arc::new(Self {
            limits,
            max_total,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
            stats,
        })
    }

    /// The total cap in force.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// The counters read by `/metrics`.
    pub fn stats(&self) -> &Arc<ConnStats> {
        &self.stats
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().map(|i| i.conns.len()).unwrap_or(0)
    }

    /// Admits a connection from `peer`, closing the oldest idle one at a
    /// cap; `None` when it must be refused (a cap with nothing idle).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnGuard> {
        let key = address_key(peer);
        let mut inner = self.inner.lock().ok()?;
        if inner.conns.len() >= self.max_total
            && !self.evict_oldest_idle(&mut inner, None, CloseReason::EvictedTotal)
        {
            self.stats.refused();
            return None;
        }
        let max = self.limits.max_per_address;
        if max > 0
            && inner.per_address.get(&key).copied().unwrap_or(0) >= max
            && !self.evict_oldest_idle(&mut inner, Some(key), CloseReason::EvictedAddress)
        {
            self.stats.refused();
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            id,
            epoch: self.epoch,
            streams: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
            ready_ms: AtomicU64::new(0),
            used: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            close: CancellationToken::new(),
            reason: OnceLock::new(),
            resets: Mutex::new((0, 0)),
        });
        state.start_timers();
        inner.conns.insert(id, (key, state.clone()));
        *inner.per_address.entry(key).or_default() += 1;
        self.stats.set_open(inner.conns.len());
        Some(ConnGuard {
            table: self.clone(),
            state,
        })
    }

    fn rekey(&self, state: &Arc<ConnState>, key: IpAddr) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let Some(old) = inner.conns.get(&state.id).map(|(k, _)| *k) else {
            return false;
        };
        if old == key {
            return true;
        }
        let max = self.limits.max_per_address;
        if max > 0
            && inner.per_address.get(&key).copied().unwrap_or(0) >= max
            && !self.evict_oldest_idle(&mut inner, Some(key), CloseReason::EvictedAddress)
        {
            self.stats.refused();
            return false;
        }
        decrement(&mut inner.per_address, old);
        *inner.per_address.entry(key).or_default() += 1;
        if let Some(entry) = inner.conns.get_mut(&state.id) {
            entry.0 = key;
        }
        true
    }

    /// Closes up to `n` of the connections idle the longest (file
    /// descriptors ran out). Returns how many.
    pub fn shed_idle(&self, n: usize) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        (0..n)
            .take_while(|_| self.evict_oldest_idle(&mut inner, None, CloseReason::ShedFdLimit))
            .count()
    }

    /// Closes the idle connection (of `key`, or any) idle the longest and
    /// frees its place at once (its task drops the socket right after).
    fn evict_oldest_idle(&self, inner: &mut Inner, key: Option<IpAddr>, why: CloseReason) -> bool {
        let oldest = inner
            .conns
            .iter()
            .filter(|(_, (k, s))| key.is_none_or(|key| *k == key) && s.is_idle())
            .min_by_key(|(_, (_, s))| s.eviction_order())
            .map(|(id, _)| *id);
        let Some(id) = oldest else {
            return false;
        };
        if let Some((k, state)) = inner.conns.remove(&id) {
            decrement(&mut inner.per_address, k);
            state.close(why);
        }
        self.stats.set_open(inner.conns.len());
        true
    }

    fn remove(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some((key, _)) = inner.conns.remove(&id)
        {
            decrement(&mut inner.per_address, key);
            self.stats.set_open(inner.conns.len());
        }
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
