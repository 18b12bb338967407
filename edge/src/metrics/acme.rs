//! The ACME series, read at scrape time from the ACME status
//! ([`crate::tls::acme::AcmeStatus`]); absent outside ACME mode:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_acme_orders_started_total` | counter | — |
//! | `vibectl_acme_orders_completed_total` | counter | — (orders that issued a certificate) |
//! | `vibectl_acme_orders_failed_total` | counter | `reason` (bad_nonce, rate_limited, validation, refused, network, timeout, cache, local, dns) |
//! | `vibectl_acme_renewals_total` | counter | — |
//! | `vibectl_acme_issuance_seconds` | gauge | — (the last successful order, new-order to download) |
//! | `vibectl_acme_ari_window_start_seconds` | gauge | — (Unix time; the CA's ARI window for the served certificate) |
//! | `vibectl_acme_rate_limited_until_seconds` | gauge | — (Unix time; 0 unless the CA said `rateLimited`) |
//! | `vibectl_acme_lock_held` | gauge | — (1 while this replica holds the ordering lock; Redis storage) |
//! | `vibectl_acme_takeovers_total` | counter | — (orders resumed after the lock holder's lease expired) |
//! | `vibectl_acme_storage_errors_total` | counter | — (failed reads/writes of the ACME storage) |

use crate::tls::acme::AcmeStatus;
use arc_swap::ArcSwapOption;
use opentelemetry::{
    KeyValue,
    metrics::{Meter, ObservableCounter, ObservableGauge},
};
use std::sync::Arc;
use tokio::sync::watch;

/// The status read; set by [`super::Metrics::watch_acme`].
pub(super) type Source = ArcSwapOption<watch::Receiver<AcmeStatus>>;

/// Keeps the instruments registered.
#[allow(dead_code)]
pub(super) struct Observed(Vec<ObservableCounter<u64>>, Vec<ObservableGauge<f64>>);

/// Registers the series of the module doc on `meter`.
pub(super) fn register(meter: &Meter, source: &Arc<Source>) -> Observed {
    let counter = |name: &'static str, what: &'static str, read: fn(&AcmeStatus) -> u64| {
        let source = source.clone();
        meter
            .u64_observable_counter(name)
            .with_description(what)
            .with_callback(move |o| {
                if let Some(status) = source.load().as_ref() {
                    o.observe(read(&status.borrow()), &[]);
                }
            })
            .build()
    };
    let gauge = |name: &'static str, what: &'static str, read: fn(&AcmeStatus) -> Option<f64>| {
        let source = source.clone();
        meter
            .f64_observable_gauge(name)
            .with_description(what)
            .with_callback(move |o| {
                if let Some(value) = source.load().as_ref().and_then(|s| read(&s.borrow())) {
                    o.observe(value, &[]);
                }
            })
            .build()
    };
    let failed = {
        let source = source.clone();
        meter
            .u64_observable_counter("vibectl_acme_orders_failed")
            .with_description("ACME orders that failed, by reason")
            .with_callback(move |o| {
                if let Some(status) = source.load().as_ref() {
                    for (reason, n) in &status.borrow().failures_by_reason {
                        o.observe(*n, &[KeyValue::new("reason", *reason)]);
                    }
                }
            })
            .build()
    };
    Observed(
        vec![
            counter("vibectl_acme_orders_started", "ACME orders started", |s| {
                s.orders_started
            }),
            counter(
                "vibectl_acme_orders_completed",
                "ACME orders that issued a certificate",
                |s| s.orders - s.failed_orders,
            ),
            failed,
            counter(
                "vibectl_acme_renewals",
                "ACME certificates issued to replace a served one",
                |s| s.renewals,
            ),
            counter(
                "vibectl_acme_takeovers",
                "ACME orders resumed after the lock holder's lease expired",
                |s| s.takeovers,
            ),
            counter(
                "vibectl_acme_storage_errors",
                "Failed reads and writes of the ACME storage",
                |s| s.storage_errors,
            ),
        ],
        vec![
            gauge(
                "vibectl_acme_issuance_seconds",
                "Duration of the last successful ACME order, new-order to download",
                |s| s.issue_millis.map(|ms| ms as f64 / 1000.0),
            ),
            gauge(
                "vibectl_acme_ari_window_start_seconds",
                "Start of the CA's ARI renewal window for the served certificate (Unix time)",
                |s| s.ari_window_start.map(|t| t as f64),
            ),
            gauge(
                "vibectl_acme_rate_limited_until_seconds",
                "No ACME order before this Unix time (the CA said rateLimited); 0 when not limited",
                |s| Some(s.rate_limited_until.unwrap_or(0) as f64),
            ),
            gauge(
                "vibectl_acme_lock_held",
                "1 while this replica holds the ACME ordering lock",
                |s| Some(f64::from(u8::from(s.lock_held))),
            ),
        ],
    )
}
