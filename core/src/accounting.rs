//! Per-call accounting: tokens (the provider's counts, else the
//! [`crate::tokenizer`] estimate of what was sent and streamed), cost from
//! the model's prices, duration, retries — and the drop guard that still
//! logs a call's tokens when the client cancels it. Every way a call ends
//! (completed, failed, deadline exceeded, cancelled) is logged once and
//! counted once in the [`Metrics`].

use crate::{
    metrics::{CallResult, CallSample, Metrics, Subject},
    providers::Usage,
    quota::{
        Reservation,
        settle::{CallUsage, Ending},
    },
    registry::ModelEntry,
    tokenizer::count_tokens,
};
use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tracing::Span;
use vibectl_proto::ExecutionMetrics;

/// Where a call's numbers go besides the log: the metrics, with the
/// call's `sub` label and method.
#[derive(Debug, Clone, Default)]
pub(crate) struct Telemetry {
    pub(crate) metrics: Metrics,
    /// The `sub` label ([`Metrics::subject_label`]).
    pub(crate) sub: Subject,
    /// `Execute` or `StreamExecute`.
    pub(crate) method: &'static str,
}

/// The tally of one call. Dropped before [`CallRecord::complete`],
/// [`CallRecord::fail`] or [`CallRecord::deadline_exceeded`], it logs the
/// call as cancelled with the tokens so far.
#[derive(Debug)]
pub(crate) struct CallRecord {
    span: Span,
    started: Instant,
    model: Option<Arc<ModelEntry>>,
    input_estimate: u32,
    output_estimate: u32,
    usage: Usage,
    usage_reported: bool,
    retries: u32,
    first_chunk_seen: bool,
    finished: bool,
    telemetry: Telemetry,
    /// Quota reservation and ledger row.
    hooks: CallUsage,
}

impl CallRecord {
    /// Starts the clock. `input_estimate` counts the prompt's tokens.
    pub(crate) fn new(span: Span, input_estimate: u32, telemetry: Telemetry) -> Self {
        Self {
            span,
            started: Instant::now(),
            model: None,
            input_estimate,
            output_estimate: 0,
            usage: Usage::default(),
            usage_reported: false,
            retries: 0,
            first_chunk_seen: false,
            finished: false,
            telemetry,
            hooks: CallUsage::default(),
        }
    }

    /// Where the call's quota settlement and ledger row go.
    pub(crate) fn attach(&mut self, hooks: CallUsage) {
        self.hooks = hooks;
    }

    /// The call's quota reservation, settled when it ends.
    pub(crate) fn hold(&mut self, reservation: Option<Reservation>) {
        self.hooks.reservation = reservation;
    }

    /// Settles the quota and records the ledger row (once, at the end).
    fn settle(&mut self, outcome: &'static str, status: Cow<'static, str>, engaged: bool) {
        let mut estimated = self.usage.input_tokens.is_none() || self.usage.output_tokens.is_none();
        let tokens = (self.model.is_some() && engaged).then(|| {
            let (input, output) = self.tokens();
            // A stream cut short: the provider's count (if any) is of its
            // start; charge at least what was streamed.
            if outcome != "ok" && self.output_estimate > output {
                estimated = true;
                return (input, self.output_estimate);
            }
            (input, output)
        });
        self.hooks.finish(&Ending {
            outcome,
            status,
            model: self.model.as_ref(),
            tokens,
            estimated,
            duration: self.started.elapsed(),
        });
    }

    pub(crate) fn set_model(&mut self, model: Arc<ModelEntry>) {
        self.model = Some(model);
    }

    /// A text delta was passed on to the client.
    pub(crate) fn on_text(&mut self, text: &str) {
        self.output_estimate = self.output_estimate.saturating_add(count_tokens(text));
        if !self.first_chunk_seen {
            self.first_chunk_seen = true;
            if let Some(model) = &self.model {
                self.telemetry
                    .metrics
                    .first_chunk(&model.id, self.started.elapsed());
            }
        }
    }

    /// The provider reported usage; a part it reports replaces the earlier one.
    pub(crate) fn on_usage(&mut self, usage: Usage) {
        self.usage_reported = true;
        self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
    }

    pub(crate) fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// `(input, output)` tokens: the provider's counts where it gave them.
    fn tokens(&self) -> (u32, u32) {
        (
            self.usage.input_tokens.unwrap_or(self.input_estimate),
            self.usage.output_tokens.unwrap_or(self.output_estimate),
        )
    }

    /// The metrics of the call so far.
    pub(crate) fn metrics(&self) -> ExecutionMetrics {
        let (input, output) = self.tokens();
        let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        ExecutionMetrics {
            duration_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            input_tokens: Some(as_i32(input)),
            output_tokens: Some(as_i32(output)),
            total_tokens: Some(as_i32(input.saturating_add(output))),
            cost_usd: self.model.as_ref().and_then(|m| m.cost_usd(input, output)),
            retry_count: as_i32(self.retries),
            timestamp: unix_now(),
        }
    }

