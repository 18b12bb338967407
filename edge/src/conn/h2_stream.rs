//! One HTTP/2 stream of a client connection, polled inside the
//! connection's own task ([`super::h2_serve`]): the service's future, then
//! its response (headers, DATA with flow control, trailers), as hyper's
//! server did in a task of its own per stream. A client RST_STREAM drops
//! the call (and its [`StreamGuard`], counted by the premature-reset
//! guard); a failed response body resets the stream with the reason found
//! in its error chain (`INTERNAL_ERROR` otherwise), as hyper does.

use crate::conn::streams::{ClientReset, GuardedBody, StreamGuard};
use bytes::Bytes;
use h2::{Reason, SendStream, server::SendResponse};
use http::{HeaderValue, Response, header};
use http_body::Body;
use std::{
    cell::RefCell,
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{SystemTime, UNIX_EPOCH},
};

/// One stream in flight: its reply handle and where it stands.
pub(crate) struct StreamTask<F, B> {
    reply: SendResponse<Bytes>,
    state: State<F, B>,
}

enum State<F, B> {
    /// Waiting for the service's response.
    Service {
        call: F,
        guard: Option<StreamGuard>,
    },
    /// Sending the response body; `held` is a chunk waiting for capacity.
    Body {
        body: GuardedBody<B>,
        tx: SendStream<Bytes>,
        held: Option<(Bytes, bool)>,
    },
    Done,
}

impl<F, B> StreamTask<F, B> {
    pub(crate) fn new(reply: SendResponse<Bytes>, call: F, guard: StreamGuard) -> Self {
        Self {
            reply,
            state: State::Service {
                call,
                guard: Some(guard),
            },
        }
    }
}

impl<F, B> Future for StreamTask<F, B>
where
    F: Future<Output = Result<Response<B>, Infallible>> + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Service { call, guard } => {
                    let Poll::Ready(Ok(response)) = Pin::new(call).poll(cx) else {
                        // Not ready: a RST_STREAM from the client drops the call.
                        if let Poll::Ready(reason) = this.reply.poll_reset(cx) {
                            tracing::debug!(?reason, "stream reset by the client");
                            this.state = State::Done;
                            return Poll::Ready(());
                        }
                        return Poll::Pending;
                    };
                    let guard = guard.take().expect("a guard until the response");
                    let reset = response.extensions().get::<ClientReset>().is_some();
                    let (head, body) = response.into_parts();
                    let body = if reset {
                        GuardedBody::reset(body, guard)
                    } else {
                        GuardedBody::new(body, guard)
                    };
                    let mut head = Response::from_parts(head, ());
                    head.headers_mut()
                        .entry(header::DATE)
                        .or_insert_with(date_now);
                    let end = body.is_end_stream();
                    if !end && let Some(length) = body.size_hint().exact() {
                        head.headers_mut()
                            .entry(header::CONTENT_LENGTH)
                            .or_insert_with(|| HeaderValue::from(length));
                    }
                    match this.reply.send_response(head, end) {
                        Ok(_) if end => {
                            this.state = State::Done;
                            return Poll::Ready(());
                        }
                        Ok(mut tx) => {
                            // The waker `poll_reset` left while the call was
                            // pending would fire at the first claim on the
                            // window (h2 wakes it when it assigns capacity),
                            // costing the connection task an empty poll: a
                            // no-op one replaces it. Every `Pending` below
                            // registers this poll's waker again.
                            let noop = &mut Context::from_waker(Waker::noop());
                            if reset_or_pending(&mut tx, noop).is_ready() {
                                tracing::debug!("stream reset by the client");
                                this.state = State::Done;
                                return Poll::Ready(());
                            }
                            this.state = State::Body {
                                body,
                                tx,
                                held: None,
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "cannot send the response");
                            this.reply.send_reset(Reason::INTERNAL_ERROR);
                            this.state = State::Done;
                            return Poll::Ready(());
                        }
                    }
                }
                State::Body { body, tx, held } => {
                    let result = pipe(body, tx, held, cx);
                    if let Poll::Ready(Err(error)) = &result {
                        tracing::debug!(%error, "stream error");
                    }
                    if result.is_ready() {
                        this.state = State::Done;
                        return Poll::Ready(());
                    }
                    return Poll::Pending;
                }
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Sends `body` on `tx` until it ends: each chunk once the stream has send
/// capacity, then the trailers or an empty end-of-stream DATA frame.
fn pipe<B>(
    body: &mut GuardedBody<B>,
    tx: &mut SendStream<Bytes>,
    held: &mut Option<(Bytes, bool)>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    loop {
        if held.is_some() {
            while tx.capacity() == 0 {
                match tx.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                    Poll::Ready(None) => return Poll::Ready(Err(Reason::CANCEL.into())),
                    Poll::Pending => return reset_or_pending(tx, cx),
                }
            }
            let (data, end) = held.take().expect("checked above");
            tx.send_data(data, end)?;
            if end {
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) else {
            return reset_or_pending(tx, cx);
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if data.is_empty() {
                        tx.send_data(data, end)?;
                        if end {
                            return Poll::Ready(Ok(()));
                        }
                    } else {
                        // A minimal claim on the window (hyper's #4003):
                        // h2 raises it to the chunk's length on send.
                        tx.reserve_capacity(1);
                        *held = Some((data, end));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.reserve_capacity(0);
                        tx.send_trailers(trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            },
            Some(Err(error)) => {
                let reason = reason_of(&error);
                tracing::debug!(%error, "response body failed");
                tx.send_reset(reason);
                return Poll::Ready(Err(reason.into()));
            }
            None => {
                tx.send_data(Bytes::new(), true)?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Pending, unless the client reset the stream meanwhile.
fn reset_or_pending(
    tx: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>> {
    match tx.poll_reset(cx) {
        Poll::Ready(Ok(reason)) => Poll::Ready(Err(reason.into())),
        Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        Poll::Pending => Poll::Pending,
    }
}

/// The reset reason for a failed body: an h2 reason in its error chain
/// (as hyper looks), else `INTERNAL_ERROR`.
fn reason_of(error: &(dyn std::error::Error + 'static)) -> Reason {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return reason;
        }
        next = e.source();
    }
    Reason::INTERNAL_ERROR
}

/// `date` for responses, formatted once a second per thread (as hyper).
fn date_now() -> HeaderValue {
    thread_local! {
        static CACHE: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, value)| {
        if *at != secs {
            *at = secs;
            *value = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
        value.clone()
    })
}
