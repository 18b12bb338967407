//! The per-call series — `vibectl_requests_total{sub,method,code}`,
//! `vibectl_request_duration_seconds{method}` and
//! `vibectl_time_to_first_chunk_seconds{method}` — as Prometheus
//! instruments in the edge's registry (beside the OpenTelemetry exporter's
//! series), every label combination resolved once and then kept: a call
//! costs a few atomic adds. Through OpenTelemetry each of the three
//! measurements per call hashed, sorted and looked up its attribute set
//! (about 4,000 instructions per call in all). Names, help texts, labels
//! and buckets are the ones the OpenTelemetry exporter wrote.

use super::{
    MetricsError,
    labels::{Code, MethodLabel, SubjectLabel},
};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::{sync::OnceLock, time::Duration};

/// Buckets (seconds) of the duration histograms: from a refusal (well
/// under a millisecond) to a long LLM stream (minutes).
const DURATION_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
    300.0,
];

/// One histogram per `method`, each resolved at its first use.
struct ByMethod {
    vec: HistogramVec,
    each: [OnceLock<Histogram>; MethodLabel::COUNT],
}

impl ByMethod {
    fn new(registry: &Registry, name: &str, help: &str) -> Result<Self, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
        let vec = HistogramVec::new(opts, &["method"]).map_err(MetricsError::Register)?;
        registry
            .register(Box::new(vec.clone()))
            .map_err(MetricsError::Register)?;
        Ok(Self {
            vec,
            each: std::array::from_fn(|_| OnceLock::new()),
        })
    }

    fn observe(&self, method: MethodLabel, took: Duration) {
        self.each[method.index()]
            .get_or_init(|| self.vec.with_label_values(&[method.as_str()]))
            .observe(took.as_secs_f64());
    }
}

/// The per-call instruments (see the module doc).
pub(super) struct Calls {
    requests: IntCounterVec,
    duration: ByMethod,
    first_chunk: ByMethod,
}

impl Calls {
    /// The instruments, registered in `registry`.
    pub(super) fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let requests = IntCounterVec::new(
            Opts::new(
                "vibectl_requests_total",
                "Requests to the edge, by subject, method and gRPC status",
            ),
            &["sub", "method", "code"],
        )
        .map_err(MetricsError::Register)?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(MetricsError::Register)?;
        Ok(Self {
            requests,
            duration: ByMethod::new(
                registry,
                "vibectl_request_duration_seconds",
                "Wall time of a request at the edge, to the end of its response stream",
            )?,
            first_chunk: ByMethod::new(
                registry,
                "vibectl_time_to_first_chunk_seconds",
                "Time from a request's start to its first response DATA frame",
            )?,
        })
    }

    /// A finished request.
    pub(super) fn request(
        &self,
        sub: &SubjectLabel,
        method: MethodLabel,
        code: Code,
        took: Duration,
    ) {
        sub.requests(method, code, || {
            self.requests
                .with_label_values(&[sub.as_str(), method.as_str(), code.as_str()])
        })
        .inc();
        self.duration.observe(method, took);
    }

    /// The first DATA frame of a response.
    pub(super) fn first_chunk(&self, method: MethodLabel, elapsed: Duration) {
        self.first_chunk.observe(method, elapsed);
    }
}
