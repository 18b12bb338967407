//! Where the quota counters live: a trait with one implementation per
//! backend (this process's memory, or Redis shared by every replica). Each
//! step is atomic in the backend: a reservation checks every budget of the
//! call and reserves in all of them, or in none.

use std::{fmt, sync::Arc, time::Duration};

/// One budget of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The counter (without the backend's prefix; shared with the
    /// budget it comes from, no copy per call).
    pub key: Arc<str>,
    /// Its limit.
    pub limit: u64,
    /// What the call reserves.
    pub amount: u64,
    /// `false`: shadow mode, reserve even if over the limit.
    pub enforce: bool,
}

/// One budget of a settlement: the reservation is replaced by the actual use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The counter.
    pub key: Arc<str>,
    /// The lease the call took its reservation from (`None`: its own
    /// reservation, under the settlement's id).
    pub lease: Option<Arc<str>>,
    /// What was reserved.
    pub reserved: u64,
    /// What the call actually used.
    pub actual: u64,
    /// When the counter may be forgotten (unix seconds: its window's end
    /// plus a margin, so `quota status` can still show yesterday).
    pub expire_at: i64,
}

/// A counter's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Settled use in the window.
    pub used: u64,
    /// Open reservations.
    pub reserved: u64,
}

/// What a reservation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOutcome {
    /// The backend's clock (Redis `TIME`), unix milliseconds.
    pub now_ms: i64,
    /// Each line's counts before this call.
    pub counts: Vec<Counts>,
    /// The first enforced line that did not fit (nothing was reserved).
    pub refused: Option<usize>,
    /// The lease asked for was carved, and the call's reservation is a
    /// part of it (see [`LeaseRequest`]).
    pub leased: bool,
}

/// What a reservation also asks of a backend that leases (Redis): give
/// this replica's old leases back, and carve a new one.
#[derive(Debug, Clone, Default)]
pub struct LeaseRequest {
    /// How long the call's own reservation counts if never settled.
    pub ttl: Duration,
    /// The new lease's id (`None`: carve none).
    pub id: Option<Arc<str>>,
    /// Its size per line: `(calls + 1) ×` the line's amount (the call's
    /// own reservation is its first part).
    pub calls: u64,
    /// How long it counts in the backend if never given back.
    pub hold: Duration,
    /// Per line: an old lease and its unused part, given back first.
    pub give_back: Vec<Option<(Arc<str>, u64)>>,
}

/// The backend could not answer.
#[derive(Debug, thiserror::Error)]
#[error("quota backend {backend} failed: {reason}")]
pub struct BackendError {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// What went wrong (never a URL or password).
    pub reason: String,
}

/// The answer of a reservation step.
pub type Reserved = Result<ReserveOutcome, BackendError>;

/// A place for the quota counters.
#[async_trait::async_trait]
pub trait QuotaBackend: Send + Sync + fmt::Debug {
    /// Reserves `lines` under `id` for at most `ttl`, atomically: all or none.
    async fn reserve(&self, id: &str, lines: &[Line], ttl: Duration) -> Reserved;
    /// [`QuotaBackend::reserve`] that also gives leases back and carves
    /// one, in the same atomic step (backends that lease).
    async fn reserve_leasing(&self, id: &str, lines: &[Line], req: &LeaseRequest) -> Reserved {
        self.reserve(id, lines, req.ttl).await
    }
    /// True when the counters are shared and worth leasing (Redis).
    fn leases(&self) -> bool {
        false
    }
    /// Replaces reservation `id` by the actual use, atomically.
    async fn settle(&self, id: &str, lines: &[Settle]) -> Result<(), BackendError>;
    /// The counts of `keys` (expired reservations dropped).
    async fn counts(&self, keys: &[String]) -> Result<Vec<Counts>, BackendError>;
}
