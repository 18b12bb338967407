//! The waker a client connection's `h2` connection gets
//! ([`super::h2_serve`]): it passes wake-ups on to the connection task,
//! except those the task gives itself while it polls its streams. A stream
//! that queues its response frames, or ends, wakes the `h2` connection so
//! that it flushes; but the task polls the connection right after its
//! streams in the same poll, so that wake-up would only cost a second,
//! empty poll of the whole connection after each response (issue 17: with
//! [`super::stream_set`] and the no-op waker of [`super::h2_stream`], 2
//! task polls per call at one stream instead of 4). Dropping it is safe
//! because the connection poll that follows sees everything a dropped
//! wake-up announced: `h2`'s state is behind its mutex and tokio's socket
//! readiness behind its waiter lock, both taken by that poll.

use futures::task::AtomicWaker;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

/// See the module doc.
#[derive(Default)]
pub(crate) struct WakeGate {
    task: AtomicWaker,
    /// The task is polling its streams: wake-ups are dropped.
    held: AtomicBool,
    /// A wake-up was dropped since [`WakeGate::hold`].
    dropped: AtomicBool,
}

impl WakeGate {
    /// A gate and the waker to give the `h2` connection.
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let gate = Arc::new(Self::default());
        let waker = Waker::from(gate.clone());
        (gate, waker)
    }

    /// The task's current waker, and wake-ups dropped from now on.
    pub(crate) fn hold(&self, task: &Waker) {
        self.task.register(task);
        self.dropped.store(false, Ordering::SeqCst);
        self.held.store(true, Ordering::SeqCst);
    }

    /// Wake-ups passed on again; whether one was dropped since
    /// [`WakeGate::hold`] (then the caller must poll the connection).
    pub(crate) fn release(&self) -> bool {
        self.held.store(false, Ordering::SeqCst);
        self.dropped.swap(false, Ordering::SeqCst)
    }
}

impl Wake for WakeGate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.held.load(Ordering::SeqCst) {
            self.dropped.store(true, Ordering::SeqCst);
        } else {
            self.task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::side_wake::counting;

    #[test]
    fn wake_ups_while_held_are_dropped_and_others_reach_the_task() {
        let (count, task) = counting::waker();
        let (gate, waker) = WakeGate::new();
        gate.hold(&task);
        assert!(!gate.release(), "none dropped");
        gate.hold(&task);
        waker.wake_by_ref();
        assert_eq!(count.get(), 0, "held: dropped");
        assert!(gate.release(), "the caller learns of it");
        waker.wake_by_ref();
        assert_eq!(count.get(), 1, "released: passed on");
        gate.hold(&task);
        assert!(!gate.release(), "the next hold starts afresh");
    }
}
