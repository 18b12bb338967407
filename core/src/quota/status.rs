//! `vibectl-core quota status`: each budget's used, reserved and limit in
//! its current window, and when it resets.

use super::{
    backend::{BackendError, QuotaBackend},
    policy::{Budget, Policy, Unit},
};
use jiff::Timestamp;
use serde::Serialize;
use vibectl_config::Usd;

/// One budget's state.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// `token \`alice\`` or `model \`gpt-4o\``.
    pub owner: String,
    /// The config key, e.g. `max_tokens_per_day`.
    pub budget: &'static str,
    /// The window, e.g. `2026-12-06`.
    pub window: String,
    /// Settled use (tokens, or USD for cost budgets).
    pub used: f64,
    /// Open reservations.
    pub reserved: f64,
    /// The limit.
    pub limit: f64,
    /// `false`: shadow mode.
    pub enforce: bool,
    /// When the window resets (RFC 3339, UTC).
    pub resets_at: String,
}

/// The state of every budget of `subs` and `models` now.
pub async fn status_rows(
    policy: &Policy,
    backend: &dyn QuotaBackend,
    subs: &[String],
    models: &[String],
) -> Result<Vec<StatusRow>, BackendError> {
    let now = Timestamp::now();
    let budgets: Vec<Budget> = subs
        .iter()
        .flat_map(|s| policy.caller_budgets(s, None, now))
        .chain(models.iter().flat_map(|m| policy.model_budgets(m, now)))
        .collect();
    let keys: Vec<String> = budgets.iter().map(|b| b.key.to_string()).collect();
    let counts = backend.counts(&keys).await?;
    Ok(budgets
        .into_iter()
        .zip(counts)
        .map(|(b, c)| {
            let show = |n: u64| match b.unit {
                Unit::Tokens => n as f64,
                Unit::Cost => Usd::from_nanos(n).as_f64(),
            };
            StatusRow {
                owner: b.owner.clone(),
                budget: b.name,
                window: b.window.label.clone(),
                used: show(c.used),
                reserved: show(c.reserved),
                limit: show(b.limit),
                enforce: b.enforce,
                resets_at: b.window.resets.to_string(),
            }
        })
        .collect())
}
