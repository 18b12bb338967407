//! [`Limiter`]: the limits in force (one immutable snapshot, swapped whole
//! by hot reload) over a [`Backend`], deciding per call. Order of checks:
//! the token's concurrency slot, then the all-token slot, then the rate —
//! slots first because taking one can be undone (a refused call gives its
//! slot back) while a GCRA decision cannot (a call refused for concurrency
//! must not also spend its rate budget).

use super::{
    Admission, Backend, BackendError, MemoryBackend, RateQuota, RedisBackend, SlotGuard,
    SlotOutcome,
};
use crate::{
    metrics::Metrics,
    reload::ReloadStatus,
    shared_redis::{RedisError, SharedRedis},
};
use arc_swap::ArcSwap;
use std::{
    collections::HashMap,
    future::Future,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};
use vibectl_config::{BackendFailure, LimitSet, LimitsBackend, LimitsConfig};
use vibectl_proto::wire::Method;

/// Assumed length of a call before any call of a key has finished.
const DEFAULT_CALL_ESTIMATE: Duration = Duration::from_secs(1);
/// The shortest `retry-after` given for a full set of slots.
const MIN_SLOT_RETRY: Duration = Duration::from_millis(50);
/// At most one log line per this interval about a failing backend.
const BACKEND_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Bound on the keys whose call durations are remembered.
const MAX_REMEMBERED_KEYS: usize = 10_000;
/// The key of the all-token concurrency slots (token keys start `sub:`).
const TOTAL_KEY: &str = "total";
/// The start of a token's key.
const SUB_KEY_PREFIX: &str = "sub:";

/// What a request is, for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `Execute`, `StreamExecute`: counts against the rate and holds a
    /// concurrency slot until its response ends.
    Call,
    /// Anything else (`GetServerInfo`, health, reflection): counts against
    /// the rate (it is a request) but takes no slot — it holds no provider
    /// call and ends at once, and a client at its concurrency limit can
    /// still ask the server what its limits are.
    Info,
}

impl CallKind {
    /// The kind of the gRPC method at `path`.
    pub fn of_path(path: &str) -> Self {
        match Method::from_path(path) {
            Some(method) if method.is_call() => Self::Call,
            _ => Self::Info,
        }
    }
}

/// Which limit refused or ended a call (the `limit-type` metadata).
pub use vibectl_proto::wire::LimitType;

/// Why a call may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A limit is hit: `RESOURCE_EXHAUSTED`.
    Limited {
        /// Which.
        limit: LimitType,
        /// The real time until a call can pass (rpm), or the estimate of
        /// when a slot frees (concurrency).
        retry_after: Duration,
        /// For a person: which limit, whose, and when to retry.
        message: String,
    },
    /// The backend cannot answer and `on_backend_failure = "fail_closed"`:
    /// `UNAVAILABLE`.
    BackendUnavailable,
}

/// The decision on one call.
#[derive(Debug)]
pub enum Admit {
    /// Go ahead; hold the permit until the response ends.
    Allowed(Permit),
    /// Refused.
    Refused(Refusal),
}

/// An admitted call: its limits, and its concurrency slots (freed, and the
/// call's duration remembered for `retry-after` estimates, on drop).
#[derive(Debug)]
pub struct Permit {
    /// The caller's limits in force.
    pub limits: LimitSet,
    /// The token's slot and the all-token slot, each if limited.
    held: [Option<(Arc<str>, SlotGuard)>; 2],
    durations: Arc<Durations>,
    started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        for (key, _) in self.held.iter().flatten() {
            self.durations.record(key, took);
        }
    }
}

/// Typical call duration per slot key (exponentially weighted).
#[derive(Debug, Default)]
struct Durations(Mutex<HashMap<Arc<str>, Duration, foldhash::fast::RandomState>>);

impl Durations {
    fn record(&self, key: &Arc<str>, took: Duration) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_REMEMBERED_KEYS && !map.contains_key(&**key) {
            map.clear();
        }
        // Recent calls count most. The key is shared, never copied.
        match map.get_mut(&**key) {
            Some(typical) => *typical = (*typical * 3 + took) / 4,
            None => {
                map.insert(key.clone(), took);
            }
        }
    }

    /// When a slot of `key` should free, given its oldest holder's age.
    fn estimate(&self, key: &str, oldest_age: Duration) -> Duration {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let typical = map.get(key).copied().unwrap_or(DEFAULT_CALL_ESTIMATE);
        typical.saturating_sub(oldest_age).max(MIN_SLOT_RETRY)
    }
}

