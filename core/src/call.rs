//! One `Execute`/`StreamExecute` call, as a stream of `StreamChunk`s: resolve
//! the model, call its provider, pass each text delta on as it arrives, then
//! `complete` and `final_metrics`; or one `error` chunk. The stream is lazy
//! and owns the provider call: dropping it (the client cancelled or went
//! away) drops the provider's HTTP response at once, and the
//! [`CallRecord`] drop guard logs the tokens used so far. When the call's
//! [`Deadline`] passes, the provider call is dropped the same way and the
//! stream ends with the `DEADLINE_EXCEEDED` status (after any text already
//! sent).

use crate::{
    accounting::{CallRecord, Telemetry},
    limits::Deadline,
    providers::{ProviderError, ProviderEvent, ProviderRequest},
    registry::ModelEntry,
    shared::Shared,
    tokenizer::count_fragments,
};
use futures::{Stream, StreamExt};
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::time::Instant;
use tonic::Status;
use tracing::Span;
use vibectl_proto::{
    ExecuteError, ExecuteRequest, StreamChunk, StreamComplete, stream_chunk::ChunkType,
};

/// The in-band code of any provider failure (the specific one goes in
/// `error_details`).
pub(crate) const EXECUTION_FAILED: &str = "EXECUTION_FAILED";

/// The chunks of one call; a status (deadline exceeded) ends it.
pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, Status>> + Send>>;

/// Who calls, how, and until when.
#[derive(Debug, Clone)]
pub(crate) struct CallContext {
    /// `Execute` or `StreamExecute`.
    pub(crate) method: &'static str,
    /// The verified subject the edge passed, if any.
    pub(crate) sub: Option<String>,
    /// The token's `kid` and `jti` the edge passed, if any.
    pub(crate) kid: Option<String>,
    pub(crate) jti: Option<String>,
    /// When the call must end.
    pub(crate) deadline: Option<Deadline>,
}

/// What the provider loop saw next.
enum Next {
    Event(ProviderEvent),
    End,
    Expired(Deadline),
}

