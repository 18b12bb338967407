//! One write for every response a connection's streams queued at once.
//!
//! hyper runs each stream of an HTTP/2 connection as its own task, and a
//! stream that queues its response wakes the connection's task to write
//! it. tokio's scheduler runs a task woken by the running one next (its
//! LIFO slot): with 64 calls in flight the connection wrote each response
//! on its own, one `writev` per call, and each write woke the edge (issue
//! 17: a ping-pong of 8-10 µs slices between the edge and the core). So a
//! connection woken while some of its streams are still alive is polled
//! one scheduler turn later, behind the streams already runnable, and
//! writes all their responses at once. With no stream alive (one call at a
//! time, once its stream has answered) it is polled at once, as before.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

/// hyper's executor for one connection's streams: tokio tasks, counted
/// while they live.
#[derive(Clone, Default)]
pub(crate) struct StreamExec {
    alive: Arc<AtomicUsize>,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        // A struct, not an `async` block: the stream's future is moved
        // into the task once, as with hyper's `TokioExecutor`.
        tokio::spawn(Counted {
            stream,
            _alive: Alive::new(self.alive.clone()),
        });
    }
}

pin_project_lite::pin_project! {
    /// A stream's task, counted while it lives.
    struct Counted<F> {
        #[pin]
        stream: F,
        _alive: Alive,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().stream.poll(cx)
    }
}

/// Counts one stream task until it ends (or is dropped).
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's future, polled one turn late while its streams live
/// (see the module doc).
pub(crate) struct AfterStreams<F> {
    conn: F,
    alive: Arc<AtomicUsize>,
    yielded: bool,
}

impl<F> AfterStreams<F> {
    /// `conn`, whose streams run on `exec`.
    pub(crate) fn new(conn: F, exec: &StreamExec) -> Self {
        Self {
            conn,
            alive: exec.alive.clone(),
            yielded: false,
        }
    }
}

impl<F: Future + Unpin> Future for AfterStreams<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.yielded && self.alive.load(Ordering::Relaxed) > 0 {
            // Woken again by itself: the scheduler puts it behind the
            // tasks already runnable, not in its LIFO slot.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        Pin::new(&mut self.conn).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        cell::Cell,
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A connection future that counts its polls.
    fn conn(polls: &Cell<usize>) -> impl Future<Output = ()> + Unpin + '_ {
        std::future::poll_fn(move |_| {
            polls.set(polls.get() + 1);
            Poll::Pending
        })
    }

    #[test]
    fn a_connection_waits_one_turn_only_while_its_streams_live() {
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let cx = &mut Context::from_waker(&waker);
        let exec = StreamExec::default();
        let polls = Cell::new(0);
        let mut after = AfterStreams::new(conn(&polls), &exec);

        // No stream alive (one call at a time, answered): polled at once.
        assert!(Pin::new(&mut after).poll(cx).is_pending());
        assert_eq!((polls.get(), wakes.0.load(Ordering::SeqCst)), (1, 0));

        // A stream alive: the first poll only requeues the task, the next
        // one polls the connection.
        let alive = Alive::new(exec.alive.clone());
        assert!(Pin::new(&mut after).poll(cx).is_pending());
        assert_eq!((polls.get(), wakes.0.load(Ordering::SeqCst)), (1, 1));
        assert!(Pin::new(&mut after).poll(cx).is_pending());
        assert_eq!(polls.get(), 2);

        // The stream ended: polled at once again.
        drop(alive);
        assert!(Pin::new(&mut after).poll(cx).is_pending());
        assert_eq!((polls.get(), wakes.0.load(Ordering::SeqCst)), (3, 1));
    }
}
