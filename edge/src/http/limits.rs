//! The limits layer. It runs after auth, so it keys every limit by the
//! verified JWT `sub` that auth put in the request extensions — never by a
//! client-sent header or address. For each request it asks the
//! [`Limiter`] (requests per minute, calls in flight per token and in
//! total); a refusal is answered here as a trailers-only gRPC status:
//! `RESOURCE_EXHAUSTED` with `limit-type` and `retry-after-ms`, or
//! `UNAVAILABLE` when the backend is down and the policy is to fail closed.
//!
//! An admitted call carries its limits to the core (`x-vibectl-limits`:
//! `rpm`, `concurrency`, `input-length`, `timeout`; absent = unlimited) and,
//! when the client's deadline is shorter than the token's
//! `request_timeout_seconds`, the client's `grpc-timeout` (the core's
//! deadline is the shorter of the two; see [`super::stamps`]). The core enforces input length and the
//! deadline; this layer is the backstop that ends a call still running
//! one second after its deadline with `DEADLINE_EXCEEDED` (see
//! [`super::limited_body::LimitedBody`]). The call's permit (its concurrency slots) is held by
//! the response body, so the slot is taken for the whole stream and freed
//! when the stream ends or the client drops it.
//!
//! With the in-process backend the decision is made in `call` and the
//! call's future is [`Admitted`] (no box, no async block per call); a
//! shared backend (Redis) answers over the network, in a boxed future.

use super::{
    BoxError, EdgeBody,
    context::{Identity, RequestContext},
    grpc_status::{GrpcCode, LIMIT_TYPE_NAME, response},
    limited_body::{Backstop, Hold, deadline_status, limited_body},
    stamps::Stamps,
};
use crate::{
    Edge,
    limits::{Admit, CallKind, Limiter, Refusal, alarms::Alarms, deadline::CallDeadline, retry_ms},
    metrics::Metrics,
};
use futures::future::Either;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use std::{
    future::{Future, Ready, ready},
    pin::Pin,
    sync::Arc,
    task::{self, Context, Poll},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, util::Oneshot};
use vibectl_proto::wire::{
    ANONYMOUS_SUBJECT, header_names::GRPC_TIMEOUT as DEADLINE,
    header_names::RETRY_AFTER_MS as RETRY_AFTER, parse_grpc_timeout,
};

/// The limits layer for the request path.
#[derive(Debug, Clone)]
pub struct LimitsLayer {
    shared: Arc<Shared>,
}

/// What every call of the layer's services reads (one reference count per
/// service clone).
#[derive(Debug)]
struct Shared {
    limiter: Arc<Limiter>,
    metrics: Metrics,
    /// `edge.max_call_duration`: the deadline of a call without one.
    max_call: std::time::Duration,
    stamps: Stamps,
    /// The calls' deadline backstops (one timer for all).
    alarms: Alarms,
}

