//! An HTTP/2 stream's received body, read with the `h2` crate directly:
//! the request body of a client's stream ([`super::h2_serve`]) and the
//! response body of a call to the core (`http::core_conn`).

use bytes::Bytes;
use h2::{Reason, RecvStream};
use http_body::{Body, Frame, SizeHint};
use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

/// DATA frames (their flow-control window given back as they are read),
/// then the trailers. A RST_STREAM with
/// `NO_ERROR` ends it early without an error (RFC 9113 §8.1).
#[derive(Debug)]
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    length: Option<u64>,
}

impl RecvBody {
    /// `recv`, of `length` bytes when its `content-length` said so.
    pub(crate) fn new(recv: RecvStream, length: Option<u64>) -> Self {
        let length = length.or_else(|| recv.is_end_stream().then_some(0));
        Self {
            recv,
            data_done: false,
            length,
        }
    }
}

/// A clean end for `NO_ERROR` (an early response), else the error.
fn end_or<T>(error: h2::Error) -> Poll<Option<Result<T, h2::Error>>> {
    match error.reason() {
        Some(Reason::NO_ERROR) => Poll::Ready(None),
        _ => Poll::Ready(Some(Err(error))),
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(length) = &mut self.length {
                        *length = length.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return end_or(error),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(error) => end_or(error),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
