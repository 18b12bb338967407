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

pub use context::RequestContext;
pub use core_client::{CoreClient, CoreHealth};
pub use forward::ForwardError;

use crate::Edge;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use metrics::MetricsLayer;
use std::convert::Infallible;
use tower::{Service, ServiceBuilder, util::BoxCloneService};
use tower_http::{
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::{Level, Span, level_filters::LevelFilter};

use request_id::X_REQUEST_ID;

/// Errors inside the stack travel boxed; [`rescue`] maps them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the edge sends or forwards.
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;
/// The body handed to hyper: as [`EdgeBody`], with a concrete error type.
pub type ServerBody = UnsyncBoxBody<Bytes, BodyError>;
/// The whole request path for one listener, cloned per connection.
pub type EdgeService =
    BoxCloneService<Request<crate::conn::h2_body::RecvBody>, Response<ServerBody>, Infallible>;

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
pub fn service_with<B, S>(
    edge: &Edge,
    leaf: S,
) -> BoxCloneService<Request<B>, Response<ServerBody>, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<message_size::Replayed<B>>, Response = Response<EdgeBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let config = edge.config();
    let stack = ServiceBuilder::new()
        // Erases the body type so the stack has one nameable type (no behaviour).
        .map_response(erase_body)
        // Mark `authorization` and `x-request-id` sensitive (HPACK never
        // indexes them; `Debug` redacts them) before anything could log or
        // re-encode them; set `x-request-id` (the client's, else a new
        // UUID) so the span below and every log line in it carry it, and
        // echo it on the response, for support.
        .layer(request_id::RequestIdLayer)
        // One span per request (id, path; `sub` filled in by auth). Outcomes
        // log at debug: refusals are expected, not errors of the edge.
        // Absent when the log level is below info (the span and its
        // outcome lines would be disabled; the layer still parsed every
        // status and read the clock, ~3,000 instructions per call). The
        // level is fixed at start-up (`--log-level`).
        .option_layer((Level::INFO <= LevelFilter::current()).then(|| {
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
    BoxCloneService::new(stack)
}

fn erase_body<B>(response: Response<B>) -> Response<ServerBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(|e| BodyError(e.into())).boxed_unsync())
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
