//! Prometheus metrics of the edge (OpenTelemetry instruments exported to a
//! Prometheus registry of this [`Metrics`] alone, no scope labels), served
//! as `/metrics` on the admin listener when `[metrics] enabled = true` or
//! `serve --enable-metrics`:
//!
//! | Prometheus name | kind | labels | where it is counted |
//! | --- | --- | --- | --- |
//! | `vibectl_requests_total` | counter | `sub`, `method`, `code` | the request path's metrics layer (`http::metrics`), every request, refusals included |
//! | `vibectl_rate_limited_total` | counter | `sub`, `limit_type` | the request path's metrics layer (`http::metrics`), from the final status's `limit-type` (the edge's rpm/concurrency, the core's input_length/timeout) |
//! | `vibectl_concurrent_in_flight` | gauge | `sub` | the limits layer, while a call holds its permit |
//! | `vibectl_request_duration_seconds` | histogram | `method` | the request path's metrics layer (`http::metrics`), request start → end of the response stream |
//! | `vibectl_time_to_first_chunk_seconds` | histogram | `method` | the request path's metrics layer (`http::metrics`), request start → first response DATA frame |
//! | `vibectl_limits_backend_errors_total` | counter | `backend` | the limiter, once per call the backend failed |
//! | `vibectl_tls_handshake_failures_total`, `vibectl_certificate_expiry_seconds` | | | [`tls`]: read from the TLS listener's counters and the certificate resolver at scrape time |
//! | `vibectl_connections_*`, `vibectl_accept_errors_total`, … | | | [`connections`]: the connection limits and the failure budget |
//! | `vibectl_acme_*` | | | [`acme`]: orders, failures by reason, renewals, ARI (ACME mode) |
//!
//! Label values are bounded: `sub` takes at most `[metrics] max_subjects`
//! distinct values (later subjects are `other`; unauthenticated requests
//! `anonymous`), `method` is one of the three RPCs or `other`, `code` a
//! gRPC status name. Token counts and cost are the core's (its own
//! `/metrics` port). Every method is a no-op when metrics are off.

mod acme;
mod calls;
mod connections;
pub(crate) mod labels;
mod tls;

pub use labels::{Code, MethodLabel, SubjectLabel};

use crate::tls::{CertResolver, HandshakeStats};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, MeterProvider as _, ObservableUpDownCounter},
};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::{sync::Arc, time::Duration};
use vibectl_config::MetricsConfig;

