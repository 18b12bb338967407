//! A call's open [`Reservation`]: what [`super::Quotas::reserve`] took from
//! each budget, replaced by the actual use when the call settles it (off
//! the call's path), or released, charging nothing, if it is dropped
//! unsettled.

use super::{
    KEEP_AFTER_WINDOW_SECS, Quotas, backend::Settle, budget_sets::BudgetSet, lease::Taken,
};
use std::sync::Arc;

/// A call's open reservation; settle it when the call ends.
#[derive(Debug)]
pub struct Reservation {
    quotas: Arc<Quotas>,
    id: String,
    set: Arc<BudgetSet>,
    /// What it reserved: tokens, and nano-USD (per budget by its unit).
    reserved: (u64, u64),
    /// The leases it was taken from, per budget (`None`: its own, `id`).
    leases: Option<Taken>,
    /// Taken from this replica's leases without a backend step.
    pub(super) local: bool,
    settled: bool,
}

impl Reservation {
    pub(super) fn new(
        quotas: &Arc<Quotas>,
        id: String,
        set: &Arc<BudgetSet>,
        reserved: (u64, u64),
        leases: Option<Taken>,
    ) -> Self {
        Self {
            quotas: quotas.clone(),
            id,
            set: set.clone(),
            reserved,
            leases,
            local: false,
            settled: false,
        }
    }

    /// True when it was taken from this replica's leases without a
    /// backend step.
    #[cfg(feature = "test-support")]
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Replaces the reservation by what the call used (off the call's path).
    pub fn settle(mut self, tokens: u64, cost_nanos: u64) {
        self.settled = true;
        self.finish(tokens, cost_nanos);
    }

    fn finish(&mut self, tokens: u64, cost_nanos: u64) {
        let (res_tokens, res_cost) = self.reserved;
        let lines: Vec<Settle> = self
            .set
            .budgets
            .iter()
            .enumerate()
            .map(|(i, b)| Settle {
                key: b.key.clone(),
                lease: self.leases.as_ref().map(|t| t[i].clone()),
                reserved: b.unit.pick(res_tokens, res_cost),
                actual: b.unit.pick(tokens, cost_nanos),
                expire_at: b.window.resets.as_second() + KEEP_AFTER_WINDOW_SECS,
            })
            .collect();
        // The gauges count this replica's use at once (a call served from
        // a lease never reads the backend's count).
        if self.set.current() {
            for (g, l) in self.set.gauges.iter().zip(&lines) {
                g.settled(l.actual);
            }
        }
        let quotas = self.quotas.clone();
        let id = std::mem::take(&mut self.id);
        quotas.metrics.reservation_closed();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = quotas.backend.settle(&id, &lines).await {
                quotas.metrics.backend_error();
                tracing::warn!(error = %e, "quota settlement failed; the reservation expires on its own");
            }
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            // Not settled by the call (a bug): release it, charge nothing.
            self.finish(0, 0);
        }
    }
}
