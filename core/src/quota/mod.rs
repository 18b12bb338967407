//! Token and cost quotas, enforced by the core (it sees tokens and prices).
//! Before the provider is called, [`Quotas::reserve`] reserves the input
//! estimate plus the model's maximum output (and their cost) in every
//! budget of the call, atomically in the [`backend`]; a call that does not
//! fit is refused with `RESOURCE_EXHAUSTED`, `limit-type: token` or
//! `cost`, and `retry-after-ms` until the window resets. When the call ends,
//! [`Reservation::settle`] replaces the reservation by the actual use.
//! Budgets in shadow mode (`enforce = false`) count and report, never refuse.

pub mod backend;
mod budget_sets;
pub mod lease;
pub mod memory;
mod metrics;
pub mod policy;
pub mod redis;
mod redis_conn;
mod redis_scripts;
mod refusal;
pub mod reload;
mod reservation;
mod resp;
mod restore;
pub(crate) mod settle;
mod start;
mod status;
#[cfg(test)]
mod windows_test;

pub use metrics::QuotaMetrics;
pub use refusal::code_name;
use refusal::refusal;
pub use reservation::Reservation;
pub(crate) use restore::restore;
pub use settle::Identity;
pub use start::{Usage, start};
#[cfg(feature = "test-support")]
pub use status::StatusRow;
pub use status::status_rows;

use crate::registry::ModelEntry;
use arc_swap::ArcSwap;
use backend::{LeaseRequest, Line, QuotaBackend};
use budget_sets::InForce;
use jiff::Timestamp;
use lease::{LEASE_WINDOW, LeaseBook};
use policy::{Policy, Unit};
use std::{sync::Arc, time::Instant};
use tonic::Status;
use vibectl_config::{BackendFailure, Config, Usd, defaults};

/// Counters are kept this long past their window's end.
const KEEP_AFTER_WINDOW_SECS: i64 = 7 * 24 * 3600;

/// The quota engine of one core.
#[derive(Debug)]
pub struct Quotas {
    /// The policy and the budget sets made under it.
    in_force: ArcSwap<InForce>,
    backend: Arc<dyn QuotaBackend>,
    on_failure: BackendFailure,
    metrics: QuotaMetrics,
    /// This replica's leases of shared budgets.
    leases: LeaseBook,
}

/// Who calls.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The token's `sub` (`-` without one).
    pub sub: &'a str,
    /// The key id that verified it.
    pub kid: Option<&'a str>,
}

impl Quotas {
    /// An engine over `backend`.
    pub fn new(config: &Config, backend: Arc<dyn QuotaBackend>, metrics: QuotaMetrics) -> Self {
        Self {
            in_force: ArcSwap::from_pointee(InForce::new(Policy::from_config(config))),
            backend,
            on_failure: config.limits.on_backend_failure,
            metrics,
            leases: LeaseBook::default(),
        }
    }

    /// Puts a reloaded configuration's budgets in force.
    pub fn reload(&self, config: &Config) {
        let policy = Policy::from_config(config);
        self.metrics.forget_removed(&policy);
        self.in_force.store(Arc::new(InForce::new(policy)));
    }

    /// The policy in force (for tests).
    #[cfg(feature = "test-support")]
    pub fn policy(&self) -> Arc<Policy> {
        self.in_force.load().policy.clone()
    }

    /// The backend (for tests).
    #[cfg(feature = "test-support")]
    pub fn backend(&self) -> &Arc<dyn QuotaBackend> {
        &self.backend
    }

    /// This replica's leases (for tests).
    #[cfg(feature = "test-support")]
    pub fn leases(&self) -> &LeaseBook {
        &self.leases
    }

    /// Gives back the leases that stopped serving calls (all of them
    /// with `all`: at shutdown).
    pub async fn give_back_leases(&self, all: bool) {
        let lines = self.leases.expired((!all).then(Instant::now));
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.backend.settle("", &lines).await {
            self.metrics.backend_error();
            tracing::warn!(error = %e, "giving quota leases back failed; they expire on their own");
        }
    }

    /// Reserves what a call to `model` may use, or the status refusing it.
    /// `None`: no budget applies (or the backend failed open).
    pub async fn reserve(
        self: &Arc<Self>,
        caller: Caller<'_>,
        model: &ModelEntry,
        input_estimate: u32,
    ) -> Result<Option<Reservation>, Status> {
        self.reserve_at(caller, model, input_estimate, Timestamp::now())
            .await
    }