    /// Counts the finished call in the metrics. Tokens count once a
    /// provider was called (a failure before any output or usage counts
    /// none: nothing was billed).
    fn count(&self, result: CallResult, engaged: bool) {
        let tokens = (self.model.is_some() && engaged).then(|| self.tokens());
        let cost_usd = match (&self.model, tokens) {
            (Some(m), Some((input, output))) => m.cost_usd(input, output).unwrap_or(0.0),
            _ => 0.0,
        };
        self.telemetry.metrics.call_finished(&CallSample {
            sub: &self.telemetry.sub,
            method: self.telemetry.method,
            model: self.model.as_ref().map(|m| m.id.as_str()),
            result,
            duration: self.started.elapsed(),
            tokens,
            cost_usd,
        });
    }

    /// The call succeeded: logs it and returns its final metrics.
    pub(crate) fn complete(&mut self) -> ExecutionMetrics {
        self.finished = true;
        self.count(CallResult::Ok, true);
        self.settle("ok", Cow::Borrowed("OK"), true);
        let m = self.metrics();
        tracing::info!(
            parent: &self.span,
            input_tokens = m.input_tokens,
            output_tokens = m.output_tokens,
            cost_usd = m.cost_usd,
            duration_ms = m.duration_ms,
            retries = self.retries,
            "completed"
        );
        m
    }

    /// The call failed with an in-band error (already sent to the client).
    pub(crate) fn fail(&mut self, code: &str, details: Option<&str>, message: &str) {
        self.finished = true;
        let engaged = self.usage_reported || self.output_estimate > 0;
        self.count(CallResult::from_code(code), engaged);
        let refused = matches!(code, "RESOURCE_EXHAUSTED" | "UNAVAILABLE");
        let outcome = if refused { "refused" } else { "failed" };
        self.settle(outcome, Cow::Owned(code.to_owned()), engaged);
        let (input, output) = self.tokens();
        if self.model.is_some() {
            tracing::warn!(parent: &self.span, code, details, input_tokens = input, output_tokens = output, retries = self.retries, error = message, "failed");
        } else {
            tracing::info!(parent: &self.span, code, error = message, "refused");
        }
    }

    /// The call's deadline passed (the provider call is being dropped):
    /// logs the tokens used so far.
    pub(crate) fn deadline_exceeded(&mut self, allowed: Duration) {
        self.finished = true;
        // A limit doing its job, not a fault: info, like a cancellation.
        self.end_unfinished(
            CallResult::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            Some(allowed),
        );
    }

    /// Counts, settles and logs (at info, with the tokens used so far) a
    /// call that ended before its answer did: `result`, gRPC `code`, the
    /// deadline it had if that is why.
    fn end_unfinished(
        &mut self,
        result: CallResult,
        code: &'static str,
        allowed: Option<Duration>,
    ) {
        let label = result.label();
        self.count(result, true);
        self.settle(label, Cow::Borrowed(code), true);
        let (input, output) = self.tokens();
        let cost_usd = self.model.as_ref().and_then(|m| m.cost_usd(input, output));
        tracing::info!(
            parent: &self.span,
            input_tokens = input,
            output_tokens = output,
            cost_usd,
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            allowed = allowed.map(tracing::field::debug),
            "{}",
            label.replace('_', " ")
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.end_unfinished(CallResult::Cancelled, "CANCELLED", None);
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Arc<ModelEntry> {
        Arc::new(ModelEntry {
            id: "m".into(),
            display_name: "m".into(),
            provider: "p".into(),
            kind: vibectl_config::ProviderKind::Openai,
            upstream_model: "m".into(),
            aliases: vec![],
            max_context_length: None,
            input_usd_per_mtok: Some(1.0),
            output_usd_per_mtok: Some(2.0),
            max_output_tokens: None,
        })
    }

    #[test]
    fn provider_usage_wins_over_estimates() {
        let mut r = CallRecord::new(Span::none(), 7, Telemetry::default());
        r.set_model(model());
        r.on_text("one two three");
        let m = r.metrics();
        assert_eq!(
            (m.input_tokens, m.output_tokens, m.total_tokens),
            (Some(7), Some(3), Some(10))
        );
        r.on_usage(Usage {
            input_tokens: Some(100),
            output_tokens: None,
        });
        r.on_usage(Usage {
            input_tokens: None,
            output_tokens: Some(50),
        });
        r.set_retries(2);
        let m = r.complete();
        assert_eq!(
            (m.input_tokens, m.output_tokens, m.total_tokens),
            (Some(100), Some(50), Some(150))
        );
        assert_eq!(m.retry_count, 2);
        let cost = m.cost_usd.expect("priced");
        assert!((cost - 0.0002).abs() < 1e-12, "{cost}");
        assert!(m.timestamp > 1_600_000_000);
    }
}
