//! The request path, as one `ServiceBuilder` (read [`service_with`] top to
//! bottom: outermost layer first). This module owns the whole of it: every
//! layer is its own module here, as is every response body and the one
//! request-extension type ([`RequestContext`]); `limits`, `auth`, `metrics`
//! and `tls` are domain code that knows nothing of HTTP. [`service`] is the
//! production path (the leaf forwards to the core); tests run the same
//! layers over a stub leaf with [`service_with`].

pub mod auth;
mod body;
mod context;
mod core_client;
mod core_conn;
mod forward;
mod grpc_status;
mod hsts;
mod limited_body;
mod limits;
mod message_size;
mod metrics;
mod policy;
mod request_id;
pub mod rescue;
mod shared;
mod stamps;

pub use context::RequestContext;
pub use core_client::{CoreClient, CoreHealth};
pub use forward::ForwardError;

use crate::Edge;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use metrics::MetricsLayer;
use shared::SharedService;
use std::{
    pin::Pin,
    task::{Context, Poll},
};
use tower::{Service, ServiceBuilder};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

use request_id::X_REQUEST_ID;

/// Errors inside the stack travel boxed; [`rescue`] maps them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the edge sends or forwards.
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;
/// The body handed to the connection: an [`EdgeBody`] whose errors are
/// a concrete type, mapped as its frames pass (no second box per call).
pub struct ServerBody(EdgeBody);
/// The whole request path for one listener, cloned per connection.
pub type EdgeService = SharedService<Request<crate::conn::h2_body::RecvBody>, Response<ServerBody>>;

/// A body error on its way to hyper. A concrete type rather than
/// [`BoxError`]: with a boxed trait object, proving the connection future
/// `Send` hits a rustc higher-ranked lifetime limitation ("implementation
/// of `From` is not general enough").
#[derive(Debug)]
pub struct BodyError(BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Builds the request path of `edge`: [`service_with`] the forwarder to
/// the core as its leaf.
pub fn service(edge: &Edge) -> EdgeService {
    let leaf = forward::Forward::new(edge.core().clone(), edge.config().edge.stream_idle_timeout);
    service_with(edge, leaf)
}

/// The request path of `edge` over `leaf` (the forwarder in production; a
/// stub in tests), in the production layer order.
pub fn service_with<B, S>(edge: &Edge, leaf: S) -> SharedService<Request<B>, Response<ServerBody>>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<message_size::Replayed<B>>, Response = Response<EdgeBody>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let config = edge.config();
    // Whether the request span below is made (see there).
    let span = tracing::span_enabled!(Level::INFO);
    let stack = ServiceBuilder::new()
        // The body with a concrete error type for the connection (no behaviour).
        .map_response(erase_body)
        // Mark `authorization` and `x-request-id` sensitive (HPACK never
        // indexes them; `Debug` redacts them) before anything could log or
        // re-encode them; set `x-request-id` (the client's, else a new
        // random id) so the span below and every log line in it carry it
        // (a new id only when the span is made), and echo it on the
        // response, for support.
        .layer(request_id::RequestIdLayer::new(span))
        // One span per request (id, path; `sub` filled in by auth). Outcomes
        // log at debug: refusals are expected, not errors of the edge.
        // Absent when the log filter disables the span (its outcome lines
        // would be disabled too; the layer still parsed every status and
        // read the clock, ~3,000 instructions per call). Asked of the
        // filter for this module's target, not of the global maximum
        // level: `--log-level warn` keeps HTTP/2 and TLS internals at info
        // (`QUIET_DIRECTIVES`), which held that maximum at info. The
        // filter is fixed at start-up (`--log-level`, `RUST_LOG`).
        .option_layer(span.then(|| {
            ServiceBuilder::new()
                .map_response(rebox)
                .layer(
                    TraceLayer::new_for_grpc()
                        .make_span_with(request_span::<B> as fn(&Request<B>) -> Span)
                        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                        .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
                )
                .into_inner()
        }))
        // Metrics outside HSTS, rescue, auth and limits, so refused requests
        // are counted too (by the status they got). Absent when metrics are
        // off.
        .option_layer(MetricsLayer::new(edge.metrics()))
        // HSTS outside rescue and auth: over TLS every response carries it,
        // the edge's own UNAUTHENTICATED / UNAVAILABLE included. None on h2c.
        .option_layer(hsts::layer(&config.hsts, edge.transport()))
        // Rescue: typed errors from below become gRPC statuses, here only.
        .layer(rescue::RescueLayer)
        // Request policy before any auth work: POST, gRPC content type, an
        // allowlisted method (405 / 415 / UNIMPLEMENTED otherwise).
        .layer(policy::PolicyLayer::new(config.edge.forward_reflection))
        // JWT: `authorization: Bearer <jwt>`, or UNAUTHENTICATED. Absent only
        // when `edge.require_auth = false`.
        .option_layer(
            edge.verifier()
                .map(|v| auth::layer(v, edge.failure_budget().clone())),
        )
        // A request message over edge.max_message_bytes: RESOURCE_EXHAUSTED
        // (`limit-type: message_size`) before it costs a rate token or
        // reaches the core.
        .layer(message_size::MessageSizeLayer::new(
            config.edge.max_message_bytes,
            config.edge.stream_idle_timeout,
        ))
        // Limits after auth: keyed by the verified `sub` that auth put in
        // the request extensions (never by a client-sent header or address);
        // before forward, which carries the admitted call's limits to the
        // core. Refusals are its own trailers-only RESOURCE_EXHAUSTED.
        .layer(limits::LimitsLayer::new(edge))
        // The leaf: forward the stream to the core, frame by frame.
        .service(leaf);
    SharedService::new(stack)
}

fn erase_body(response: Response<EdgeBody>) -> Response<ServerBody> {
    response.map(ServerBody)
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.0)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(BodyError)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl std::fmt::Debug for ServerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerBody")
    }
}

/// Boxes a response body as an [`EdgeBody`] (the traced branch's body
/// type, so both branches of the optional trace layer have one type).
fn rebox<B>(response: Response<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

fn request_span<B>(request: &Request<B>) -> Span {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id,
        path = request.uri().path(),
        sub = tracing::field::Empty
    )
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod stack_tests;