/// Starts a call. Returns the request id in force (the client's, or a new
/// UUID v4 when it sent none) and the call's chunks: each carrying that id
/// when `stamped` (`StreamExecute`), else with none (`Execute`, whose one
/// response carries it).
pub(crate) fn run(
    shared: Arc<Shared>,
    req: ExecuteRequest,
    ctx: CallContext,
    stamped: bool,
) -> (String, ChunkStream) {
    let request_id = if req.request_id.trim().is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        req.request_id.clone()
    };
    let span = tracing::info_span!(
        "call",
        request_id = %request_id,
        method = ctx.method,
        model = tracing::field::Empty,
        sub = ctx.sub.as_deref().unwrap_or("-"),
    );
    let telemetry = Telemetry {
        sub: shared.metrics.subject_label(ctx.sub.as_deref()),
        metrics: shared.metrics.clone(),
        method: ctx.method,
    };
    let deadline = ctx.deadline;
    let id = request_id.clone();
    let call_span = span.clone();
    let chunks = async_stream::stream! {
        let chunk = |c: ChunkType| Ok(StreamChunk { request_id: String::new(), chunk_type: Some(c) });
        let input_estimate = count_fragments(&req.system_fragments)
            .saturating_add(count_fragments(&req.user_fragments));
        let mut record = CallRecord::new(call_span.clone(), input_estimate, telemetry);
        record.attach(shared.usage.call(&id, &ctx));
        let model = match shared.registry.resolve(req.model_name.as_deref()) {
            Ok(model) => model,
            Err(e) => {
                let message = e.to_string();
                record.fail(e.code(), None, &message);
                yield chunk(ChunkType::Error(ExecuteError {
                    error_code: e.code().to_owned(),
                    error_message: message,
                    error_details: None,
                }));
                return;
            }
        };
        call_span.record("model", model.id.as_str());
        record.set_model(model.clone());
        let schema = match parse_schema(req.response_model_schema.as_deref()) {
            Ok(schema) => schema,
            Err(e) => {
                let error = execution_failed(&model, &e, 0);
                record.fail(EXECUTION_FAILED, error.error_details.as_deref(), &error.error_message);
                yield chunk(ChunkType::Error(error));
                return;
            }
        };
        match shared.usage.admit(&ctx, &model, input_estimate).await {
            Ok(reservation) => record.hold(reservation),
            Err(status) => {
                record.fail(crate::quota::code_name(&status), None, status.message());
                yield Err(status);
                return;
            }
        }
        let mut events = shared.providers.stream(ProviderRequest {
            model: model.clone(),
            system: req.system_fragments,
            user: req.user_fragments,
            schema,
        });
        let expiry = async {
            match deadline {
                Some(d) => {
                    tokio::time::sleep_until(d.at).await;
                    d
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        loop {
            // The timer is armed only when the provider makes the call
            // wait; a provider that is always ready meets the clock here.
            let next = match deadline.filter(|d| Instant::now() >= d.at) {
                Some(d) => Next::Expired(d),
                None => tokio::select! {
                    biased;
                    event = events.next() => event.map_or(Next::End, Next::Event),
                    d = &mut expiry => Next::Expired(d),
                },
            };
            match next {
                Next::End => break,
                Next::Expired(d) => {
                    // Dropping the provider stream closes its connection now.
                    drop(events);
                    record.deadline_exceeded(d.after);
                    yield Err(d.status());
                    return;
                }
                Next::Event(ProviderEvent::Text(text)) => {
                    record.on_text(&text);
                    yield chunk(ChunkType::TextChunk(text));
                }
                Next::Event(ProviderEvent::Usage(usage)) => record.on_usage(usage),
                Next::Event(ProviderEvent::Retried(n)) => record.set_retries(n),
                Next::Event(ProviderEvent::Failed(e)) => {
                    shared.metrics.provider_error(&model.provider, &model.id, &e.code());
                    let error = execution_failed(&model, &e, record.retries());
                    record.fail(EXECUTION_FAILED, error.error_details.as_deref(), &error.error_message);
                    yield chunk(ChunkType::Error(error));
                    return;
                }
            }
        }
        // Finished before `complete` is sent: a client that stops reading at
        // `complete` (vibectl's plain streaming path) did not cancel.
        let metrics = record.complete();
        yield chunk(ChunkType::Complete(StreamComplete { actual_model_used: model.id.clone() }));
        yield chunk(ChunkType::FinalMetrics(metrics));
    };
    let stream = Instrumented {
        inner: Box::pin(chunks),
        span,
        stamp: stamped.then(|| request_id.clone()),
    };
    (request_id, Box::pin(stream))
}

/// `response_model_schema` parsed, or a clear error before any call.
fn parse_schema(schema: Option<&str>) -> Result<Option<serde_json::Value>, ProviderError> {
    match schema.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| ProviderError::InvalidSchema(e.to_string())),
    }
}

/// The in-band error of a failed provider call: names provider and model;
/// the specific code goes in `error_details`.
fn execution_failed(model: &ModelEntry, error: &ProviderError, retries: u32) -> ExecuteError {
    let after = match retries {
        0 => String::new(),
        1 => " after 1 retry".to_owned(),
        n => format!(" after {n} retries"),
    };
    ExecuteError {
        error_code: EXECUTION_FAILED.to_owned(),
        error_message: format!(
            "provider `{}` failed for model `{}`{after}: {error}",
            model.provider, model.id
        ),
        error_details: Some(error.code()),
    }
}

/// Polls the call's stream inside its tracing span; puts the request id
/// in each chunk when it has one to `stamp`.
struct Instrumented {
    inner: ChunkStream,
    span: Span,
    stamp: Option<String>,
}

impl Stream for Instrumented {
    type Item = Result<StreamChunk, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let mut next = this.inner.as_mut().poll_next(cx);
        if let (Some(id), Poll::Ready(Some(Ok(chunk)))) = (&this.stamp, &mut next) {
            chunk.request_id.clone_from(id);
        }
        next
    }
}
