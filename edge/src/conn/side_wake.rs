//! A future polled beside a connection only when it was woken itself:
//! the connection's close signals and watchdog ([`super::lifecycle`]) and
//! its keepalive PINGs ([`super::h2_serve`]). The connection task is woken
//! a few times per call; `tokio::select!` would poll every branch each
//! time (issue 17: some 2,000 instructions per call at one stream for
//! futures that fire once per connection, if ever). Like the per-future
//! wakers of `FuturesUnordered`, the side future gets a waker of its own
//! that marks it, then wakes the task.

use futures::task::AtomicWaker;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

/// See the module doc.
pub(crate) struct SideWake {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    task: AtomicWaker,
    woken: AtomicBool,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl SideWake {
    /// Marked as woken: the first call polls.
    pub(crate) fn new() -> Self {
        let flag = Arc::new(Flag {
            task: AtomicWaker::new(),
            woken: AtomicBool::new(true),
        });
        let waker = Waker::from(flag.clone());
        Self { flag, waker }
    }

    /// Runs `poll` with the side waker when that waker fired since the
    /// last run (or it never ran); else `Pending` without running it.
    pub(crate) fn poll_if_woken<T>(
        &self,
        cx: &Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        poll(&mut Context::from_waker(&self.waker))
    }
}

/// A waker that counts its wake-ups (for the tests of the wakers above).
#[cfg(test)]
pub(crate) mod counting {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    pub(crate) struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        pub(crate) fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// The counter and a waker that bumps it.
    pub(crate) fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }
}

#[cfg(test)]
mod tests {
    use super::{counting, *};

    #[test]
    fn runs_first_then_only_after_its_own_waker_fired() {
        let (count, task) = counting::waker();
        let cx = Context::from_waker(&task);
        let side = SideWake::new();
        let saved = std::cell::RefCell::new(Vec::new());
        let poll = |cx: &mut Context<'_>| {
            saved.borrow_mut().push(cx.waker().clone());
            Poll::<()>::Pending
        };
        assert!(side.poll_if_woken(&cx, poll).is_pending());
        assert!(side.poll_if_woken(&cx, poll).is_pending());
        assert_eq!(saved.borrow().len(), 1, "not woken: not run again");
        let waker = saved.borrow()[0].clone();
        waker.wake();
        assert_eq!(count.get(), 1, "the task was woken");
        assert!(side.poll_if_woken(&cx, poll).is_pending());
        assert_eq!(saved.borrow().len(), 2, "woken: run again");
    }
}
