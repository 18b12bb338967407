//! Per-token limits: requests per minute (GCRA), calls in flight per token
//! and across all tokens, and the call deadline. The limit *state* lives in
//! this process ([`MemoryBackend`], the default) or in Redis
//! ([`RedisBackend`], shared by every edge replica); the limit *values* are
//! one immutable [`LimitsConfig`] snapshot that hot reload swaps atomically
//! ([`Limiter::replace`]). [`Limiter::admit`] only decides; the HTTP layer
//! ([`crate::http::limits`]) turns a refusal into `RESOURCE_EXHAUSTED` with
//! `limit-type` and `retry-after-ms`, stamps the admitted call's limits on
//! the request for the core, and holds the [`Permit`] until the response
//! stream ends.
//!
//! [`LimitsConfig`]: vibectl_config::LimitsConfig

pub(crate) mod alarms;
pub(crate) mod deadline;
pub(crate) mod diff;
mod limiter;
mod memory;
mod redis_backend;

pub use limiter::{Admit, CallKind, Limiter, Permit, Refusal, retry_ms};
pub use memory::MemoryBackend;
pub use redis_backend::RedisBackend;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

/// A requests-per-minute budget: a GCRA with `burst` calls of tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    /// Sustained rate.
    pub per_minute: NonZeroU32,
    /// Calls that may arrive at once.
    pub burst: NonZeroU32,
}

impl RateQuota {
    /// Time between two calls at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }
}

/// The answer to "may this call start?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Not now.
    Denied {
        /// How long until a call can pass (GCRA's own wait).
        retry_after: Duration,
    },
}

/// A limit store that could not answer (Redis down, script error). The
/// message never holds the Redis URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit backend unavailable: {0}")]
pub struct BackendError(pub String);

impl From<crate::shared_redis::RedisError> for BackendError {
    fn from(error: crate::shared_redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

/// A held concurrency slot; dropping it frees the slot. One variant per
/// backend, held inline (a boxed guard cost two allocations per call).
#[allow(dead_code, reason = "held only for their Drop")]
pub enum SlotGuard {
    /// A slot of this process's state.
    Memory(memory::MemorySlot),
    /// A lease in Redis.
    Redis(Box<redis_backend::Lease>),
}

impl std::fmt::Debug for SlotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotGuard")
    }
}

/// The answer to "may this call hold a slot?".
#[derive(Debug)]
pub enum SlotOutcome {
    /// Holding a slot until the guard drops.
    Acquired(SlotGuard),
    /// All slots taken.
    Full {
        /// How long the oldest holder has held its slot (for the estimate
        /// of when one frees).
        oldest_age: Duration,
    },
}

/// Where limit state lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// This process only.
    Memory(MemoryBackend),
    /// Shared through Redis.
    Redis(RedisBackend),
}

impl Backend {
    /// The `backend` metric label: `memory` or `redis`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Counts one call against `key`'s rate quota.
    pub async fn check_rate(
        &self,
        key: &Arc<str>,
        quota: RateQuota,
    ) -> Result<Admission, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.check_rate(key, quota)),
            Self::Redis(r) => r.check_rate(key, quota).await,
        }
    }

    /// Takes one of `max` concurrency slots of `key`.
    pub async fn acquire_slot(
        &self,
        key: &Arc<str>,
        max: NonZeroU32,
    ) -> Result<SlotOutcome, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.acquire_slot(key, max)),
            Self::Redis(r) => r.acquire_slot(key, max).await,
        }
    }

    /// Drops in-process state that no longer matters (memory only: Redis
    /// keys expire by themselves).
    pub fn retain_recent(&self) {
        if let Self::Memory(m) = self {
            m.retain_recent();
        }
    }
}
