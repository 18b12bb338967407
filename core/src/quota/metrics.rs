//! The quota instruments:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_quota_used` | gauge | `owner` (capped `sub` or `model:<id>`), `budget` |
//! | `vibectl_quota_limit` | gauge | `owner`, `budget` |
//! | `vibectl_quota_reservations_open` | gauge | |
//! | `vibectl_quota_refusals_total` | counter | `limit_type` (`token`/`cost`), `mode` (`enforced`/`shadow`) |
//! | `vibectl_quota_backend_errors_total` | counter | |

use super::policy::{Budget, Unit};
use crate::metrics::Metrics;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Gauge, UpDownCounter},
};
use std::sync::Arc;

/// The quota instruments, or nothing when metrics are off.
#[derive(Debug, Clone, Default)]
pub struct QuotaMetrics {
    inner: Option<Arc<Inner>>,
    metrics: Metrics,
}

#[derive(Debug)]
struct Inner {
    used: Gauge<u64>,
    limit: Gauge<u64>,
    open: UpDownCounter<i64>,
    refusals: Counter<u64>,
    errors: Counter<u64>,
}

impl QuotaMetrics {
    /// Instruments in a registry of their own, as a core with metrics on
    /// has them (for measuring what they cost: `quota_bench`).
    #[cfg(feature = "test-support")]
    pub fn standalone(models: &[&str], max_subjects: usize) -> Result<Self, crate::CoreError> {
        Ok(Self::new(&Metrics::new(
            models.iter().copied(),
            max_subjects,
        )?))
    }

    /// Instruments in `metrics`' registry.
    pub fn new(metrics: &Metrics) -> Self {
        let inner = metrics.meter().map(|m| {
            Arc::new(Inner {
                used: m
                    .u64_gauge("vibectl_quota_used")
                    .with_description("Settled use of a quota budget in its window (tokens, or nano-USD for cost budgets)")
                    .build(),
                limit: m
                    .u64_gauge("vibectl_quota_limit")
                    .with_description("Limit of a quota budget (tokens, or nano-USD for cost budgets)")
                    .build(),
                open: m
                    .i64_up_down_counter("vibectl_quota_reservations_open")
                    .with_description("Quota reservations of calls in flight in this core")
                    .build(),
                refusals: m
                    .u64_counter("vibectl_quota_refusals")
                    .with_description("Calls refused (or, in shadow mode, that would have been) by a quota")
                    .build(),
                errors: m
                    .u64_counter("vibectl_quota_backend_errors")
                    .with_description("Quota backend steps that failed")
                    .build(),
            })
        });
        Self {
            inner,
            metrics: metrics.clone(),
        }
    }

    pub(crate) fn observe(&self, sub: &str, budget: &Budget, used: u64) {
        let Some(i) = &self.inner else { return };
        let owner = if budget.key.starts_with("model:") {
            budget.key.split(':').take(2).collect::<Vec<_>>().join(":")
        } else {
            self.metrics.subject(Some(sub))
        };
        let labels = [
            KeyValue::new("owner", owner),
            KeyValue::new("budget", budget.name),
        ];
        i.used.record(used, &labels);
        i.limit.record(budget.limit, &labels);
    }

    pub(crate) fn refused(&self, unit: Unit, enforced: bool) {
        let Some(i) = &self.inner else { return };
        i.refusals.add(
            1,
            &[
                KeyValue::new("limit_type", unit.limit_type().as_str()),
                KeyValue::new("mode", if enforced { "enforced" } else { "shadow" }),
            ],
        );
    }

    pub(crate) fn reservation_opened(&self) {
        if let Some(i) = &self.inner {
            i.open.add(1, &[]);
        }
    }

    pub(crate) fn reservation_closed(&self) {
        if let Some(i) = &self.inner {
            i.open.add(-1, &[]);
        }
    }

    pub(crate) fn backend_error(&self) {
        if let Some(i) = &self.inner {
            i.errors.add(1, &[]);
        }
    }
}
