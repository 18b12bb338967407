//! [`ConnState`]: one connection as the table and its own task see it:
//! whether it is idle and since when (its eviction order at a cap), its
//! premature-reset count, and its close signal.

use crate::conn::{CloseReason, ConnTable};
use std::{
    sync::{
        Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One connection as the table and its own task see it.
#[derive(Debug)]
pub struct ConnState {
    pub(crate) id: u64,
    epoch: Instant,
    /// The table, told when the connection becomes idle (its eviction order).
    table: Weak<ConnTable>,
    streams: AtomicU32,
    /// Milliseconds since `epoch` of the last stream start or end (or of
    /// the accept, before any).
    last_active_ms: AtomicU64,
    /// When the connection became ready for requests (TLS: handshake done).
    ready_ms: AtomicU64,
    used: AtomicBool,
    /// Set by [`ConnState::mark_ready`]: set-up (TLS, PROXY header) done.
    pub(crate) ready: AtomicBool,
    /// Bumped each time the connection is queued as idle (see
    /// [`super::idle`]): only the entry with the current number is valid.
    pub(crate) idle_gen: AtomicU64,
    close: CancellationToken,
    reason: OnceLock<CloseReason>,
    /// Premature-reset accounting: (streams ended, of which premature).
    resets: Mutex<(u32, u32)>,
}

impl ConnState {
    /// A connection accepted now (idle, in set-up), numbered `id`.
    pub(crate) fn new(id: u64, epoch: Instant, table: Weak<ConnTable>) -> Self {
        let state = Self {
            id,
            epoch,
            table,
            streams: AtomicU32::new(0),
            last_active_ms: AtomicU64::new(0),
            ready_ms: AtomicU64::new(0),
            used: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            idle_gen: AtomicU64::new(0),
            close: CancellationToken::new(),
            reason: OnceLock::new(),
            resets: Mutex::new((0, 0)),
        };
        state.start_timers();
        state
    }

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
        self.start_timers();
        match self.table.upgrade() {
            Some(table) => table.ready(self),
            None => self.ready.store(true, Ordering::Release),
        }
    }

    fn start_timers(&self) {
        let now = self.ms(Instant::now());
        self.ready_ms.store(now, Ordering::Release);
        self.last_active_ms.store(now, Ordering::Release);
    }

    /// A stream started `now` (the caller's clock reading, shared).
    pub(crate) fn stream_opened(&self, now: Instant) {
        self.used.store(true, Ordering::Release);
        self.streams.fetch_add(1, Ordering::AcqRel);
        self.touch(now);
    }

    /// A stream ended `now`; `premature`: reset by the client right after
    /// opening. Returns true when the connection's recent streams trip the
    /// guard.
    pub(crate) fn stream_closed(&self, now: Instant, premature: bool, max_percent: u8) -> bool {
        let before = self.streams.fetch_sub(1, Ordering::AcqRel);
        self.touch(now);
        if before == 1
            && let Some(table) = self.table.upgrade()
        {
            table.idle_again(self);
        }
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

    fn touch(&self, now: Instant) {
        let now = self.ms(now);
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

    pub(crate) fn is_idle(&self) -> bool {
        self.streams() == 0 && !self.close.is_cancelled()
    }

    /// Which idle connections go first at a cap: silent ones that finished
    /// their set-up and never sent a request (what an attacker holds), then
    /// ones still in set-up (bounded by the handshake timeout anyway), then
    /// clients' idle keep-alive connections; within a class, the oldest.
    pub(crate) fn eviction_order(&self) -> (u8, u64) {
        let class = match (self.used(), self.ready.load(Ordering::Acquire)) {
            (false, true) => 0,
            (false, false) => 1,
            (true, _) => 2,
        };
        (class, self.last_active_ms.load(Ordering::Acquire))
    }
}
