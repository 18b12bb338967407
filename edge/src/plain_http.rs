//! A plain HTTP/1.1 listener with a bounded header read, the connection
//! lifecycle limits of [`crate::conn`] and a graceful drain, through the one
//! accept loop and the edge's one connection table (so its connections count
//! against the same caps and file-descriptor budget as the TLS listener's):
//! the admin listener and the ACME HTTP-01 / redirect listener.

use crate::conn::{
    ConnTable,
    accept::{self, Accepted},
    lifecycle,
    streams::{GuardedBody, StreamGuard},
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{convert::Infallible, future::Future, pin::pin, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Longest a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Serves `handler` on `listener` until `shutdown` fires, then drains
/// in-flight requests for at most 5 s. `name` labels logs and spans;
/// `table` is the edge's ([`crate::Edge::connections`]).
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    table: Arc<ConnTable>,
    handler: F,
    shutdown: CancellationToken,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    accept::serve(
        listener,
        name,
        table,
        shutdown,
        GRACE,
        move |a: Accepted| {
            let handler = handler.clone();
            let span = tracing::debug_span!("plain_http", listener = name, peer = %a.peer);
            // No set-up before HTTP/1.1: ready at once, in the accept loop.
            // Marked in the task, a connection waiting to be polled stayed
            // "in set-up" at a cap, where it could outlive (and so make
            // evict) another listener's client still in its TLS handshake.
            let state = a.guard.state().clone();
            state.mark_ready();
            async move {
                let service = service_fn(move |request| {
                    let guard = StreamGuard::open(&state, 0);
                    let call = handler(request);
                    async move {
                        let response = call.await?;
                        Ok::<_, Infallible>(response.map(|body| GuardedBody::new(body, guard)))
                    }
                });
                let conn = pin!(
                    http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(a.tcp), service)
                );
                let limits = a.guard.limits().clone();
                lifecycle::drive(conn, a.guard.state(), &limits, &a.ctx).await;
            }
            .instrument(span)
        },
    )
    .await;
}
