//! The admin listener: plain HTTP/1.1, loopback by default
//! (`edge.admin_listen`), unauthenticated, for probes. `/live` is 200 while
//! the process runs; `/ready` is 200 once the main listener is serving, its
//! certificate is the wanted one (not while ACME is pending) and the core
//! answers (its gRPC health check, or any gRPC answer), else 503 with the
//! reason. `/metrics` is the Prometheus text of [`crate::metrics`]
//! when `[metrics] enabled = true` (or `serve --enable-metrics`), else 404.

use crate::{Edge, EdgeError, http::CoreHealth};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::body::Incoming;
use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/live`, `/ready` (and `/metrics`) on `listener` until
/// `shutdown` fires.
pub async fn serve_admin(
    listener: TcpListener,
    edge: Edge,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let local = listener.local_addr().map_err(EdgeError::Listener)?;
    if edge.metrics().is_enabled() {
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "/metrics is unauthenticated and the admin listener is not on loopback");
        }
        tracing::info!(%local, "admin listening (/live, /ready, /metrics)");
    } else {
        tracing::info!(%local, "admin listening (/live, /ready)");
    }
    let table = edge.connections().clone();
    let handler = move |request| route(edge.clone(), request);
    crate::plain_http::serve(listener, "admin", table, handler, shutdown).await;
    Ok(())
}

async fn route(
    edge: Edge,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
    }
    Ok(match request.uri().path() {
        "/live" => text(StatusCode::OK, "live"),
        "/ready" => match readiness(&edge).await {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {reason}"),
            ),
        },
        "/metrics" if edge.metrics().is_enabled() => match edge.metrics().render() {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static(PROMETHEUS_TEXT),
                );
                r
            }
            Err(error) => {
                tracing::warn!(%error, "cannot encode the metrics");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot encode the metrics",
                )
            }
        },
        "/metrics" => text(
            StatusCode::NOT_FOUND,
            "metrics are off; set [metrics] enabled = true or run serve --enable-metrics",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /live, /ready or /metrics",
        ),
    })
}

/// Why the edge is not ready (the body of a 503 from `/ready`).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The main listener is not accepting.
    #[error("the edge listener is not serving")]
    NotServing,
    /// No certificate to serve yet (why, e.g. the ACME order's state).
    #[error("{0}")]
    CertificatePending(String),
    /// The core answers health checks with another status.
    #[error("the core at {address} reports health status {status} (not SERVING)")]
    CoreNotServing {
        /// The core's address.
        address: String,
        /// The `grpc.health.v1` status number.
        status: u8,
    },
    /// The core cannot be reached.
    #[error(transparent)]
    CoreUnreachable(#[from] crate::http::ForwardError),
}

/// `Ok` when the edge can serve requests, else why not.
pub async fn readiness(edge: &Edge) -> Result<(), NotReady> {
    if !edge.readiness().is_serving() {
        return Err(NotReady::NotServing);
    }
    if let Some(reason) = edge.readiness().certificate_pending() {
        return Err(NotReady::CertificatePending(reason));
    }
    let core = edge.core();
    match core.check_health().await? {
        CoreHealth::Serving | CoreHealth::Reachable => Ok(()),
        CoreHealth::NotServing(status) => Err(NotReady::CoreNotServing {
            address: core.address().to_owned(),
            status,
        }),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
