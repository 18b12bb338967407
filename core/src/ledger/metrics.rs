//! The ledger instruments:
//!
//! | Prometheus name | kind |
//! | --- | --- |
//! | `vibectl_ledger_rows_written_total` | counter |
//! | `vibectl_ledger_write_errors_total` | counter |
//! | `vibectl_ledger_rows_dropped_total` | counter |
//! | `vibectl_ledger_write_lag_seconds` | gauge: age of the oldest row of the last batch written |
//! | `vibectl_ledger_queue_rows` | gauge: rows waiting to be written |

use crate::metrics::Metrics;
use opentelemetry::metrics::{Counter, Gauge};
use std::sync::Arc;

/// The ledger instruments, or nothing when metrics are off.
#[derive(Debug, Clone, Default)]
pub struct LedgerMetrics {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    written: Counter<u64>,
    errors: Counter<u64>,
    dropped: Counter<u64>,
    lag: Gauge<f64>,
    queue: Gauge<u64>,
}

impl LedgerMetrics {
    /// Instruments in `metrics`' registry.
    pub fn new(metrics: &Metrics) -> Self {
        let inner = metrics.meter().map(|m| {
            Arc::new(Inner {
                written: m
                    .u64_counter("vibectl_ledger_rows_written")
                    .with_description("Usage ledger rows stored")
                    .build(),
                errors: m
                    .u64_counter("vibectl_ledger_write_errors")
                    .with_description("Usage ledger batches the database refused")
                    .build(),
                dropped: m
                    .u64_counter("vibectl_ledger_rows_dropped")
                    .with_description(
                        "Usage ledger rows lost (queue full, or unwritten at shutdown)",
                    )
                    .build(),
                lag: m
                    .f64_gauge("vibectl_ledger_write_lag")
                    .with_unit("s")
                    .with_description("Age of the oldest row of the last batch written")
                    .build(),
                queue: m
                    .u64_gauge("vibectl_ledger_queue_rows")
                    .with_description("Usage ledger rows waiting to be written")
                    .build(),
            })
        });
        Self { inner }
    }

    pub(crate) fn written(&self, rows: usize, lag_seconds: f64) {
        if let Some(i) = &self.inner {
            i.written.add(rows as u64, &[]);
            i.lag.record(lag_seconds, &[]);
        }
    }

    pub(crate) fn error(&self) {
        if let Some(i) = &self.inner {
            i.errors.add(1, &[]);
        }
    }

    pub(crate) fn dropped(&self, rows: usize) {
        if let Some(i) = &self.inner {
            i.dropped.add(rows as u64, &[]);
        }
    }

    pub(crate) fn queue(&self, rows: usize) {
        if let Some(i) = &self.inner {
            i.queue.record(rows as u64, &[]);
        }
    }
}
