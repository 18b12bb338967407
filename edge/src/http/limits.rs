//! The limits layer. It runs after auth, so it keys every limit by the
//! verified JWT `sub` that auth put in the request extensions — never by a
//! client-sent header or address. For each request it asks the
//! [`Limiter`] (requests per minute, calls in flight per token and in
//! total); a refusal is answered here as a trailers-only gRPC status:
//! `RESOURCE_EXHAUSTED` with `limit-type` and `retry-after-ms`, or
//! `UNAVAILABLE` when the backend is down and the policy is to fail closed.
//!
//! An admitted call carries its limits to the core (`x-vibectl-limit-rpm`,
//! `-concurrency`, `-input-length`, `-timeout`; absent = unlimited) and a
//! `grpc-timeout` that is the shorter of the client's and the token's
//! `request_timeout_seconds`. The core enforces input length and the
//! deadline; this layer is the backstop that ends a call still running
//! one second after its deadline with `DEADLINE_EXCEEDED` (see
//! [`super::limited_body::LimitedBody`]). The call's permit (its concurrency slots) is held by
//! the response body, so the slot is taken for the whole stream and freed
//! when the stream ends or the client drops it.

use super::{
    BoxError, EdgeBody,
    context::{CoreHeaders, Identity, RequestContext},
    grpc_status::{GrpcCode, LIMIT_TYPE_NAME, response},
    limited_body::{Backstop, Hold, deadline_status, limited_body},
};
use crate::{
    Edge,
    limits::{
        Admit, CallKind, Limiter, Refusal,
        deadline::{CallDeadline, DeadlineSource},
        retry_ms,
    },
    metrics::Metrics,
};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use vibectl_config::LimitSet;
use vibectl_proto::wire::{ANONYMOUS_SUBJECT, format_grpc_timeout, parse_grpc_timeout};

// The header names this layer writes, parsed once.
use vibectl_proto::wire::header_names::{
    GRPC_TIMEOUT as DEADLINE, LIMIT_CONCURRENCY as CONCURRENCY,
    LIMIT_INPUT_LENGTH as INPUT_LENGTH, LIMIT_RPM as RPM, LIMIT_TIMEOUT as TIMEOUT,
    RETRY_AFTER_MS as RETRY_AFTER,
};

/// The limits layer for the request path.
#[derive(Debug, Clone)]
pub struct LimitsLayer {
    limiter: Arc<Limiter>,
    metrics: Metrics,
    /// `edge.max_call_duration`: the deadline of a call without one.
    max_call: std::time::Duration,
    stamps: Arc<Stamps>,
}

impl LimitsLayer {
    /// The layer of `edge` (its limiter and metrics).
    pub fn new(edge: &Edge) -> Self {
        Self {
            limiter: edge.limiter().clone(),
            metrics: edge.metrics().clone(),
            max_call: edge.config().edge.max_call_duration,
            stamps: Arc::default(),
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            limiter: self.limiter.clone(),
            metrics: self.metrics.clone(),
            max_call: self.max_call,
            stamps: self.stamps.clone(),
        }
    }
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
    limiter: Arc<Limiter>,
    metrics: Metrics,
    max_call: std::time::Duration,
    stamps: Arc<Stamps>,
}

impl<S, B> Service<Request<B>> for Limits<S>
where
    S: Service<Request<B>, Response = Response<EdgeBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<EdgeBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EdgeBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service is made ready in `call`, after admission.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (limiter, metrics, stamps) = (
            self.limiter.clone(),
            self.metrics.clone(),
            self.stamps.clone(),
        );
        let max_call = self.max_call;
        // Without auth (`edge.require_auth = false`) every caller shares
        // the `anonymous` limits.
        let identity = RequestContext::of(&request)
            .and_then(RequestContext::identity)
            .cloned();
        let kind = CallKind::of_path(request.uri().path());
        Box::pin(async move {
            let sub = identity.as_ref().map_or(ANONYMOUS_SUBJECT, Identity::sub);
            // The `kid` of the key that verified the token selects an
            // override too (a `sub` override wins).
            let kid = identity.as_ref().and_then(Identity::kid);
            let permit = match limiter.admit(sub, kid, kind).await {
                Admit::Allowed(permit) => permit,
                Admit::Refused(refusal) => return Ok(refused(sub, &refusal)),
            };
            let client_timeout = request
                .headers()
                .get(&DEADLINE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            let deadline = CallDeadline::of(
                client_timeout,
                permit.limits.request_timeout_seconds.map(|n| n.get()),
            )
            .unwrap_or(CallDeadline::default_bound(max_call));
            if let Some(wait) = deadline.response_wait() {
                RequestContext::of_mut(&mut request).response_wait = Some(wait);
            }
            // The edge's own default bound is not sent to the core (absent
            // there = no deadline asked); the backstop below enforces it.
            let asked = Some(deadline).filter(|d| d.source != DeadlineSource::Default);
            stamps.stamp(&mut request, &permit.limits, asked);
            let hold = Hold {
                permit,
                in_flight: (kind == CallKind::Call).then(|| metrics.in_flight(sub)),
            };
            let mut end = Backstop::new(deadline, identity.clone(), Instant::now());
            // The call races the backstop's own timer (one timer per call).
            let mut call = std::pin::pin!(inner.oneshot(request));
            let answered = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Ready(response) => Poll::Ready(Some(response)),
                Poll::Pending => end.expired(cx).map(|()| None),
            })
            .await;
            match answered {
                Some(response) => {
                    Ok(response?.map(|b| limited_body(b, hold, Some(end)).boxed_unsync()))
                }
                // No response headers by then: dropping the future drops
                // the core's stream, which cancels the call there.
                None => {
                    tracing::info!(%sub, after = ?deadline.after, "call ended by the edge's deadline backstop (no answer)");
                    Ok(deadline_response(&deadline, sub))
                }
            }
        })
    }
}

