//! The core's instruments, in a Prometheus registry of this [`Metrics`]
//! alone (so several cores in one process never mix): the per-call series
//! as Prometheus instruments resolved once per label set
//! ([`super::series`]), the rest through OpenTelemetry's exporter:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_tokens_total` | counter | `sub`, `model`, `direction` = `input`/`output` |
//! | `vibectl_cost_usd_total` | counter | `sub`, `model` |
//! | `vibectl_core_requests_total` | counter | `sub`, `method`, `model`, `result` |
//! | `vibectl_core_request_duration_seconds` | histogram | `method`, `model` |
//! | `vibectl_core_time_to_first_chunk_seconds` | histogram | `model` |
//! | `vibectl_provider_errors_total` | counter | `provider`, `model`, `kind` |
//!
//! Label values are bounded: `model` is a configured model id or `unknown`;
//! `sub` takes at most `[metrics] max_subjects` distinct values, later
//! subjects count as `other` (and a call without a subject as `-`).

use super::call_result::CallResult;
use super::series::{Finished, Series, Subject};
use crate::error::CoreError;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, MeterProvider as _},
};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::{sync::Arc, time::Duration};

/// Everything known about a finished call, for the counters.
#[derive(Debug, Clone)]
pub struct CallSample<'a> {
    /// The `sub` label (from [`Metrics::subject_label`]).
    pub sub: &'a Subject,
    /// `Execute` or `StreamExecute`.
    pub method: &'static str,
    /// The resolved model id, if the call got that far.
    pub model: Option<&'a str>,
    /// How it ended.
    pub result: CallResult,
    /// Wall time of the call.
    pub duration: Duration,
    /// `(input, output)` tokens to count, if the provider was engaged.
    pub tokens: Option<(u32, u32)>,
    /// Cost of those tokens (0 when the model has no price).
    pub cost_usd: f64,
}

/// The core's metrics, or nothing when metrics are off (every method is
/// then a no-op). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Instruments>>,
}

struct Instruments {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    /// Every series of a call (see [`super::series`]).
    series: Series,
    provider_errors: Counter<u64>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("series", &self.series)
            .finish_non_exhaustive()
    }
}

impl Drop for Instruments {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

impl Metrics {
    /// No metrics.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Metrics with their own Prometheus registry; `models` are the
    /// configured model ids (the only `model` label values besides
    /// `unknown`).
    pub fn new<I, S>(models: I, max_subjects: usize) -> Result<Self, CoreError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(|e| CoreError::Metrics(e.to_string()))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("vibectl-core");
        let instruments = Instruments {
            series: Series::new(
                &registry,
                models.into_iter().map(Into::into).collect(),
                max_subjects,
            )?,
            provider_errors: meter
                .u64_counter("vibectl_provider_errors")
                .with_description("Failed provider calls, by error kind")
                .build(),
            registry,
            provider,
        };
        Ok(Self {
            inner: Some(Arc::new(instruments)),
        })
    }

    /// The meter of this registry, for instruments kept elsewhere (quotas,
    /// the ledger); `None` when metrics are off.
    pub fn meter(&self) -> Option<opentelemetry::metrics::Meter> {
        self.inner
            .as_ref()
            .map(|i| i.provider.meter("vibectl-core"))
    }

    /// The Prometheus registry, for series kept elsewhere and resolved
    /// once (the quota gauges); `None` when metrics are off.
    pub fn registry(&self) -> Option<&prometheus::Registry> {
        self.inner.as_ref().map(|i| &i.registry)
    }

    /// True when metrics are collected.
    #[cfg(test)]
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The `sub` label for a subject: itself while fewer than
    /// `max_subjects` distinct subjects were seen, else `other`.
    pub fn subject(&self, sub: Option<&str>) -> String {
        self.subject_label(sub).as_str().to_owned()
    }

    /// [`Self::subject`] as a shared handle (no copy per call) that also
    /// holds the subject's series.
    pub fn subject_label(&self, sub: Option<&str>) -> Subject {
        match &self.inner {
            Some(inner) => inner.series.subject(sub),
            None => Subject::default(),
        }
    }