/// Why the metrics cannot be set up or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus exporter could not be built.
    #[error("cannot set up the Prometheus exporter: {0}")]
    Exporter(#[source] opentelemetry_sdk::error::OTelSdkError),
    /// The registry could not be written as Prometheus text.
    #[error("cannot encode the metrics: {0}")]
    Encode(#[source] prometheus::Error),
    /// The per-call series could not be registered.
    #[error("cannot register the per-call metrics: {0}")]
    Register(#[source] prometheus::Error),
}

/// The edge's metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Instruments>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

struct Instruments {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    subjects: Arc<labels::Subjects>,
    calls: calls::Calls,
    rate_limited: Counter<u64>,
    backend_errors: Counter<u64>,
    tls: Arc<tls::Sources>,
    conns: Arc<connections::Sources>,
    acme: Arc<acme::Source>,
    _observed: (
        tls::Observed,
        ObservableUpDownCounter<i64>,
        connections::Observed,
        acme::Observed,
    ),
}

impl Drop for Instruments {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

impl Metrics {
    /// No metrics: every method does nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Metrics per `config` (disabled unless `config.enabled`).
    pub fn from_config(config: &MetricsConfig) -> Result<Self, MetricsError> {
        if config.enabled {
            Self::new(config.max_subjects)
        } else {
            Ok(Self::disabled())
        }
    }

    /// Metrics with their own Prometheus registry.
    pub fn new(max_subjects: usize) -> Result<Self, MetricsError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(MetricsError::Exporter)?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("vibectl-edge");
        let tls = Arc::new(tls::Sources::default());
        let tls_instruments = tls::register(&meter, &tls);
        let conns = Arc::new(connections::Sources::default());
        let conn_instruments = connections::register(&meter, &conns);
        let acme = Arc::new(acme::Source::default());
        let acme_instruments = acme::register(&meter, &acme);
        // Calls in flight: counted per subject in atomics and read at scrape
        // time (a measurement per call and per end cost two attribute-set
        // lookups). `anonymous` is exported from start (at 0), so alerts
        // and dashboards see it before the first call.
        let subjects = Arc::new(labels::Subjects::new(max_subjects));
        let in_flight = {
            let subjects = subjects.clone();
            meter
                .i64_observable_up_down_counter("vibectl_concurrent_in_flight")
                .with_description("Calls in flight (holding a limits permit), by subject")
                .with_callback(move |observer| {
                    subjects.in_flight(|label, n| {
                        observer.observe(n, &[KeyValue::new("sub", label.clone())]);
                    });
                })
                .build()
        };
        let instruments = Instruments {
            calls: calls::Calls::new(&registry)?,
            rate_limited: meter
                .u64_counter("vibectl_rate_limited")
                .with_description("Calls refused or ended by a limit, by subject and limit type")
                .build(),
            backend_errors: meter
                .u64_counter("vibectl_limits_backend_errors")
                .with_description("Calls for which the rate-limit backend could not answer")
                .build(),
            subjects,
            registry,
            provider,
            tls,
            conns,
            acme,
            _observed: (
                tls_instruments,
                in_flight,
                conn_instruments,
                acme_instruments,
            ),
        };
        Ok(Self {
            inner: Some(Arc::new(instruments)),
        })
    }

    /// True when metrics are collected.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The `sub` label of a subject (`anonymous` for none, `other` past
    /// `max_subjects`); `None` when metrics are off.
    pub fn subject(&self, sub: Option<&str>) -> Option<SubjectLabel> {
        Some(self.inner.as_ref()?.subjects.label(sub))
    }

    /// Reports `vibectl_certificate_expiry_seconds` from `resolver`.
    pub fn watch_certificate(&self, resolver: Arc<CertResolver>) {
        if let Some(inner) = &self.inner {
            inner.tls.certificate.store(Some(resolver));
        }
    }

    /// Reports the `vibectl_acme_*` series from the ACME status.
    pub fn watch_acme(&self, status: tokio::sync::watch::Receiver<crate::tls::acme::AcmeStatus>) {
        if let Some(inner) = &self.inner {
            inner.acme.store(Some(Arc::new(status)));
        }
    }

    /// Reports `vibectl_tls_handshake_failures_total` from `stats` (the
    /// main listener's counters).
    pub fn watch_handshakes(&self, stats: Arc<HandshakeStats>) {
        if let Some(inner) = &self.inner {
            inner.tls.handshakes.store(Some(stats));
        }
    }

    /// Reports the connection-limit series from `stats` and the failure
    /// budget's refusals from `budget`.
    pub fn watch_connections(
        &self,
        stats: Arc<crate::conn::ConnStats>,
        budget: Arc<crate::auth::budget::FailureBudget>,
    ) {
        if let Some(inner) = &self.inner {
            inner.conns.stats.store(Some(stats));
            inner.conns.budget.store(Some(budget));
        }
    }

    /// A finished request (`sub` is already a label).
    pub fn request(&self, sub: &SubjectLabel, method: MethodLabel, code: Code, took: Duration) {
        let Some(inner) = &self.inner else { return };
        inner.calls.request(sub, method, code, took);
    }

    /// A call refused or ended by the limit `limit_type`.
    pub fn rate_limited(&self, sub: &SubjectLabel, limit_type: &'static str) {
        let Some(inner) = &self.inner else { return };
        inner.rate_limited.add(
            1,
            &[
                KeyValue::new("sub", sub.value()),
                KeyValue::new("limit_type", limit_type),
            ],
        );
    }

    /// The first DATA frame of a response left, `elapsed` after the start.
    pub fn first_chunk(&self, method: MethodLabel, elapsed: Duration) {
        let Some(inner) = &self.inner else { return };
        inner.calls.first_chunk(method, elapsed);
    }

    /// The rate-limit backend (`memory`, `redis`) failed a call.
    pub fn backend_error(&self, backend: &'static str) {
        let Some(inner) = &self.inner else { return };
        inner
            .backend_errors
            .add(1, &[KeyValue::new("backend", backend)]);
    }

    /// Shows `vibectl_limits_backend_errors_total{backend}` at 0.
    pub fn backend_errors_start(&self, backend: &'static str) {
        let Some(inner) = &self.inner else { return };
        inner
            .backend_errors
            .add(0, &[KeyValue::new("backend", backend)]);
    }

    /// Counts a call of `sub` in flight until the guard drops.
    pub fn in_flight(&self, sub: &str) -> InFlight {
        let label = self.subject(Some(sub));
        if let Some(label) = &label {
            label.enter();
        }
        InFlight { label }
    }

    /// The Prometheus text exposition (empty when off).
    pub fn render(&self) -> Result<String, MetricsError> {
        let Some(inner) = &self.inner else {
            return Ok(String::new());
        };
        prometheus::TextEncoder::new()
            .encode_to_string(&inner.registry.gather())
            .map_err(MetricsError::Encode)
    }
}

/// One call in `vibectl_concurrent_in_flight`; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    label: Option<SubjectLabel>,
}

impl InFlight {
    /// The call's `sub` label (`None` when metrics are off).
    pub fn label(&self) -> Option<&SubjectLabel> {
        self.label.as_ref()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(label) = &self.label {
            label.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_renders_nothing_and_counts_nothing() {
        let m = Metrics::disabled();
        assert!(m.subject(Some("a")).is_none());
        let _f = m.in_flight("a");
        assert_eq!(m.render().expect("render"), "");
    }

    #[test]
    fn names_units_and_no_scope_labels() {
        let m = Metrics::new(2).expect("metrics");
        let alice = m.subject(Some("alice")).expect("on");
        let execute = labels::method(vibectl_proto::wire::Method::Execute.path());
        let stream = labels::method(vibectl_proto::wire::Method::StreamExecute.path());
        m.request(
            &alice,
            execute,
            labels::code("0"),
            Duration::from_millis(20),
        );
        m.request(&alice, execute, labels::code("0"), Duration::from_millis(2));
        m.request(&alice, execute, Code::CANCELLED, Duration::from_millis(2));
        m.rate_limited(&alice, "rpm");
        m.first_chunk(stream, Duration::from_millis(5));
        m.backend_error("redis");
        let stats = Arc::new(HandshakeStats::default());
        for _ in 0..3 {
            stats.record(crate::tls::HandshakeFailure::Timeout);
        }
        m.watch_handshakes(stats);
        let held = m.in_flight("bob");
        let text = m.render().expect("render");
        for needle in [
            r#"vibectl_requests_total{code="OK",method="Execute",sub="alice"} 2"#,
            r#"vibectl_requests_total{code="CANCELLED",method="Execute",sub="alice"} 1"#,
            "# HELP vibectl_requests_total Requests to the edge, by subject, method and gRPC status\n# TYPE vibectl_requests_total counter",
            "# TYPE vibectl_request_duration_seconds histogram",
            r#"vibectl_request_duration_seconds_bucket{method="Execute",le="0.005"} 2"#,
            r#"vibectl_request_duration_seconds_count{method="Execute"} 3"#,
            r#"vibectl_rate_limited_total{limit_type="rpm",sub="alice"} 1"#,
            r#"vibectl_concurrent_in_flight{sub="bob"} 1"#,
            r#"vibectl_request_duration_seconds_bucket{method="Execute",le="0.025"} 3"#,
            r#"vibectl_time_to_first_chunk_seconds_count{method="StreamExecute"} 1"#,
            r#"vibectl_limits_backend_errors_total{backend="redis"} 1"#,
            r#"vibectl_tls_handshake_failures_total{reason="timeout"} 3"#,
            r#"vibectl_tls_handshake_failures_total{reason="protocol_version"} 0"#,
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        assert!(!text.contains("otel_scope"), "{text}");
        assert!(!text.contains("target_info"), "{text}");
        drop(held);
        let text = m.render().expect("render");
        assert!(
            text.contains(r#"vibectl_concurrent_in_flight{sub="bob"} 0"#),
            "{text}"
        );
        assert_eq!(
            m.subject(Some("carol")).expect("on"),
            labels::OTHER,
            "max_subjects = 2"
        );
        assert_eq!(m.subject(None).expect("on"), labels::ANONYMOUS);
    }
}