    /// [`Quotas::reserve`] counting in the calendar windows that hold `now`
    /// (the core's clock; a test's fixed instant).
    pub async fn reserve_at(
        self: &Arc<Self>,
        caller: Caller<'_>,
        model: &ModelEntry,
        input_estimate: u32,
        now: Timestamp,
    ) -> Result<Option<Reservation>, Status> {
        let in_force = self.in_force.load();
        let policy = &*in_force.policy;
        if policy.is_empty() {
            return Ok(None);
        }
        let set = in_force.budgets(&self.metrics, caller.sub, caller.kid, &model.id, now);
        let budgets = &set.budgets;
        if budgets.is_empty() {
            return Ok(None);
        }
        let max_output = model
            .max_output_tokens
            .unwrap_or(defaults::MAX_OUTPUT_TOKENS);
        let tokens = u64::from(input_estimate) + u64::from(max_output);
        let cost = nanos(model.cost_usd(input_estimate, max_output));
        let lines: Vec<Line> = budgets
            .iter()
            .map(|b| Line {
                key: b.key.clone(),
                limit: b.limit,
                amount: b.unit.pick(tokens, cost),
                enforce: b.enforce,
            })
            .collect();
        // The lease path: this replica's leases hold room for every line.
        let lease_calls = match self.backend.leases() {
            true => policy.lease_calls,
            false => 0,
        };
        if lease_calls > 0
            && let Some(taken) = self.leases.take(&lines, Instant::now())
        {
            self.metrics.reservation_opened();
            let mut r = Reservation::new(self, String::new(), &set, (tokens, cost), Some(taken));
            r.local = true;
            return Ok(Some(r));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let ask = (lease_calls > 0).then(|| self.leases.ask(&lines));
        let lease = LeaseRequest {
            ttl: policy.reservation_ttl,
            id: ask
                .as_ref()
                .filter(|a| a.carve)
                .map(|_| Arc::from(format!("L{}", uuid::Uuid::new_v4().simple()))),
            calls: lease_calls,
            hold: policy.reservation_ttl + LEASE_WINDOW,
            give_back: ask
                .as_ref()
                .map(|a| a.give_back.clone())
                .unwrap_or_default(),
        };
        let sent = Instant::now();
        let outcome = match self.backend.reserve_leasing(&id, &lines, &lease).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.metrics.backend_error();
                return match self.on_failure {
                    BackendFailure::FailOpen => {
                        tracing::warn!(error = %e, "quota backend failed: letting the call through (on_backend_failure = fail_open)");
                        Ok(None)
                    }
                    BackendFailure::FailClosed => {
                        tracing::warn!(error = %e, "quota backend failed: refusing the call (on_backend_failure = fail_closed)");
                        Err(Status::unavailable(
                            "the quota backend is unavailable; try again shortly",
                        ))
                    }
                };
            }
        };
        for (g, c) in set.gauges.iter().zip(&outcome.counts) {
            g.observed(c.used);
        }
        if let Some(i) = outcome.refused {
            let b = &budgets[i];
            self.metrics.refused(b.unit, true);
            let c = outcome.counts[i];
            tracing::info!(sub = caller.sub, budget = b.name, owner = %b.owner, used = c.used, reserved = c.reserved, needs = lines[i].amount, limit = b.limit, "refused: quota exhausted");
            // Until the window resets by the clock that chose the window
            // (Redis' clock may differ by the replicas' skew).
            return Err(refusal(policy, b, c, lines[i].amount, now.as_millisecond()));
        }
        for (i, (b, c)) in budgets.iter().zip(&outcome.counts).enumerate() {
            if !b.enforce && c.used + c.reserved + lines[i].amount > b.limit {
                self.metrics.refused(b.unit, false);
                tracing::warn!(sub = caller.sub, budget = b.name, owner = %b.owner, used = c.used, reserved = c.reserved, needs = lines[i].amount, limit = b.limit, "would have refused: quota exhausted (shadow mode, enforce = false)");
            }
        }
        let taken = match (&ask, &lease.id) {
            (Some(ask), Some(lid)) if outcome.leased => {
                let replaced = self.leases.carved(
                    ask,
                    &lines,
                    lid,
                    |l| l.amount.saturating_mul(lease_calls),
                    |i| budgets[i].window.resets.as_second() + KEEP_AFTER_WINDOW_SECS,
                    sent + LEASE_WINDOW,
                );
                if !replaced.is_empty() {
                    let quotas = self.clone();
                    tokio::spawn(async move { quotas.backend.settle("", &replaced).await });
                }
                Some(vec![lid.clone(); lines.len()])
            }
            _ => None,
        };
        self.metrics.reservation_opened();
        Ok(Some(Reservation::new(
            self,
            id,
            &set,
            (tokens, cost),
            taken,
        )))
    }
}

/// Response metadata of `GetServerInfo`: the caller's remaining budgets,
/// `max_tokens_per_day=904;resets=2026-12-07T00:00:00Z, …` (cost in USD).
pub const REMAINING_METADATA: &str = vibectl_proto::wire::QUOTA_REMAINING;

impl Quotas {
    /// The [`REMAINING_METADATA`] value for `caller` (`None` without budgets,
    /// or when the backend cannot answer).
    pub async fn remaining_header(
        &self,
        caller: Caller<'_>,
    ) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
        let in_force = self.in_force.load();
        let budgets = in_force
            .policy
            .caller_budgets(caller.sub, caller.kid, Timestamp::now());
        if budgets.is_empty() {
            return None;
        }
        let keys: Vec<String> = budgets.iter().map(|b| b.key.to_string()).collect();
        let counts = self.backend.counts(&keys).await.ok()?;
        let parts: Vec<String> = budgets
            .iter()
            .zip(counts)
            .map(|(b, c)| {
                let left = b.limit.saturating_sub(c.used + c.reserved);
                let left = match b.unit {
                    Unit::Tokens => left.to_string(),
                    Unit::Cost => Usd::from_nanos(left).to_string(),
                };
                format!("{}={left};resets={}", b.name, b.window.resets)
            })
            .collect();
        parts.join(", ").parse().ok()
    }
}

/// USD as whole nano-dollars (0 when unpriced).
pub fn nanos(usd: Option<f64>) -> u64 {
    usd.and_then(Usd::from_f64).map_or(0, Usd::nanos)
}
