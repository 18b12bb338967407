//! One connection's life after accept: served until it ends, or closed
//! when it sends no first request in time, stays idle too long, is
//! evicted at a cap or trips the premature-reset guard, or at shutdown.
//! HTTP/2 connections get GOAWAY and their in-flight requests finish; one
//! that never sent a request is dropped at once (the HTTP/2 handshake
//! would wait for a preface first); a premature-reset offender's streams
//! are cancelled.

use crate::conn::{CloseReason, ConnState, Limits, accept::ConnCtx, side_wake::SideWake};
use hyper_util::server::graceful::GracefulConnection;
use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    task::Poll,
    time::Duration,
};

/// At shutdown, how long a connection that never sent a request may take
/// to send one (the HTTP/2 handshake waits for the client preface before
/// GOAWAY).
const UNUSED_CONNECTION_GRACE: Duration = Duration::from_secs(1);
/// How long a premature-reset offender has to read its GOAWAY before the
/// connection, and every stream on it, is dropped.
const OFFENDER_GRACE: Duration = Duration::from_millis(100);

/// What ends serving before the connection itself does.
enum Signal {
    Shutdown,
    Close(CloseReason),
}

/// A connection that can be asked to finish its in-flight requests and
/// close: hyper's HTTP/1.1 connections, and the edge's own HTTP/2 server
/// ([`crate::conn::h2_serve`]).
pub(crate) trait Drain: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    /// Stops taking new requests (HTTP/2: GOAWAY); the future ends once
    /// those in flight have.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C> Drain for C
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    type Error = C::Error;

    fn graceful_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

/// Serves `conn` until it ends or must close (see the module doc). Errors
/// of a connection are expected (clients go away) and logged at debug.
///
/// `conn` is pinned by the caller: an `async fn` keeps its arguments in its
/// state for its whole life, so a connection taken by value and pinned
/// here was held twice in every connection's task (2.7 KB each idle).
pub(crate) async fn drive<C: Drain>(
    mut conn: Pin<&mut C>,
    state: &ConnState,
    limits: &Limits,
    ctx: &ConnCtx,
) {
    // The signals are polled only when they were woken ([`SideWake`]),
    // not at each of the connection's wake-ups.
    let mut signals = pin!(async {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => Signal::Shutdown,
            reason = closing(state, limits) => Signal::Close(reason),
        }
    });
    let side = SideWake::new();
    let first = poll_fn(|cx| {
        if let Poll::Ready(signal) = side.poll_if_woken(cx, |cx| signals.as_mut().poll(cx)) {
            return Poll::Ready(Err(signal));
        }
        conn.as_mut().poll(cx).map(Ok)
    })
    .await;
    let result = match first {
        Ok(result) => result,
        Err(Signal::Shutdown) => {
            conn.as_mut().graceful_shutdown();
            let unused_grace = async {
                if state.used() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(UNUSED_CONNECTION_GRACE).await;
            };
            tokio::select! {
                result = conn.as_mut() => result,
                _ = ctx.hard_stop.cancelled() => {
                    return tracing::debug!("grace period over: closing the connection");
                }
                _ = unused_grace => {
                    return tracing::debug!("closing a connection that never sent a request");
                }
            }
        }
        Err(Signal::Close(reason)) => {
            tracing::debug!(reason = reason.as_str(), "closing the connection");
            if !state.used() {
                return;
            }
            conn.as_mut().graceful_shutdown();
            let offender = async {
                if reason != CloseReason::PrematureReset {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(OFFENDER_GRACE).await;
            };
            tokio::select! {
                result = conn.as_mut() => result,
                _ = ctx.hard_stop.cancelled() => return,
                _ = offender => return,
            }
        }
    };
    match result {
        Ok(()) => tracing::debug!("connection closed"),
        Err(error) => tracing::debug!(%error, "connection ended with an error"),
    }
}

/// Resolves with the reason once the connection must close: asked to
/// (evicted, premature resets), or a timeout of its own passed.
pub(crate) async fn closing(state: &ConnState, limits: &Limits) -> CloseReason {
    tokio::select! {
        _ = state.closing().cancelled() => {
            state.close_reason().unwrap_or(CloseReason::EvictedTotal)
        }
        reason = watchdog(state, limits) => {
            state.close(reason);
            reason
        }
    }
}

async fn watchdog(state: &ConnState, limits: &Limits) -> CloseReason {
    loop {
        let now = tokio::time::Instant::now();
        if !state.used() {
            let at = state.ready_at() + limits.first_request_timeout;
            if now >= at {
                return CloseReason::FirstRequestTimeout;
            }
            tokio::time::sleep_until(at).await;
        } else if state.streams() == 0 {
            let at = state.last_active() + limits.idle_timeout;
            if now >= at {
                return CloseReason::IdleTimeout;
            }
            tokio::time::sleep_until(at).await;
        } else {
            tokio::time::sleep(limits.idle_timeout).await;
        }
    }
}