impl LimitsLayer {
    /// The layer of `edge` (its limiter and metrics).
    pub fn new(edge: &Edge) -> Self {
        Self {
            shared: Arc::new(Shared {
                limiter: edge.limiter().clone(),
                metrics: edge.metrics().clone(),
                max_call: edge.config().edge.max_call_duration,
                stamps: Stamps::default(),
                alarms: Alarms::default(),
            }),
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// A refusal, answered at once.
type Answer = Ready<Result<Response<EdgeBody>, BoxError>>;
/// A call decided at once: refused, or admitted.
type Started<S, B> = Either<Answer, Admitted<Oneshot<S, Request<B>>>>;
/// A call waiting for a shared backend's decision.
type Deciding = Pin<Box<dyn Future<Output = Result<Response<EdgeBody>, BoxError>> + Send>>;

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
    type Future = Either<Started<S, B>, Deciding>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service is made ready in `call`, after admission.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // Without auth (`edge.require_auth = false`) every caller shares
        // the `anonymous` limits.
        let identity = RequestContext::of(&request)
            .and_then(RequestContext::identity)
            .cloned();
        let kind = CallKind::of_path(request.uri().path());
        // The `kid` of the key that verified the token selects an override
        // too (a `sub` override wins).
        let kid = identity.as_ref().and_then(Identity::kid);
        let sub = identity.as_ref().map_or(ANONYMOUS_SUBJECT, Identity::sub);
        if let Some(admit) = self.shared.limiter.admit_now(sub, kid, kind) {
            return Either::Left(self.shared.start(admit, inner, request, identity, kind));
        }
        let shared = self.shared.clone();
        Either::Right(Box::pin(async move {
            let kid = identity.as_ref().and_then(Identity::kid);
            let sub = identity.as_ref().map_or(ANONYMOUS_SUBJECT, Identity::sub);
            let admit = shared.limiter.admit(sub, kid, kind).await;
            shared.start(admit, inner, request, identity, kind).await
        }))
    }
}

impl Shared {
    /// Starts an admitted call: its deadline, its limits stamped for the
    /// core, its hold and its backstop; a refused one's answer.
    fn start<S, B>(
        &self,
        admit: Admit,
        inner: S,
        mut request: Request<B>,
        identity: Option<Identity>,
        kind: CallKind,
    ) -> Started<S, B>
    where
        S: Service<Request<B>>,
    {
        let sub = identity.as_ref().map_or(ANONYMOUS_SUBJECT, Identity::sub);
        let permit = match admit {
            Admit::Allowed(permit) => permit,
            Admit::Refused(refusal) => return Either::Left(ready(Ok(refused(sub, &refusal)))),
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
        .unwrap_or(CallDeadline::default_bound(self.max_call));
        if let Some(wait) = deadline.response_wait() {
            RequestContext::of_mut(&mut request).response_wait = Some(wait);
        }
        self.stamps.stamp(&mut request, &permit.limits, deadline);
        let in_flight = (kind == CallKind::Call).then(|| self.metrics.in_flight(sub));
        if let Some(label) = in_flight.as_ref().and_then(|f| f.label()) {
            // The metrics layer counts the call under the same label.
            RequestContext::of_mut(&mut request)
                .subject_ref()
                .keep_label(label);
        }
        let hold = Hold { permit, in_flight };
        let backstop = Backstop::new(&self.alarms, deadline, identity, Instant::now());
        Either::Right(Admitted {
            call: inner.oneshot(request),
            hold: Some(hold),
            backstop: Some(backstop),
        })
    }
}

pin_project! {
    /// An admitted call: it races its backstop's alarm until the response headers come, which then carry the hold
    /// and the backstop in their body.
    pub struct Admitted<F> {
        #[pin]
        call: F,
        hold: Option<Hold>,
        backstop: Option<Backstop>,
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response<EdgeBody>, BoxError>>,
{
    type Output = Result<Response<EdgeBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(response) = this.call.poll(cx) {
            let Some(hold) = this.hold.take() else {
                return Poll::Ready(Err("the limits future was polled after its answer".into()));
            };
            let backstop = this.backstop.take();
            return Poll::Ready(
                response.map(|r| r.map(|b| limited_body(b, hold, backstop).boxed_unsync())),
            );
        }
        let Some(backstop) = this.backstop.as_mut() else {
            return Poll::Pending;
        };
        task::ready!(backstop.expired(cx));
        // No response headers by then: the core's stream is dropped with
        // this future, which cancels the call there.
        this.hold.take();
        let (deadline, sub) = (backstop.deadline(), backstop.sub());
        tracing::info!(%sub, after = ?deadline.after, "call ended by the edge's deadline backstop (no answer)");
        let answer = deadline_response(&deadline, sub);
        this.backstop.take();
        Poll::Ready(Ok(answer))
    }
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
    use std::time::Duration;
    use vibectl_proto::wire::{LIMIT_TYPE, LimitType, RETRY_AFTER_MS};

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
}