/// The limits in force and their state; one per edge.
#[derive(Debug)]
pub struct Limiter {
    snapshot: ArcSwap<LimitsConfig>,
    backend: Backend,
    durations: Arc<Durations>,
    /// [`TOTAL_KEY`], shared by every call's permit.
    total_key: Arc<str>,
    /// The last token's key ([`Limiter::key_of`]).
    last_key: Mutex<Option<Arc<str>>>,
    metrics: Metrics,
    failure_log: Mutex<(Option<Instant>, u64)>,
    reloads: tokio::sync::watch::Sender<ReloadStatus>,
}

impl Limiter {
    /// Limits from `config` over its backend: memory, or the edge's shared
    /// `redis` (connected lazily, at the first call; `None` with
    /// `backend = "redis"` is an error).
    pub fn new(
        config: &LimitsConfig,
        redis: Option<SharedRedis>,
        metrics: Metrics,
    ) -> Result<Self, BackendError> {
        let backend = match (config.backend, redis) {
            (LimitsBackend::Memory, _) => Backend::Memory(MemoryBackend::new()),
            (LimitsBackend::Redis, Some(redis)) => Backend::Redis(RedisBackend::new(redis)),
            (LimitsBackend::Redis, None) => return Err(RedisError::NoUrl.into()),
        };
        Ok(Self::with_backend(config, backend, metrics))
    }

    /// Limits from `config` over `backend` (tests pass their own).
    pub fn with_backend(config: &LimitsConfig, backend: Backend, metrics: Metrics) -> Self {
        // Shown from the start (as 0), so an alert can watch it.
        metrics.backend_errors_start(backend.name());
        Self {
            snapshot: ArcSwap::from_pointee(config.clone()),
            backend,
            durations: Arc::default(),
            total_key: TOTAL_KEY.into(),
            last_key: Mutex::new(None),
            metrics,
            failure_log: Mutex::new((None, 0)),
            reloads: tokio::sync::watch::Sender::new(ReloadStatus::default()),
        }
    }

    /// The limits in force now.
    pub fn snapshot(&self) -> Arc<LimitsConfig> {
        self.snapshot.load_full()
    }

    /// Puts `next` in force for every call from now on (calls in flight keep
    /// the permits they hold); returns the previous limits.
    pub fn replace(&self, next: LimitsConfig) -> Arc<LimitsConfig> {
        self.snapshot.swap(Arc::new(next))
    }

    /// Records a reload: applied (`Ok`) or refused (why: the config error,
    /// which names the key and the file).
    pub fn note_reload(&self, outcome: Result<(), &vibectl_config::ConfigError>) {
        self.reloads.send_modify(|status| match outcome {
            Ok(()) => status.applied += 1,
            Err(why) => {
                status.refused += 1;
                status.last_error = Some(why.to_string());
            }
        });
    }

    /// What hot reload did so far; changes as reloads happen.
    pub fn reload_status(&self) -> tokio::sync::watch::Receiver<ReloadStatus> {
        self.reloads.subscribe()
    }

    /// Where the state lives.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The key of `sub`'s state (`sub:<sub>`), shared by the call's slots,
    /// rate state and durations: the last one made is kept, as nearly
    /// every call is of the same token as the call before.
    fn key_of(&self, sub: &str) -> Arc<str> {
        let mut last = self.last_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = &*last
            && key.strip_prefix(SUB_KEY_PREFIX) == Some(sub)
        {
            return key.clone();
        }
        let mut key = String::with_capacity(SUB_KEY_PREFIX.len() + sub.len());
        key.push_str(SUB_KEY_PREFIX);
        key.push_str(sub);
        let key: Arc<str> = key.into();
        *last = Some(key.clone());
        key
    }

