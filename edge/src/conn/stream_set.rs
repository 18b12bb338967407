//! The streams in flight on one client connection ([`super::h2_serve`]):
//! a `FuturesUnordered`, each stream polled only when it was woken, plus
//! one anchor that is never ready and never woken. `FuturesUnordered`
//! wakes its own task whenever one call polled as many futures as it
//! holds (its guard against starving the executor), so with one stream in
//! flight, every poll that finds it pending cost the connection task a
//! second, empty poll (issue 17: one of its four polls per call at one
//! stream). The anchor is counted but never polled again, so that wake-up
//! never comes; a stream that wakes itself while polled still makes it
//! yield.

use futures::stream::{FuturesUnordered, StreamExt};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// See the module doc.
pub(crate) struct StreamSet<F> {
    inner: FuturesUnordered<Slot<F>>,
}

enum Slot<F> {
    Stream(F),
    Anchor,
}

impl<F: Future<Output = ()> + Unpin> Future for Slot<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Slot::Stream(stream) => Pin::new(stream).poll(cx),
            Slot::Anchor => Poll::Pending,
        }
    }
}

impl<F> StreamSet<F> {
    pub(crate) fn new() -> Self {
        let inner = FuturesUnordered::new();
        inner.push(Slot::Anchor);
        Self { inner }
    }

    pub(crate) fn push(&mut self, stream: F) {
        self.inner.push(Slot::Stream(stream));
    }
}

impl<F: Future<Output = ()> + Unpin> StreamSet<F> {
    /// Polls the streams that were woken until none is ready.
    pub(crate) fn poll_woken(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(())) = self.inner.poll_next_unpin(cx) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::side_wake::counting;

    #[test]
    fn a_pending_stream_does_not_wake_the_task_and_a_done_one_leaves() {
        let (count, waker) = counting::waker();
        let mut cx = Context::from_waker(&waker);
        let mut set = StreamSet::new();
        set.poll_woken(&mut cx); // the anchor's first and only poll
        let before = count.get();
        set.push(std::future::pending::<()>());
        set.poll_woken(&mut cx);
        assert_eq!(count.get(), before, "no wake-up of its own");
        let mut set = StreamSet::new();
        set.push(std::future::ready(()));
        set.poll_woken(&mut cx);
        assert_eq!(set.inner.len(), 1, "only the anchor is left");
    }
}
