//! A memory backend's used amounts from the usage ledger. At start the
//! counters are empty; after a reload they may lack calls: the memory
//! backend counts a call only in the budgets in force when it ran, so a
//! budget added (or removed and added again) by a reload would start from
//! the calls after it. Each counter is raised to at least the ledger's
//! total of its window, never lowered: calls settled but not yet written
//! to the ledger keep counting.

use super::{
    memory::MemoryBackend,
    policy::{Period, Policy, Unit, Window, counter_key},
};
use crate::ledger::{LedgerError, LedgerStore};
use jiff::Timestamp;
use std::{collections::HashMap, sync::Arc};

/// What a reload needs to restore the counters of the budgets it adds.
#[derive(Debug, Clone)]
pub(crate) struct Restorer {
    pub memory: Arc<MemoryBackend>,
    pub store: Arc<dyn LedgerStore>,
}

/// Raises each of `memory`'s counters of this day and month, per `sub`
/// and per model, to the ledger's total.
pub(crate) async fn restore(
    memory: &MemoryBackend,
    store: &dyn LedgerStore,
    policy: &Policy,
) -> Result<(), LedgerError> {
    let now = Timestamp::now();
    let mut restored = 0usize;
    for period in [Period::Day, Period::Month] {
        let window = Window::of(period, now, &policy.tz);
        let expire_at = window.resets.as_second() + super::KEEP_AFTER_WINDOW_SECS;
        let totals = store.totals(window.starts.as_millisecond()).await?;
        // The ledger's groups are (sub, model): a sub's counter sums its models.
        let mut sums: HashMap<String, u64> = HashMap::new();
        for t in &totals {
            for scope in [format!("sub:{}", t.sub), format!("model:{}", t.model)] {
                for (unit, amount) in [(Unit::Tokens, t.tokens), (Unit::Cost, t.cost_nanousd)] {
                    let sum = sums
                        .entry(counter_key(&scope, unit, period, &window.label))
                        .or_default();
                    *sum = sum.saturating_add(amount);
                }
            }
        }
        for (key, total) in &sums {
            memory.raise_used(key, *total, expire_at);
        }
        restored = restored.max(totals.len());
    }
    tracing::info!(
        store = store.name(),
        groups = restored,
        "quota counters restored from the usage ledger"
    );
    Ok(())
}
