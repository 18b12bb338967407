//! The TLS series, read at scrape time:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_tls_handshake_failures_total` | counter | `reason` (from the main listener's counters) |
//! | `vibectl_certificate_expiry_seconds` | gauge | — (seconds until the served certificate expires; negative: expired) |

use crate::tls::{CertResolver, HandshakeStats};
use arc_swap::ArcSwapOption;
use opentelemetry::{
    KeyValue,
    metrics::{Meter, ObservableCounter, ObservableGauge},
};
use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// What the scrape-time instruments read; filled in once TLS is set up
/// ([`super::Metrics::watch_certificate`], [`super::Metrics::watch_handshakes`]).
#[derive(Default)]
pub(super) struct Sources {
    pub(super) certificate: ArcSwapOption<CertResolver>,
    pub(super) handshakes: ArcSwapOption<HandshakeStats>,
}

/// Keeps the instruments registered.
#[allow(dead_code)]
pub(super) struct Observed(ObservableCounter<u64>, ObservableGauge<f64>);

/// Registers the series of the module doc on `meter`.
pub(super) fn register(meter: &Meter, tls: &Arc<Sources>) -> Observed {
    let handshakes = {
        let tls = tls.clone();
        meter
            .u64_observable_counter("vibectl_tls_handshake_failures")
            .with_description("Failed TLS handshakes on the main listener, by reason")
            .with_callback(move |observer| {
                if let Some(stats) = tls.handshakes.load().as_ref() {
                    for (reason, n) in stats.snapshot() {
                        observer.observe(n, &[KeyValue::new("reason", reason.as_str())]);
                    }
                }
            })
            .build()
    };
    let expiry = {
        let tls = tls.clone();
        meter
            .f64_observable_gauge("vibectl_certificate_expiry")
            .with_unit("s")
            .with_description("Seconds until the served certificate expires (negative: expired)")
            .with_callback(move |observer| {
                let served = tls.certificate.load().as_ref().and_then(|r| r.served());
                if let Some(served) = served {
                    observer.observe(seconds_until(served.not_after_unix), &[]);
                }
            })
            .build()
    };
    Observed(handshakes, expiry)
}

fn seconds_until(unix: i64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // Unix seconds fit an f64 exactly for the next hundred million years.
    #[allow(clippy::cast_precision_loss)]
    let at = unix as f64;
    at - now
}