    /// Counts a finished call (requests, duration, tokens, cost).
    pub fn call_finished(&self, call: &CallSample<'_>) {
        let Some(inner) = &self.inner else { return };
        inner.series.call(&Finished {
            sub: call.sub,
            method: call.method,
            model: call.model,
            result: call.result,
            seconds: call.duration.as_secs_f64(),
            tokens: call.tokens,
            cost_usd: call.cost_usd,
        });
    }

    /// The call's first text chunk left, `elapsed` after its start.
    pub fn first_chunk(&self, model: &str, elapsed: Duration) {
        let Some(inner) = &self.inner else { return };
        inner.series.first_chunk(model, elapsed.as_secs_f64());
    }

    /// A provider call failed with `kind` (`ProviderError::code`).
    pub fn provider_error(&self, provider: &str, model: &str, kind: &str) {
        let Some(inner) = &self.inner else { return };
        let model = inner.series.model_label(Some(model)).to_owned();
        inner.provider_errors.add(
            1,
            &[
                KeyValue::new("provider", provider.to_owned()),
                KeyValue::new("model", model),
                KeyValue::new("kind", kind.to_owned()),
            ],
        );
    }

    /// The Prometheus text exposition of every metric (empty when off).
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let Some(inner) = &self.inner else {
            return Ok(String::new());
        };
        let families = inner.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibectl_proto::wire::{NO_SUBJECT, OTHER_LABEL as OTHER_SUBJECT};

    fn sample<'a>(sub: &'a Subject, result: CallResult) -> CallSample<'a> {
        CallSample {
            sub,
            method: "Execute",
            model: Some("echo"),
            result,
            duration: Duration::from_millis(20),
            tokens: Some((3, 5)),
            cost_usd: 0.25,
        }
    }

    #[test]
    fn disabled_does_nothing() {
        let m = Metrics::disabled();
        assert!(!m.is_enabled());
        m.call_finished(&sample(&m.subject_label(Some("a")), CallResult::Ok));
        assert_eq!(m.render().expect("render"), "");
    }

    #[test]
    fn renders_every_series_with_bounded_labels() {
        let m = Metrics::new(["echo"], 2).expect("metrics");
        assert_eq!(m.subject(Some("alice")), "alice");
        assert_eq!(m.subject(Some("bob")), "bob");
        assert_eq!(m.subject(Some("carol")), OTHER_SUBJECT);
        assert_eq!(m.subject(Some("alice")), "alice");
        assert_eq!(m.subject(None), NO_SUBJECT);
        m.call_finished(&sample(&m.subject_label(Some("alice")), CallResult::Ok));
        m.call_finished(&CallSample {
            model: Some("gpt-9"),
            tokens: None,
            ..sample(
                &m.subject_label(Some("dave")),
                CallResult::from_code("MODEL_NOT_FOUND"),
            )
        });
        m.first_chunk("echo", Duration::from_millis(3));
        m.provider_error("openai", "nope", "provider_http_500");
        let text = m.render().expect("render");
        for line in [
            r#"vibectl_tokens_total{direction="input",model="echo",sub="alice"} 3"#,
            r#"vibectl_tokens_total{direction="output",model="echo",sub="alice"} 5"#,
            r#"vibectl_cost_usd_total{model="echo",sub="alice"} 0.25"#,
            r#"vibectl_core_requests_total{method="Execute",model="echo",result="ok",sub="alice"} 1"#,
            r#"vibectl_core_requests_total{method="Execute",model="unknown",result="model_not_found",sub="other"} 1"#,
            r#"vibectl_core_request_duration_seconds_count{method="Execute",model="echo"} 1"#,
            r#"vibectl_core_time_to_first_chunk_seconds_count{model="echo"} 1"#,
            r#"vibectl_provider_errors_total{kind="provider_http_500",model="unknown",provider="openai"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("otel_scope"), "{text}");
        assert!(!text.contains("target_info"), "{text}");
    }
}
