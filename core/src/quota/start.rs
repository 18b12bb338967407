//! Builds the core's quotas and ledger from the configuration: opens and
//! migrates the ledger, picks the quota backend (`[limits] backend`),
//! restores a memory backend's used amounts from the ledger (at start and
//! after each reload), and watches the config file for budget changes.

use super::{
    Caller, QuotaMetrics, Quotas, Reservation,
    backend::QuotaBackend,
    memory::MemoryBackend,
    policy::Policy,
    redis::RedisQuota,
    restore::{Restorer, restore},
    settle::CallUsage,
};
use crate::{
    error::CoreError,
    ledger::{Ledger, LedgerMetrics, open_store},
    metrics::Metrics,
    registry::ModelEntry,
};
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
    let mut restorer = None;
    let backend: Arc<dyn QuotaBackend> = match config.limits.backend {
        LimitsBackend::Memory => {
            let memory = Arc::new(MemoryBackend::default());
            if let Some(store) = &store {
                restore(&memory, store.as_ref(), &Policy::from_config(config)).await?;
                restorer = Some(Restorer {
                    memory: memory.clone(),
                    store: store.clone(),
                });
            }
            memory
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
        tokio::spawn(super::reload::watch(
            path,
            quotas.clone(),
            restorer,
            stop.clone(),
        ));
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
