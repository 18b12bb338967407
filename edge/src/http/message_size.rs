//! The request-size check: before forwarding, read the first gRPC message's
//! 5-byte prefix (compressed flag, 4-byte big-endian length) and refuse a
//! message over `edge.max_message_bytes` with `RESOURCE_EXHAUSTED` and
//! `limit-type: message_size`, so it never reaches the core. The bytes
//! read are handed on unchanged, ahead of the rest of the body. (The
//! service's three RPCs each send one request message.)

use crate::http::{
    BoxError, EdgeBody,
    body::poll_now,
    grpc_status::{GrpcCode, response},
};
use bytes::Bytes;
use futures::future::Either;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::{
    collections::VecDeque,
    future::{Future, Ready, ready},
    num::NonZeroU32,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};
use tower::{Layer, Service, ServiceExt, util::Oneshot};
use vibectl_proto::wire::{LIMIT_TYPE, LimitType};

/// Length of a gRPC message prefix.
const PREFIX: usize = 5;

/// The layer: `max` bytes per message; `idle` bounds the wait for the
/// first message's prefix.
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    max: NonZeroU32,
    idle: Duration,
}

impl MessageSizeLayer {
    /// A check of every request's first message against `max` bytes.
    pub fn new(max: NonZeroU32, idle: Duration) -> Self {
        Self { max, idle }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> MessageSize<S> {
        MessageSize {
            inner,
            max: self.max,
            idle: self.idle,
        }
    }
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
    max: NonZeroU32,
    idle: Duration,
}

/// An answer made at once (a refusal, or the body's error).
type Answer = Ready<Result<Response<EdgeBody>, BoxError>>;
/// A call whose prefix has not come yet.
type Waiting = Pin<Box<dyn Future<Output = Result<Response<EdgeBody>, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for MessageSize<S>
where
    S: Service<Request<Replayed<B>>, Response = Response<EdgeBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<EdgeBody>;
    type Error = BoxError;
    /// When the first frame is there with the whole prefix (a unary
    /// call), the check is made in `call` and the inner call's future is
    /// this one's (no box, no async block per call).
    type Future = Either<Answer, Either<Oneshot<S, Request<Replayed<B>>>, Waiting>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service is made ready in `call`, after the check.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (max, idle) = (self.max, self.idle);
        let (parts, mut body) = request.into_parts();
        // The frames read, and the prefix in place: a unary call's first
        // frame holds it, and costs no allocation. A frame already there
        // is taken now (polled without a waker: the future below polls
        // again, with the task's, if it is not).
        let mut prefix = Prefix::default();
        let now = Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(frame) = now
            && let Err(error) = prefix.take(frame.map(|f| f.map_err(Into::into)))
        {
            return Either::Left(ready(Err(error)));
        }
        if prefix.complete() {
            if let Some(answer) = prefix.refusal(max) {
                return Either::Left(ready(Ok(answer)));
            }
            let request = Request::from_parts(parts, prefix.read.then(body));
            return Either::Right(Either::Left(inner.oneshot(request)));
        }
        Either::Right(Either::Right(Box::pin(async move {
            while !prefix.complete() {
                // A frame already there is taken without arming a timer.
                let boxed = |f: Option<Result<Frame<Bytes>, B::Error>>| {
                    f.map(|r| r.map_err(Into::<BoxError>::into))
                };
                let now = poll_now(&mut body).await.map(boxed);
                let frame = match now {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => match tokio::time::timeout(idle, body.frame()).await {
                        Ok(frame) => boxed(frame),
                        Err(_) => {
                            return Ok(response(
                                GrpcCode::DeadlineExceeded,
                                &format!("no request message within {idle:?}"),
                            ));
                        }
                    },
                };
                prefix.take(frame)?;
            }
            if let Some(answer) = prefix.refusal(max) {
                return Ok(answer);
            }
            let request = Request::from_parts(parts, prefix.read.then(body));
            inner.oneshot(request).await
        })))
    }
}

/// The request's first frames, read until the first message's prefix is
/// complete or the body ends.
#[derive(Default)]
struct Prefix {
    read: Read,
    head: [u8; PREFIX],
    filled: usize,
    ended: bool,
}

impl Prefix {
    /// Takes the body's next frame (`None`: the body ended).
    fn take(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Result<(), BoxError> {
        match frame {
            None => self.ended = true,
            Some(Err(error)) => return Err(error),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len().min(PREFIX - self.filled);
                    self.head[self.filled..self.filled + n].copy_from_slice(&data[..n]);
                    self.filled += n;
                }
                self.ended = !frame.is_data();
                self.read.push(frame);
            }
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.filled == PREFIX || self.ended
    }

