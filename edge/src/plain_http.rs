//! A plain HTTP/1.1 listener with a bounded header read and a graceful
//! drain: the one accept loop behind the admin listener and the ACME
//! HTTP-01 / redirect listener.

use crate::shutdown;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{convert::Infallible, future::Future, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

/// Longest a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Serves `handler` on `listener` until `shutdown` fires, then drains
/// in-flight requests for at most 5 s. `name` labels logs and spans.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    handler: F,
    shutdown: CancellationToken,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Per-connection failures (reset before accept, EMFILE): log,
                // back off a moment so a persistent one cannot spin, go on.
                tracing::warn!(%error, listener = name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
        tracker.spawn(
            async move {
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), service_fn(handler));
                shutdown::drive(conn, &shutdown, &hard_stop, None).await;
            }
            .instrument(tracing::debug_span!("plain_http", listener = name, %peer)),
        );
    }
    drop(listener);
    shutdown::drain(&tracker, GRACE, &hard_stop).await;
}
