//! The per-call series — `vibectl_core_requests_total`,
//! `vibectl_tokens_total`, `vibectl_cost_usd_total`,
//! `vibectl_core_request_duration_seconds` and
//! `vibectl_core_time_to_first_chunk_seconds` — as Prometheus instruments
//! in the core's registry (beside the OpenTelemetry exporter's series),
//! each label combination resolved at its first use and then kept: a call
//! costs a few atomic adds. Through OpenTelemetry the six measurements of
//! a call hashed, sorted and looked up their attribute sets (about 10,000
//! instructions per call). Names, help texts, labels and buckets are the
//! ones the OpenTelemetry exporter wrote.

use super::call_result::{CallResult, UNKNOWN_MODEL};
use crate::error::CoreError;
use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};
use vibectl_proto::wire::{Method, NO_SUBJECT, OTHER_LABEL};

/// Buckets (seconds) of the duration histograms: LLM calls take from
/// milliseconds (echo, cached) to minutes.
const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// The `method` values resolved once (any other is looked up each time).
const METHODS: [&str; 2] = [Method::Execute.name(), Method::StreamExecute.name()];

/// The `result` values resolved once (any other is looked up each time).
const RESULTS: [&str; 8] = [
    "ok",
    "no_model",
    "model_not_found",
    "quota",
    "execution_failed",
    "cancelled",
    "deadline_exceeded",
    "input_length",
];

fn method_index(method: &str) -> Option<usize> {
    METHODS.iter().position(|m| *m == method)
}

/// One `sub` label value with its series, per model (the configured ids,
/// then `unknown`), each made at its first use.
#[derive(Debug)]
struct Slot {
    label: Box<str>,
    models: Box<[SubjectModel]>,
}

#[derive(Debug, Default)]
struct SubjectModel {
    input: OnceLock<IntCounter>,
    output: OnceLock<IntCounter>,
    cost: OnceLock<Counter>,
    requests: [OnceLock<IntCounter>; METHODS.len() * RESULTS.len()],
}

impl Slot {
    fn new(label: &str, models: usize) -> Arc<Self> {
        Arc::new(Self {
            label: Box::from(label),
            models: (0..models).map(|_| SubjectModel::default()).collect(),
        })
    }
}

/// The `sub` label of a call ([`super::Metrics::subject_label`]): shared,
/// no copy per call. Empty when metrics are off.
#[derive(Debug, Clone, Default)]
pub struct Subject(Option<Arc<Slot>>);

impl Subject {
    /// The label value (empty when metrics are off).
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", |s| &s.label)
    }
}

/// The model series that do not depend on the subject.
#[derive(Debug, Default)]
struct ModelSeries {
    duration: [OnceLock<Histogram>; METHODS.len()],
    first_chunk: OnceLock<Histogram>,
}

/// The per-call series (see the module doc).
#[derive(Debug)]
pub(super) struct Series {
    tokens: IntCounterVec,
    cost: CounterVec,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_chunk: HistogramVec,
    /// Model id → its index in the per-model tables; `unknown` is last.
    model_index: HashMap<String, usize>,
    model_labels: Vec<String>,
    per_model: Box<[ModelSeries]>,
    max_subjects: usize,
    subjects: Mutex<HashMap<Box<str>, Arc<Slot>>>,
    no_subject: Arc<Slot>,
    other: Arc<Slot>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: Result<C, prometheus::Error>,
) -> Result<C, CoreError> {
    let collector = collector.map_err(|e| CoreError::Metrics(e.to_string()))?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(|e| CoreError::Metrics(e.to_string()))?;
    Ok(collector)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, CoreError> {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, labels))
}

/// What one finished call adds (see [`Series::call`]).
pub(super) struct Finished<'a> {
    pub(super) sub: &'a Subject,
    pub(super) method: &'static str,
    pub(super) model: Option<&'a str>,
    pub(super) result: CallResult,
    pub(super) seconds: f64,
    pub(super) tokens: Option<(u32, u32)>,
    pub(super) cost_usd: f64,
}