    /// The refusal of a first message over `max` bytes, if it is.
    fn refusal(&self, max: NonZeroU32) -> Option<Response<EdgeBody>> {
        let length = message_length(&self.head[..self.filled])?;
        (length > max.get()).then(|| too_large(length, max))
    }
}

/// The length in a complete prefix at the start of `head`.
fn message_length(head: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = head.get(1..PREFIX)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// `RESOURCE_EXHAUSTED`, `limit-type: message_size` (no `retry-after-ms`:
/// waiting does not make the message smaller).
fn too_large(length: u32, max: NonZeroU32) -> Response<EdgeBody> {
    tracing::info!(
        length,
        max,
        "refused: request message over edge.max_message_bytes"
    );
    let mut r = response(
        GrpcCode::ResourceExhausted,
        &format!(
            "request message of {length} bytes is over the maximum of {max} bytes \
             (edge.max_message_bytes)"
        ),
    );
    r.headers_mut().insert(
        LIMIT_TYPE,
        HeaderValue::from_static(LimitType::MessageSize.as_str()),
    );
    r
}

/// A body whose first frames were already read: those, then the rest.
#[derive(Debug)]
pub struct Replayed<B> {
    /// The first frame read (nearly always the only one).
    first: Option<Frame<Bytes>>,
    /// Any more read (a prefix split over frames).
    more: VecDeque<Frame<Bytes>>,
    rest: B,
}

/// The frames read so far, before the rest of the body is known.
#[derive(Default)]
struct Read {
    first: Option<Frame<Bytes>>,
    more: VecDeque<Frame<Bytes>>,
}

impl Read {
    fn push(&mut self, frame: Frame<Bytes>) {
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(frame);
        } else {
            self.more.push_back(frame);
        }
    }

    /// These frames, then `rest`.
    fn then<B>(self, rest: B) -> Replayed<B> {
        Replayed {
            first: self.first,
            more: self.more,
            rest,
        }
    }
}

impl<B> Body for Replayed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(frame) = self.first.take().or_else(|| self.more.pop_front()) {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.more.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.first.is_none() && self.more.is_empty() {
            self.rest.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn message(len: u32) -> Bytes {
        let mut b = bytes::BytesMut::from(&[0u8][..]);
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&vec![b'x'; len as usize]);
        b.freeze()
    }

    async fn run(body: Bytes, max: u32) -> (Response<EdgeBody>, Option<Bytes>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let store = seen.clone();
        let inner = tower::service_fn(move |r: Request<Replayed<Full<Bytes>>>| {
            let store = store.clone();
            async move {
                let bytes = r.into_body().collect().await.expect("body").to_bytes();
                *store.lock().expect("lock") = Some(bytes);
                Ok::<_, BoxError>(response(GrpcCode::Cancelled, "forwarded"))
            }
        });
        let layer =
            MessageSizeLayer::new(NonZeroU32::new(max).expect("nz"), Duration::from_secs(1));
        let r = layer
            .layer(inner)
            .oneshot(Request::new(Full::new(body)))
            .await
            .expect("answer");
        let forwarded = seen.lock().expect("lock").take();
        (r, forwarded)
    }

    #[tokio::test]
    async fn over_the_maximum_is_refused_before_forwarding() {
        let (r, forwarded) = run(message(101), 100).await;
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()[LIMIT_TYPE], "message_size");
        assert!(forwarded.is_none());
    }

    #[tokio::test]
    async fn within_the_maximum_is_forwarded_unchanged() {
        let (r, forwarded) = run(message(100), 100).await;
        assert_eq!(r.headers()["grpc-status"], "1", "the inner answer");
        assert_eq!(forwarded, Some(message(100)));
    }

    #[tokio::test]
    async fn a_prefix_split_over_frames_is_read_and_replayed() {
        let whole = message(50);
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(whole.slice(0..2))),
            Ok(Frame::data(whole.slice(2..))),
        ];
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let store = seen.clone();
        let inner = tower::service_fn(move |r: Request<Replayed<_>>| {
            let store = store.clone();
            async move {
                let bytes = r.into_body().collect().await?.to_bytes();
                *store.lock().expect("lock") = Some(bytes);
                Ok::<_, BoxError>(response(GrpcCode::Cancelled, "forwarded"))
            }
        });
        let body = StreamBody::new(futures::stream::iter(chunks));
        let layer = MessageSizeLayer::new(NonZeroU32::new(40).expect("nz"), Duration::from_secs(1));
        let r = layer
            .layer(inner)
            .oneshot(Request::new(body))
            .await
            .expect("answer");
        assert_eq!(r.headers()["grpc-status"], "8", "50 > 40");
        assert!(seen.lock().expect("lock").is_none());
    }
}
