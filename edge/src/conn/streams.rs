//! Requests in flight on a connection, and the premature-reset guard (as
//! Envoy's): a stream whose client reset it within [`PREMATURE`] of opening,
//! before its response ended, is premature; a connection where more than
//! `connections.max_premature_reset_percent` of its recent streams (a
//! window of 100-200) were premature is closed with GOAWAY and its open
//! streams are dropped, which cancels them at the core.

use crate::conn::{CloseReason, ConnState};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Instant;

/// A stream reset sooner than this after it opened is premature.
pub const PREMATURE: Duration = Duration::from_secs(1);

/// Marks a response the edge made because the client reset its stream
/// (in the response extensions): such a stream did not complete.
#[derive(Debug, Clone, Copy)]
pub struct ClientReset;

/// One request in flight; dropped when its response ended or was abandoned.
#[derive(Debug)]
pub struct StreamGuard {
    state: Arc<ConnState>,
    opened: Instant,
    completed: bool,
    max_percent: u8,
}

impl StreamGuard {
    /// A request started on the connection of `state`.
    pub fn open(state: &Arc<ConnState>, max_percent: u8) -> Self {
        // One clock reading for the guard and the connection's activity.
        let opened = Instant::now();
        state.stream_opened(opened);
        Self {
            state: state.clone(),
            opened,
            completed: false,
            max_percent,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let now = Instant::now();
        let premature = !self.completed && now.saturating_duration_since(self.opened) < PREMATURE;
        if self.state.stream_closed(now, premature, self.max_percent)
            && self.state.close_reason().is_none()
        {
            tracing::warn!(
                "closing a connection whose client reset most of its recent streams right after \
                 opening them (premature-reset guard)"
            );
            self.state.close(CloseReason::PrematureReset);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its [`StreamGuard`] when it completes
    /// (end of stream, trailers or an error of ours), or is dropped unread
    /// (the client went away).
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        guard: StreamGuard,
    }
}

impl<B: Body> GuardedBody<B> {
    /// Wraps `inner`; an empty (trailers-only) body is complete at once.
    pub fn new(inner: B, mut guard: StreamGuard) -> Self {
        guard.completed = inner.is_end_stream();
        Self { inner, guard }
    }

    /// Wraps the edge's answer to a stream the client reset: not complete.
    pub fn reset(inner: B, guard: StreamGuard) -> Self {
        Self { inner, guard }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.guard.completed = true,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => this.guard.completed = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