/// The last stamped limits and deadline as headers, kept: nearly every
/// call has the limits of the call before (the global set, or the same
/// token's) and the same deadline, and formatting them anew cost about
/// 2,500 instructions per call.
#[derive(Debug, Default)]
struct Stamps(Mutex<Last>);

#[derive(Debug, Default)]
struct Last {
    limits: Option<(LimitSet, CoreHeaders)>,
    deadline: Option<(std::time::Duration, HeaderValue)>,
}

impl Stamps {
    /// [`stamp`], from the kept headers when the limits and the deadline
    /// are the last ones.
    fn stamp<B>(&self, request: &mut Request<B>, limits: &LimitSet, deadline: Option<CallDeadline>) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let core = match &last.limits {
            Some((kept, headers)) if kept == limits => headers.clone(),
            _ => {
                let headers = core_headers(limits);
                last.limits = Some((*limits, headers.clone()));
                headers
            }
        };
        RequestContext::of_mut(request).core_headers = core;
        let Some(deadline) = deadline else { return };
        let value = match &last.deadline {
            Some((after, value)) if *after == deadline.after => value.clone(),
            _ => {
                let Ok(value) = HeaderValue::try_from(format_grpc_timeout(deadline.after)) else {
                    return;
                };
                last.deadline = Some((deadline.after, value.clone()));
                value
            }
        };
        request.headers_mut().insert(DEADLINE, value);
    }
}

/// The caller's limits as headers for the core, and the call's
/// `grpc-timeout`.
#[cfg(test)]
fn stamp<B>(request: &mut Request<B>, limits: &LimitSet, deadline: Option<CallDeadline>) {
    Stamps::default().stamp(request, limits, deadline);
}

/// The caller's limits as headers for the core.
fn core_headers(limits: &LimitSet) -> CoreHeaders {
    let headers = [
        (RPM, limits.max_requests_per_minute),
        (CONCURRENCY, limits.max_concurrent_requests),
        (INPUT_LENGTH, limits.max_input_length),
        (TIMEOUT, limits.request_timeout_seconds),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, HeaderValue::from(value?.get()))))
    .collect();
    CoreHeaders::new(headers)
}

/// The trailers-only answer to a refused call.
fn refused(sub: &str, refusal: &Refusal) -> Response<EdgeBody> {
    match refusal {
        Refusal::Limited {
            limit,
            retry_after,
            message,
        } => {
            let retry = retry_ms(*retry_after);
            tracing::debug!(%sub, limit = limit.as_str(), retry_after_ms = retry, "refused: {message}");
            let mut r = response(GrpcCode::ResourceExhausted, message);
            r.headers_mut()
                .insert(LIMIT_TYPE_NAME, HeaderValue::from_static(limit.as_str()));
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry));
            r
        }
        Refusal::BackendUnavailable => response(
            GrpcCode::Unavailable,
            "rate-limit backend unavailable; try again shortly",
        ),
    }
}

fn deadline_response(deadline: &CallDeadline, sub: &str) -> Response<EdgeBody> {
    let mut r = response(GrpcCode::DeadlineExceeded, &deadline.message(sub));
    r.headers_mut().extend(deadline_status(deadline, sub));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibectl_proto::wire::{
        GRPC_TIMEOUT, LIMIT_CONCURRENCY_HEADER, LIMIT_INPUT_LENGTH_HEADER, LIMIT_RPM_HEADER,
        LIMIT_TIMEOUT_HEADER, RETRY_AFTER_MS,
    };
    use vibectl_proto::wire::{LIMIT_TYPE, LimitType};
    use std::{num::NonZeroU32, time::Duration};

    #[test]
    fn refusal_carries_limit_type_and_retry_after() {
        let r = refused(
            "alice",
            &Refusal::Limited {
                limit: LimitType::Rpm,
                retry_after: Duration::from_micros(849_200),
                message: "rate limit: 60 requests per minute for token `alice`; retry in 850 ms"
                    .to_owned(),
            },
        );
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()[LIMIT_TYPE], "rpm");
        assert_eq!(r.headers()[RETRY_AFTER_MS], "850");
        assert!(
            r.headers()["grpc-message"]
                .to_str()
                .expect("ascii")
                .contains("60 requests per minute")
        );
        let down = refused("alice", &Refusal::BackendUnavailable);
        assert_eq!(down.headers()["grpc-status"], "14");
        assert!(down.headers().get(LIMIT_TYPE).is_none());
    }

    #[test]
    fn limits_and_the_shorter_deadline_are_stamped() {
        let limits = LimitSet {
            max_requests_per_minute: NonZeroU32::new(60),
            max_input_length: NonZeroU32::new(100),
            request_timeout_seconds: NonZeroU32::new(5),
            ..LimitSet::default()
        };
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(GRPC_TIMEOUT, HeaderValue::from_static("1H"));
        let deadline = CallDeadline::of(Some(Duration::from_secs(3600)), Some(5));
        stamp(&mut request, &limits, deadline);
        assert_eq!(request.headers()[GRPC_TIMEOUT], "5000m");
        let core = &RequestContext::of(&request).expect("set").core_headers;
        let value = |name| core.get(name).map(HeaderValue::as_bytes);
        assert_eq!(value(LIMIT_RPM_HEADER), Some(&b"60"[..]));
        assert_eq!(value(LIMIT_INPUT_LENGTH_HEADER), Some(&b"100"[..]));
        assert_eq!(value(LIMIT_TIMEOUT_HEADER), Some(&b"5"[..]));
        assert!(
            core.get(LIMIT_CONCURRENCY_HEADER).is_none(),
            "unlimited = absent"
        );
    }
}