    /// Decides on a call of `sub` (its `kid`, if the token has one, selects
    /// an override too).
    pub async fn admit(&self, sub: &str, kid: Option<&str>, kind: CallKind) -> Admit {
        let snapshot = self.snapshot();
        let limits = snapshot.for_token(sub, kid);
        let policy = snapshot.on_backend_failure;
        let key = self.key_of(sub);
        let mut held = [None, None];
        let mut failed = false;

        if kind == CallKind::Call {
            let slots = [
                (&key, limits.max_concurrent_requests, false),
                (&self.total_key, snapshot.max_concurrent_total, true),
            ];
            for (place, (slot_key, max, total)) in held.iter_mut().zip(slots) {
                let Some(max) = max else { continue };
                match self.backend.acquire_slot(slot_key, max).await {
                    Ok(SlotOutcome::Acquired(guard)) => *place = Some((slot_key.clone(), guard)),
                    Ok(SlotOutcome::Full { oldest_age }) => {
                        let retry_after = self.durations.estimate(slot_key, oldest_age);
                        return Admit::Refused(concurrency_refusal(sub, max, total, retry_after));
                    }
                    Err(error) => {
                        if let Some(refusal) = self.backend_failed(&error, policy, &mut failed) {
                            return Admit::Refused(refusal);
                        }
                    }
                }
            }
        }

        if let (Some(per_minute), Some(burst)) =
            (limits.max_requests_per_minute, limits.effective_burst())
        {
            let quota = RateQuota { per_minute, burst };
            match self.backend.check_rate(&key, quota).await {
                Ok(Admission::Allowed) => {}
                Ok(Admission::Denied { retry_after }) => {
                    let retry_after = retry_after.max(Duration::from_millis(1));
                    return Admit::Refused(Refusal::Limited {
                        limit: LimitType::Rpm,
                        retry_after,
                        message: format!(
                            "rate limit: {per_minute} requests per minute for token `{sub}`; retry in {} ms",
                            retry_ms(retry_after)
                        ),
                    });
                }
                Err(error) => {
                    if let Some(refusal) = self.backend_failed(&error, policy, &mut failed) {
                        return Admit::Refused(refusal);
                    }
                }
            }
        }

        Admit::Allowed(Permit {
            limits,
            held,
            durations: self.durations.clone(),
            started: Instant::now(),
        })
    }

    /// [`Limiter::admit`] when the decision needs no wait: the in-process
    /// backend answers at once, so the caller needs no future (nor box)
    /// for it. `None` with a shared backend (Redis), which answers over
    /// the network: use [`Limiter::admit`].
    pub fn admit_now(&self, sub: &str, kid: Option<&str>, kind: CallKind) -> Option<Admit> {
        if !matches!(self.backend, Backend::Memory(_)) {
            return None;
        }
        let admit = std::pin::pin!(self.admit(sub, kid, kind));
        match admit.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(admit) => Some(admit),
            Poll::Pending => {
                // In-process state never waits; were it to, refusing is
                // safe (dropping the decision frees what it took).
                debug_assert!(false, "the memory backend waited");
                Some(Admit::Refused(Refusal::BackendUnavailable))
            }
        }
    }

    /// Counts (once per call) and logs (at most every
    /// [`BACKEND_LOG_INTERVAL`]) a backend failure; the refusal when the
    /// policy is to fail closed.
    fn backend_failed(
        &self,
        error: &BackendError,
        policy: BackendFailure,
        counted: &mut bool,
    ) -> Option<Refusal> {
        if !*counted {
            *counted = true;
            self.metrics.backend_error(self.backend.name());
        }
        let outcome = match policy {
            BackendFailure::FailOpen => "failing open: calls pass unlimited",
            BackendFailure::FailClosed => "failing closed: calls are refused with UNAVAILABLE",
        };
        let mut log = self
            .failure_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = log
            .0
            .is_none_or(|last| last.elapsed() >= BACKEND_LOG_INTERVAL);
        if due {
            let suppressed = log.1;
            *log = (Some(Instant::now()), 0);
            drop(log);
            tracing::warn!(
                backend = self.backend.name(),
                %error,
                suppressed,
                "rate-limit backend unavailable; {outcome} (limits.on_backend_failure)"
            );
        } else {
            log.1 += 1;
        }
        match policy {
            BackendFailure::FailOpen => None,
            BackendFailure::FailClosed => Some(Refusal::BackendUnavailable),
        }
    }
}

fn concurrency_refusal(sub: &str, max: NonZeroU32, total: bool, retry_after: Duration) -> Refusal {
    let whose = if total {
        "across all tokens (limits.max_concurrent_total)".to_owned()
    } else {
        format!("for token `{sub}`")
    };
    Refusal::Limited {
        limit: LimitType::Concurrency,
        retry_after,
        message: format!(
            "concurrency limit: {max} calls in flight at once {whose}; retry in about {} ms",
            retry_ms(retry_after)
        ),
    }
}

/// Milliseconds, rounded up, at least 1 (the `retry-after-ms` value).
pub fn retry_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
