//! Builds the core's quotas and ledger from the configuration: opens and
//! migrates the ledger, picks the quota backend (`[limits] backend`),
//! restores a memory backend's used amounts from the ledger, and watches
//! the config file for budget changes.

use super::{
    Caller, QuotaMetrics, Quotas, Reservation,
    backend::QuotaBackend,
    memory::MemoryBackend,
    policy::{Period, Policy, Unit, Window, counter_key},
    redis::RedisQuota,
    settle::CallUsage,
};
use crate::{
    error::CoreError,
    ledger::{Ledger, LedgerMetrics, LedgerStore, open_store},
    metrics::Metrics,
    registry::ModelEntry,
};
use jiff::Timestamp;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use vibectl_config::{BackendFailure, Config, LimitsBackend};

/// Longest the ledger may take to write its queue at shutdown.
const LEDGER_CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// The quotas and the ledger of one core.
#[derive(Debug)]
pub struct Usage {
    /// The quota engine.
    pub quotas: Arc<Quotas>,
    /// The ledger writer (`None` with `[ledger] enabled = false`).
    pub ledger: Option<Arc<Ledger>>,
    fail_closed: bool,
    stop: CancellationToken,
}

impl Usage {
    /// A call's settlement and ledger handle.
    pub(crate) fn call(&self, request_id: &str, ctx: &crate::call::CallContext) -> CallUsage {
        CallUsage {
            ledger: self.ledger.clone(),
            reservation: None,
            request_id: request_id.to_owned(),
            method: ctx.method,
            identity: super::Identity {
                sub: ctx.sub.clone().unwrap_or_else(|| "-".to_owned()),
                kid: ctx.kid.clone(),
                jti: ctx.jti.clone(),
            },
        }
    }

    /// Lets a call to `model` start: a reservation in its budgets, or the
    /// status refusing it (quota exhausted; or with `on_backend_failure =
    /// "fail_closed"`, a quota backend or ledger that cannot take it).
    pub(crate) async fn admit(
        &self,
        ctx: &crate::call::CallContext,
        model: &ModelEntry,
        input_estimate: u32,
    ) -> Result<Option<Reservation>, Status> {
        if self.fail_closed && self.ledger.as_ref().is_some_and(|l| l.is_failing()) {
            return Err(Status::unavailable(
                "the usage ledger cannot record calls right now; try again shortly",
            ));
        }
        let caller = Caller {
            sub: ctx.sub.as_deref().unwrap_or("-"),
            kid: ctx.kid.as_deref(),
        };
        self.quotas.reserve(caller, model, input_estimate).await
    }

    /// Stops watching the config, gives this replica's quota leases back
    /// and writes the ledger's queue.
    pub async fn close(&self) {
        self.stop.cancel();
        self.quotas.give_back_leases(true).await;
        if let Some(ledger) = &self.ledger {
            ledger.close(LEDGER_CLOSE_TIMEOUT).await;
        }
    }
}

/// Opens everything; an unusable ledger database fails the start.
pub async fn start(config: &Config, metrics: &Metrics) -> Result<Usage, CoreError> {
    let store = match config.ledger.enabled {
        false => None,
        true => match open_store(config).await {
            Ok(store) => Some(store),
            Err(e) if config.ledger.is_explicit() => return Err(e.into()),
            // The default SQLite file (e.g. a read-only state dir): serve
            // without a ledger rather than not at all, and say so.
            Err(e) => {
                tracing::error!(error = %e, "usage ledger disabled: set [ledger] sqlite_path or url to a writable place");
                None
            }
        },
    };
    let backend: Arc<dyn QuotaBackend> = match config.limits.backend {
        LimitsBackend::Memory => {
            let memory = MemoryBackend::default();
            if let Some(store) = &store {
                restore(&memory, store.as_ref(), &Policy::from_config(config)).await?;
            }
            Arc::new(memory)
        }
        LimitsBackend::Redis => {
            let url = config
                .limits
                .redis_url
                .as_ref()
                .map(|u| u.expose().to_owned())
                .unwrap_or_default();
            Arc::new(
                RedisQuota::new(&url, config.limits.key_prefix())
                    .map_err(|e| CoreError::Quota(e.to_string()))?,
            )
        }
    };
    let quotas = Arc::new(Quotas::new(config, backend, QuotaMetrics::new(metrics)));
    let ledger = store.map(|s| Ledger::start(s, &config.ledger, LedgerMetrics::new(metrics)));
    let stop = CancellationToken::new();
    if let Some(path) = config.source.clone() {
        tokio::spawn(super::reload::watch(path, quotas.clone(), stop.clone()));
    }
    if quotas.backend.leases() {
        tokio::spawn(give_back_leases(Arc::downgrade(&quotas), stop.clone()));
    }
    Ok(Usage {
        quotas,
        ledger,
        fail_closed: config.limits.on_backend_failure == BackendFailure::FailClosed,
        stop,
    })
}

/// Adds the ledger's totals of this day and month to the memory counters.
pub(crate) async fn restore(
    memory: &MemoryBackend,
    store: &dyn LedgerStore,
    policy: &Policy,
) -> Result<(), crate::ledger::LedgerError> {
    let now = Timestamp::now();
    let mut restored = 0usize;
    for period in [Period::Day, Period::Month] {
        let window = Window::of(period, now, &policy.tz);
        let expire_at = window.resets.as_second() + super::KEEP_AFTER_WINDOW_SECS;
        let totals = store.totals(window.starts.as_millisecond()).await?;
        for t in &totals {
            for scope in [format!("sub:{}", t.sub), format!("model:{}", t.model)] {
                for (unit, amount) in [(Unit::Tokens, t.tokens), (Unit::Cost, t.cost_nanousd)] {
                    let key = counter_key(&scope, unit, period, &window.label);
                    memory.add_used(&key, amount, expire_at);
                }
            }
        }
        restored = restored.max(totals.len());
    }
    tracing::info!(
        store = store.name(),
        groups = restored,
        "quota counters restored from the usage ledger"
    );
    Ok(())
}

/// Gives leases back once they stop serving calls (a budget with no more
/// calls here would hold its lease until it expires in Redis).
async fn give_back_leases(quotas: std::sync::Weak<Quotas>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(super::lease::LEASE_WINDOW / 2) => {}
        }
        let Some(quotas) = quotas.upgrade() else {
            return;
        };
        quotas.give_back_leases(false).await;
    }
}