impl Series {
    pub(super) fn new(
        registry: &Registry,
        models: Vec<String>,
        max_subjects: usize,
    ) -> Result<Self, CoreError> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let mut model_labels = models;
        model_labels.push(UNKNOWN_MODEL.to_owned());
        let model_index = model_labels
            .iter()
            .take(model_labels.len() - 1)
            .enumerate()
            .map(|(i, m)| (m.clone(), i))
            .collect();
        let count = model_labels.len();
        Ok(Self {
            tokens: counter(
                "vibectl_tokens_total",
                "Tokens used, by subject, model and direction",
                &["sub", "model", "direction"],
            )?,
            cost: register(
                registry,
                CounterVec::new(
                    Opts::new(
                        "vibectl_cost_usd_total",
                        "Cost of the tokens used, in USD (0 for unpriced models)",
                    ),
                    &["sub", "model"],
                ),
            )?,
            requests: counter(
                "vibectl_core_requests_total",
                "Execute and StreamExecute calls, by how they ended",
                &["sub", "method", "model", "result"],
            )?,
            duration: histogram(
                registry,
                "vibectl_core_request_duration_seconds",
                "Wall time of a call in the core",
                &["method", "model"],
            )?,
            first_chunk: histogram(
                registry,
                "vibectl_core_time_to_first_chunk_seconds",
                "Time from the call's start to its first text chunk",
                &["model"],
            )?,
            model_index,
            model_labels,
            per_model: (0..count).map(|_| ModelSeries::default()).collect(),
            max_subjects,
            subjects: Mutex::new(HashMap::new()),
            no_subject: Slot::new(NO_SUBJECT, count),
            other: Slot::new(OTHER_LABEL, count),
        })
    }

    /// The `sub` label for a subject: itself while fewer than
    /// `max_subjects` distinct subjects were seen, else `other`.
    pub(super) fn subject(&self, sub: Option<&str>) -> Subject {
        let Some(sub) = sub else {
            return Subject(Some(self.no_subject.clone()));
        };
        let mut seen = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = seen.get(sub) {
            return Subject(Some(slot.clone()));
        }
        if seen.len() < self.max_subjects {
            let slot = Slot::new(sub, self.model_labels.len());
            seen.insert(Box::from(sub), slot.clone());
            return Subject(Some(slot));
        }
        Subject(Some(self.other.clone()))
    }

    /// The index of a model label: a configured id, else `unknown`.
    fn model(&self, model: Option<&str>) -> usize {
        model
            .and_then(|m| self.model_index.get(m).copied())
            .unwrap_or(self.model_labels.len() - 1)
    }

    /// The `model` label of a model name.
    pub(super) fn model_label(&self, model: Option<&str>) -> &str {
        &self.model_labels[self.model(model)]
    }

    /// Counts a finished call (requests, duration, tokens, cost).
    pub(super) fn call(&self, call: &Finished<'_>) {
        let m = self.model(call.model);
        let model = self.model_labels[m].as_str();
        let slot = call.sub.0.as_ref().unwrap_or(&self.other);
        let sub = &*slot.label;
        let series = &slot.models[m];
        let result = call.result.label();
        let resolve = || {
            self.requests
                .with_label_values(&[sub, call.method, model, result])
        };
        match (
            method_index(call.method),
            RESULTS.iter().position(|r| *r == result),
        ) {
            (Some(i), Some(r)) => series.requests[i * RESULTS.len() + r]
                .get_or_init(resolve)
                .inc(),
            _ => resolve().inc(),
        }
        if call.result != CallResult::InputLength {
            let resolve = || self.duration.with_label_values(&[call.method, model]);
            match method_index(call.method) {
                Some(i) => self.per_model[m].duration[i]
                    .get_or_init(resolve)
                    .observe(call.seconds),
                None => resolve().observe(call.seconds),
            }
        }
        if let Some((input, output)) = call.tokens {
            let tokens = |cell: &OnceLock<IntCounter>, direction: &str, n: u32| {
                cell.get_or_init(|| self.tokens.with_label_values(&[sub, model, direction]))
                    .inc_by(u64::from(n));
            };
            tokens(&series.input, "input", input);
            tokens(&series.output, "output", output);
            series
                .cost
                .get_or_init(|| self.cost.with_label_values(&[sub, model]))
                .inc_by(call.cost_usd.max(0.0));
        }
    }

    /// The call's first text chunk left, `seconds` after its start.
    pub(super) fn first_chunk(&self, model: &str, seconds: f64) {
        let m = self.model(Some(model));
        self.per_model[m]
            .first_chunk
            .get_or_init(|| {
                self.first_chunk
                    .with_label_values(&[self.model_labels[m].as_str()])
            })
            .observe(seconds);
    }
}
