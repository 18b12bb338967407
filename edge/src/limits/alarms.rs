//! The deadline backstop's timer, one for every call of a limits layer: a
//! call registers an [`Alarm`] (a slot holding its time and its waker,
//! under one lock) and one sweeper task sleeps until the earliest time
//! registered, then wakes the calls whose time has come. A tokio timer per
//! call (a boxed `Sleep`, its insertion in the timer wheel and its removal)
//! cost some 900 instructions per call (issue 17), for a deadline that
//! nearly every call outlives by minutes.
//!
//! The sweeper does not follow removals: a call that ends leaves its slot,
//! and the sweeper wakes at most once more than needed, at the time the
//! earliest ended call would have been due. Sweeps are at least
//! [`MIN_GAP`] apart, so calls whose deadlines pass one by one are ended
//! in batches (each sweep reads every slot), at most that much late.

use std::{
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

/// The least time between two sweeps.
pub const MIN_GAP: Duration = Duration::from_millis(10);

/// The alarms of one limits layer (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Alarms {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    slots: Mutex<Slots>,
    /// Sweeps that woke a call, so far: an alarm reads the clock only when
    /// this moved since it last looked.
    sweeps: AtomicU64,
    /// An alarm earlier than the sweeper's target was registered (or the
    /// alarms were dropped).
    earlier: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.earlier.notify_one();
    }
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// When the sweeper wakes next (`None`: when an alarm comes).
    target: Option<Instant>,
    sweeper: bool,
}

#[derive(Debug)]
struct Slot {
    at: Instant,
    /// `None`: free, or already woken.
    waker: Option<Waker>,
}

/// One call's alarm: [`Alarm::poll`] is ready once its time has come.
#[derive(Debug)]
pub struct Alarm {
    alarms: Alarms,
    at: Instant,
    /// Its slot and the waker given to it, once polled.
    slot: Option<(usize, Waker)>,
    /// `sweeps` when it last looked.
    seen: u64,
    rang: bool,
}

impl Alarms {
    /// An alarm at `at` (registered when first polled).
    pub fn at(&self, at: Instant) -> Alarm {
        Alarm {
            alarms: self.clone(),
            at,
            slot: None,
            seen: 0,
            rang: false,
        }
    }
}

impl Alarm {
    /// When it rings.
    #[cfg(test)]
    pub fn deadline(&self) -> Instant {
        self.at
    }

    /// Ready once its time has come; else the task is woken then.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.rang {
            return Poll::Ready(());
        }
        let shared = &self.alarms.shared;
        let sweeps = shared.sweeps.load(Ordering::Acquire);
        if sweeps != self.seen || self.slot.is_none() {
            self.seen = sweeps;
            if Instant::now() >= self.at {
                self.rang = true;
                return Poll::Ready(());
            }
        }
        match &mut self.slot {
            Some((_, waker)) if waker.will_wake(cx.waker()) => {}
            Some((key, waker)) => {
                // Polled by another task now: its waker replaces the old
                // one, unless the alarm rang since its sweep count was read
                // (the old waker got that); then this task looks again.
                let mut slots = shared.lock();
                match slots.slots.get_mut(*key) {
                    Some(slot) if slot.waker.is_some() => slot.waker = Some(cx.waker().clone()),
                    _ => cx.waker().wake_by_ref(),
                }
                *waker = cx.waker().clone();
            }
            None => {
                let key = shared.register(self.at, cx.waker().clone(), &self.alarms);
                self.slot = Some((key, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some((key, _)) = self.slot.take() {
            let mut slots = self.alarms.shared.lock();
            if let Some(slot) = slots.slots.get_mut(key) {
                slot.waker = None;
                slots.free.push(key);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `waker` at `at`; the sweeper started, or told, if it
    /// must wake earlier.
    fn register(&self, at: Instant, waker: Waker, alarms: &Alarms) -> usize {
        let mut slots = self.lock();
        let slot = Slot {
            at,
            waker: Some(waker),
        };
        let key = match slots.free.pop() {
            Some(key) => {
                slots.slots[key] = slot;
                key
            }
            None => {
                slots.slots.push(slot);
                slots.slots.len() - 1
            }
        };
        if slots.target.is_none_or(|target| at < target) {
            slots.target = Some(at);
            if std::mem::replace(&mut slots.sweeper, true) {
                self.earlier.notify_one();
            } else {
                let earlier = self.earlier.clone();
                tokio::spawn(sweep(Arc::downgrade(&alarms.shared), earlier));
            }
        }
        key
    }

    /// Wakes every alarm due at `now`; the next target.
    fn ring(&self, now: Instant) -> Option<Instant> {
        let mut slots = self.lock();
        let mut next: Option<Instant> = None;
        let mut rang = false;
        for slot in &mut slots.slots {
            if slot.waker.is_none() {
                continue;
            }
            if slot.at <= now {
                if !rang {
                    rang = true;
                    self.sweeps.fetch_add(1, Ordering::AcqRel);
                }
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            } else if next.is_none_or(|n| slot.at < n) {
                next = Some(slot.at);
            }
        }
        slots.target = next;
        next
    }
}

/// The sweeper: until the alarms are dropped, sleeps until the target (or
/// until an earlier one comes) and rings what is due. It holds no strong
/// reference while it waits, so it ends when the limits layer is dropped.
async fn sweep(shared: Weak<Shared>, earlier: Arc<Notify>) {
    let mut last: Option<Instant> = None;
    loop {
        let target = match shared.upgrade() {
            Some(shared) => shared.lock().target,
            None => return,
        };
        match target {
            Some(at) => {
                let at = last.map_or(at, |last| at.max(last + MIN_GAP));
                tokio::select! {
                    biased;
                    () = earlier.notified() => continue,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => {
                earlier.notified().await;
                continue;
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        last = Some(now);
        shared.ring(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn rings_at_its_time_and_an_earlier_one_first() {
        let alarms = Alarms::default();
        let start = Instant::now();
        let mut late = alarms.at(start + Duration::from_secs(5));
        let mut early = alarms.at(start + Duration::from_secs(2));
        let late_task = tokio::spawn(async move {
            poll_fn(|cx| late.poll(cx)).await;
            Instant::now()
        });
        tokio::task::yield_now().await;
        poll_fn(|cx| early.poll(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let rang = late_task.await.expect("task");
        assert_eq!(rang - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_polled_by_another_task_wakes_that_one() {
        let alarms = Alarms::default();
        let start = Instant::now();
        let mut alarm = alarms.at(start + Duration::from_secs(2));
        assert!(
            alarm
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        let rang = tokio::spawn(async move {
            poll_fn(|cx| alarm.poll(cx)).await;
            Instant::now()
        });
        let at = rang.await.expect("task");
        assert_eq!(at - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_alarm_leaves_its_slot_for_the_next() {
        let alarms = Alarms::default();
        let start = Instant::now();
        let mut first = alarms.at(start + Duration::from_secs(1));
        let waker = Waker::noop();
        assert!(first.poll(&mut Context::from_waker(waker)).is_pending());
        drop(first);
        let mut second = alarms.at(start + Duration::from_secs(3));
        poll_fn(|cx| second.poll(cx)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let slots = alarms.shared.lock();
        assert_eq!(slots.slots.len(), 1, "the freed slot was reused");
    }
}
