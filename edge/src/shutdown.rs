//! Shutdown: one signal source (SIGTERM, SIGINT) cancels one token; every
//! listener then stops accepting, sends GOAWAY on its connections and waits
//! for in-flight streams at most `edge.shutdown_grace`, after which the
//! remaining connections are closed.

use hyper_util::server::graceful::GracefulConnection;
use std::{
    pin::pin,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Resolves at the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            // Without signal handlers (unusual), Ctrl-C is still caught.
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("interrupted: shutting down");
        }
    }
}

/// How long, at shutdown, a connection that never sent a request may take
/// to finish its HTTP/2 handshake (hyper waits for the client preface before
/// it can send GOAWAY, so a silent client would otherwise hold the drain
/// for the whole grace period).
const UNUSED_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until it ends; on `shutdown` starts a graceful
/// close (HTTP/2 GOAWAY, HTTP/1 close after the current request), and on
/// `hard_stop` drops it. With `used` (set once a request arrived), a
/// connection still unused at shutdown gets only [`UNUSED_CONNECTION_GRACE`].
/// Errors of a connection are expected (clients go away) and logged at debug.
pub(crate) async fn drive<C>(
    conn: C,
    shutdown: &CancellationToken,
    hard_stop: &CancellationToken,
    used: Option<&AtomicBool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let unused = used.is_some_and(|u| !u.load(Ordering::Acquire));
            let unused_grace = async {
                match unused {
                    true => tokio::time::sleep(UNUSED_CONNECTION_GRACE).await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                result = conn.as_mut() => result,
                _ = hard_stop.cancelled() => {
                    tracing::debug!("grace period over: closing the connection");
                    return;
                }
                _ = unused_grace => {
                    tracing::debug!("closing a connection that never sent a request");
                    return;
                }
            }
        }
    };
    match result {
        Ok(()) => tracing::debug!("connection closed"),
        Err(error) => tracing::debug!(%error, "connection ended with an error"),
    }
}

/// Waits for every task of `tracker` (connections, streams) at most
/// `grace`, then fires `hard_stop` and waits a last, short moment.
pub(crate) async fn drain(tracker: &TaskTracker, grace: Duration, hard_stop: &CancellationToken) {
    tracker.close();
    if tracker.is_empty() {
        return;
    }
    tracing::info!(
        tasks = tracker.len(),
        ?grace,
        "draining in-flight connections"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        tracing::info!("drained");
        return;
    }
    tracing::warn!(
        tasks = tracker.len(),
        "grace period over: closing the remaining connections"
    );
    hard_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(tasks = tracker.len(), "some connections did not close");
    }
}
