//! The metrics layer: wraps the whole request path below it (HSTS, rescue,
//! auth, limits, forward), so refusals are counted like answers. A request
//! is counted once, when its gRPC status is known: at once for a
//! trailers-only answer (`grpc-status` in the headers: every refusal), else
//! when the response stream's trailers pass; a stream the client drops
//! first counts as `CANCELLED`. The first DATA frame is the time to first
//! chunk. The `sub` is the one auth verified ([`Subject`], read from the
//! request's context after the call).

use super::{
    BoxError, EdgeBody,
    body::{FrameWatch, WatchedBody},
    context::{RequestContext, Subject},
    grpc_status::{GRPC_STATUS, LIMIT_TYPE_NAME},
};
use crate::metrics::{Code, MethodLabel, Metrics, labels};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::time::Instant;
use tower::{Layer, Service};

/// The metrics layer (see the module doc).
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    /// The layer, or `None` when metrics are off (then there is no layer).
    pub fn new(metrics: &Metrics) -> Option<Self> {
        metrics.is_enabled().then(|| Self {
            metrics: metrics.clone(),
        })
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<EdgeBody>>,
{
    type Response = Response<EdgeBody>;
    type Error = S::Error;
    /// The inner call's future, measured (no box per call).
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let slot = RequestContext::of_mut(&mut request).subject();
        let record = Record {
            metrics: self.metrics.clone(),
            method: labels::method(request.uri().path()),
            slot,
            started: Instant::now(),
            done: false,
        };
        Measured {
            inner: self.inner.call(request),
            record: Some(record),
        }
    }
}

pin_project! {
    /// The response future: counts a trailers-only answer (or a failure)
    /// at once, else hands the record to the response body's watch. Dropped
    /// before its answer, its record counts the call as `CANCELLED`.
    pub struct Measured<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }
}

impl<F, E> Future for Measured<F>
where
    F: Future<Output = Result<Response<EdgeBody>, E>>,
{
    type Output = Result<Response<EdgeBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut record) = this.record.take() else {
            // Polled again after its answer: nothing more to count.
            return Poll::Ready(result);
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                record.finish(Code::INTERNAL, None);
                return Poll::Ready(Err(error));
            }
        };
        if let Some(code) = response.headers().get(&GRPC_STATUS) {
            // Trailers-only: the status is final now.
            let code = labels::code(code.to_str().unwrap_or(""));
            record.finish(code, response.headers());
            return Poll::Ready(Ok(response));
        }
        Poll::Ready(Ok(response.map(|body| {
            WatchedBody::new(
                body,
                Watch {
                    record,
                    seen_data: false,
                },
            )
            .boxed_unsync()
        })))
    }
}

/// One request's measurements until its status is known.
struct Record {
    metrics: Metrics,
    method: MethodLabel,
    slot: Subject,
    started: Instant,
    done: bool,
}

impl Record {
    fn finish<'a>(&mut self, code: Code, status: impl Into<Option<&'a HeaderMap>>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // The label the limits layer looked up, else (a call refused
        // before the limits, or no call kind that holds a slot) its own.
        let looked_up = self.slot.label().cloned();
        let Some(sub) = looked_up.or_else(|| self.metrics.subject(self.slot.get())) else {
            return;
        };
        self.metrics
            .request(&sub, self.method, code, self.started.elapsed());
        let limit = status
            .into()
            .and_then(|h| h.get(&LIMIT_TYPE_NAME))
            .and_then(|v| v.to_str().ok());
        if let Some(limit) = limit {
            self.metrics.rate_limited(&sub, labels::limit_type(limit));
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped before a status: the client went away.
        self.finish(Code::CANCELLED, None);
    }
}

/// The response body's watch: its first DATA frame and its trailers.
struct Watch {
    record: Record,
    seen_data: bool,
}

impl FrameWatch for Watch {
    fn frame(&mut self, frame: Option<&Result<Frame<Bytes>, BoxError>>) {
        match frame {
            Some(Ok(f)) if f.is_data() => {
                if !std::mem::replace(&mut self.seen_data, true) {
                    self.record
                        .metrics
                        .first_chunk(self.record.method, self.record.started.elapsed());
                }
            }
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    let code = trailers
                        .get(&GRPC_STATUS)
                        .map_or(Code::UNKNOWN, |c| labels::code(c.to_str().unwrap_or("")));
                    self.record.finish(code, trailers);
                }
            }
            // A broken stream: hyper resets it; the client sees no status.
            Some(Err(_)) => self.record.finish(Code::UNKNOWN, None),
            // Ended without trailers: not a valid gRPC response.
            None => self.record.finish(Code::UNKNOWN, None),
        }
    }
}
