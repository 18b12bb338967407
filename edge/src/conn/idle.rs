//! The order in which idle connections are closed at a cap, kept so that
//! choosing one costs O(1) amortised instead of a scan of every
//! connection (10,000 of them under attack, at every new connection).
//!
//! One FIFO queue per eviction class (see [`super::ConnState`]): a
//! connection is pushed, with a new generation number, each time it
//! becomes idle (accepted, set-up done, last stream ended), so each queue
//! is in order of last activity. An entry is valid while its connection is
//! still open, idle and has the same generation (at most one valid entry
//! per connection); stale ones are dropped when they reach the front, or
//! in a compaction when a queue grows past twice the connections it can
//! hold (amortised O(1) per push). A connection that is already the back
//! entry has its generation updated there instead (its place in the order
//! is the same): one connection making call after call pushes nothing and
//! never compacts (issue 17: some 300 instructions per call).

use std::collections::VecDeque;

/// Eviction classes, first closed first.
pub(crate) const CLASSES: usize = 3;

/// Whether the entry `(id, generation)` still describes its connection.
pub(crate) trait Valid: Fn(u64, u64) -> bool {}
impl<F: Fn(u64, u64) -> bool> Valid for F {}

/// See the module doc.
#[derive(Debug, Default)]
pub(crate) struct IdleQueues([VecDeque<(u64, u64)>; CLASSES]);

impl IdleQueues {
    /// Connection `id` became idle in `class` (its generation `generation`);
    /// `live`: how many connections these queues can hold entries of.
    pub(crate) fn push(
        &mut self,
        class: u8,
        id: u64,
        generation: u64,
        live: usize,
        valid: impl Valid,
    ) {
        let Some(queue) = self.0.get_mut(usize::from(class)) else {
            return;
        };
        if let Some(back) = queue.back_mut()
            && back.0 == id
        {
            back.1 = generation;
            return;
        }
        queue.push_back((id, generation));
        if queue.len() > 2 * live + 32 {
            queue.retain(|&(id, generation)| valid(id, generation));
        }
    }

    /// Removes and returns the first valid entry's connection: the idle
    /// one of the first class that has one, idle the longest.
    pub(crate) fn pop_oldest(&mut self, valid: impl Valid) -> Option<u64> {
        for queue in &mut self.0 {
            while let Some((id, generation)) = queue.pop_front() {
                if valid(id, generation) {
                    return Some(id);
                }
            }
        }
        None
    }

    /// Entries held (valid or not).
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(VecDeque::len).sum()
    }
}
