//! Body wrappers for forwarded streams. Frames pass through one by one, as
//! they come (nothing is buffered); only the silence *between* frames is
//! bounded, never a whole LLM stream. On the response side a failure
//! becomes gRPC trailers, so a client sees a status instead of a reset.

use crate::http::{
    BoxError,
    grpc_status::{GrpcCode, status_headers},
};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

/// No frame arrived within the stream idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no frame for {after:?} (edge.stream_idle_timeout)")]
pub struct StreamIdle {
    /// The timeout.
    pub after: Duration,
}

/// The body's next frame if it is ready now (never waits; a body that is
/// not ready has the task's waker).
pub async fn poll_now<B: Body + Unpin>(
    body: &mut B,
) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await
}

pin_project! {
    /// Fails with [`StreamIdle`] when `inner` yields no frame for `idle`.
    /// The timer is armed only when `inner` has to wait: a body whose
    /// frames are all ready (a unary call) never touches the timer wheel,
    /// and a frame costs no clock read; the wait after a frame re-arms it.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
        // Whether `sleep` runs from the current wait (not re-armed yet
        // since the last frame).
        armed: bool,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the clock starts when it first waits for a frame and
    /// restarts at the first wait after every frame.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            armed: false,
            idle,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let sleep = match this.sleep {
                    Some(sleep) if *this.armed => sleep,
                    Some(sleep) => {
                        sleep.as_mut().reset(Instant::now() + *this.idle);
                        sleep
                    }
                    None => this.sleep.insert(Box::pin(tokio::time::sleep(*this.idle))),
                };
                *this.armed = true;
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(StreamIdle { after: *this.idle }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The core's response body as the client sees it: frames and the core's
    /// trailers unchanged; if the core's stream fails or goes idle, gRPC
    /// trailers (`UNAVAILABLE` / `DEADLINE_EXCEEDED`) end it instead.
    pub struct GrpcResponseBody<B> {
        #[pin]
        inner: IdleTimeout<B>,
        done: bool,
    }
}

impl<B> GrpcResponseBody<B> {
    /// Wraps the core's body with the stream idle timeout.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner: IdleTimeout::new(inner, idle),
            done: false,
        }
    }
}

impl<B> Body for GrpcResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => {
                *this.done = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                *this.done = true;
                let (code, message) = match error.downcast_ref::<StreamIdle>() {
                    Some(idle) => (
                        GrpcCode::DeadlineExceeded,
                        format!("the LLM proxy core sent nothing for {:?}", idle.after),
                    ),
                    None => (
                        GrpcCode::Unavailable,
                        "the LLM proxy core ended the stream abnormally".to_owned(),
                    ),
                };
                tracing::warn!(error = %vibectl_proto::wire::error_chain(error.as_ref()), "core stream failed");
                Poll::Ready(Some(Ok(Frame::trailers(status_headers(code, &message)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

/// What a [`WatchedBody`] does beside passing its frames on: one hook per
/// response-side concern (metrics, limits), the polling written once.
pub trait FrameWatch: Send + Unpin + 'static {
    /// Before each poll of the wrapped body: a frame to end the stream with
    /// instead (the wrapped body is dropped), or `None` to go on.
    fn interrupt(&mut self, _cx: &mut Context<'_>) -> Option<Frame<Bytes>> {
        None
    }

    /// Sees each frame, and the end (`None`), as it passes.
    fn frame(&mut self, frame: Option<&Result<Frame<Bytes>, BoxError>>);
}

/// A response body that shows every frame to its [`FrameWatch`] and
/// drops both the wrapped body and the watch as soon as the stream ends
/// (trailers, an error or the end), so what the watch holds is released
/// then, not when hyper drops the body.
pub struct WatchedBody<W> {
    inner: Option<crate::http::EdgeBody>,
    watch: Option<W>,
}

impl<W: FrameWatch> WatchedBody<W> {
    /// Shows `inner`'s frames to `watch`.
    pub fn new(inner: crate::http::EdgeBody, watch: W) -> Self {
        Self {
            inner: Some(inner),
            watch: Some(watch),
        }
    }

    fn end(&mut self) {
        self.inner = None;
        self.watch = None;
    }
}

impl<W: FrameWatch> Body for WatchedBody<W> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(last) = this.watch.as_mut().and_then(|w| w.interrupt(cx)) {
            this.end();
            return Poll::Ready(Some(Ok(last)));
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(watch) = &mut this.watch {
            watch.frame(frame.as_ref());
        }
        match &frame {
            Some(Ok(f)) if !f.is_trailers() => {}
            _ => this.end(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream};
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn idle_core_stream_ends_with_deadline_exceeded_trailers() {
        let frames = stream::iter(vec![Ok::<_, BoxError>(Frame::data(Bytes::from_static(
            b"one",
        )))])
        .chain(stream::pending());
        let mut body = Box::pin(GrpcResponseBody::new(
            StreamBody::new(frames),
            Duration::from_secs(5),
        ));
        let first = body.frame().await.expect("frame").expect("ok");
        assert_eq!(first.into_data().expect("data"), "one");
        let started = Instant::now();
        let last = body.frame().await.expect("frame").expect("ok");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let trailers = last.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "4");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_but_steady_stream_is_never_cut() {
        let ticks = stream::unfold(0u32, |n| async move {
            if n == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
            Some((
                Ok::<_, BoxError>(Frame::data(Bytes::from(n.to_string()))),
                n + 1,
            ))
        });
        let body = GrpcResponseBody::new(StreamBody::new(ticks), Duration::from_secs(5));
        let collected = body.collect().await.expect("whole stream");
        assert_eq!(collected.to_bytes(), "0123456789");
    }

    #[tokio::test]
    async fn core_failure_becomes_unavailable_trailers() {
        let frames = stream::iter(vec![Err::<Frame<Bytes>, BoxError>("reset".into())]);
        let mut body = Box::pin(GrpcResponseBody::new(
            StreamBody::new(frames),
            Duration::from_secs(5),
        ));
        let last = body.frame().await.expect("frame").expect("ok");
        assert_eq!(last.into_trailers().expect("trailers")["grpc-status"], "14");
    }
}
