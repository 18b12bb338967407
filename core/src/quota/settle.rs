//! What a call leaves behind when it ends, however it ends: its quota
//! reservation replaced by the tokens and cost it used, and one ledger
//! row. [`crate::accounting::CallRecord`] calls [`CallUsage::finish`] once.

use super::{Reservation, nanos};
use crate::{
    ledger::{CallRow, Ledger, Text},
    registry::ModelEntry,
};
use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Who made the call, as the edge passed it (`x-vibectl-caller`: `sub`,
/// `kid`, `jti`).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The token's `sub` (`-` without one).
    pub sub: String,
    /// The key id that verified it.
    pub kid: Option<String>,
    /// The token's `jti`.
    pub jti: Option<String>,
}

/// A call's quota reservation and ledger handle.
#[derive(Debug, Default)]
pub(crate) struct CallUsage {
    pub(crate) ledger: Option<Arc<Ledger>>,
    pub(crate) reservation: Option<Reservation>,
    pub(crate) request_id: String,
    pub(crate) method: &'static str,
    pub(crate) identity: Identity,
}

/// How a call ended.
#[derive(Debug)]
pub(crate) struct Ending<'a> {
    /// `ok`, `failed`, `refused`, `cancelled`, `deadline_exceeded`.
    pub(crate) outcome: &'static str,
    /// The status or in-band code.
    pub(crate) status: Cow<'static, str>,
    pub(crate) model: Option<&'a Arc<ModelEntry>>,
    /// Tokens charged, `None` when nothing was billed.
    pub(crate) tokens: Option<(u32, u32)>,
    /// A count is the core's estimate.
    pub(crate) estimated: bool,
    pub(crate) duration: Duration,
}

impl CallUsage {
    /// Settles the reservation and records the row (once; the row copies
    /// the call's strings inline, which are freed here, on the call's
    /// thread, with the call).
    pub(crate) fn finish(&mut self, e: &Ending<'_>) {
        let (input, output) = e.tokens.unwrap_or((0, 0));
        let cost = match (e.model, e.tokens) {
            (Some(m), Some(_)) => nanos(m.cost_usd(input, output)),
            _ => 0,
        };
        if let Some(r) = self.reservation.take() {
            r.settle(u64::from(input) + u64::from(output), cost);
        }
        let Some(ledger) = &self.ledger else { return };
        ledger.record(CallRow {
            ts_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            request_id: Text::new(&self.request_id),
            sub: Text::new(&self.identity.sub),
            kid: self.identity.kid.as_deref().map(Text::new),
            jti: self.identity.jti.as_deref().map(Text::new),
            model: e.model.cloned(),
            method: self.method,
            input_tokens: input,
            output_tokens: output,
            estimated: e.tokens.is_some() && e.estimated,
            cost_nanousd: i64::try_from(cost).unwrap_or(i64::MAX),
            duration_ms: i64::try_from(e.duration.as_millis()).unwrap_or(i64::MAX),
            outcome: e.outcome,
            status: e.status.clone(),
        });
    }
}
