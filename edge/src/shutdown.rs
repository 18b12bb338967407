//! Shutdown: one signal source (SIGTERM, SIGINT) cancels one token; every
//! listener then stops accepting, sends GOAWAY on its connections and waits
//! for in-flight streams at most `edge.shutdown_grace`, after which the
//! remaining connections are closed (each connection's part is
//! [`crate::conn::lifecycle`]).

use std::time::Duration;
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
