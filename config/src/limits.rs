//! `[limits]` and `[metrics]`: per-token limits (enforced by the edge, and by
//! the core for input length) and the Prometheus endpoints.

use crate::{
    defaults,
    quota::{QuotaSet, Tokens, Usd},
    secret::Secret,
};
use serde::Deserialize;
use std::{collections::BTreeMap, net::SocketAddr, num::NonZeroU32};

/// Where rate and concurrency state lives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitsBackend {
    /// In this edge process (the default).
    #[default]
    Memory,
    /// In Redis, shared by every edge replica.
    Redis,
}

/// What to do when the Redis backend cannot answer.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackendFailure {
    /// Let the call through (logged and counted).
    #[default]
    FailOpen,
    /// Refuse the call with `UNAVAILABLE` (logged and counted).
    FailClosed,
}

/// One set of limits; every field is optional (absent = unlimited, or for a
/// per-token override: inherit from `[limits.global]`).
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSet {
    /// Requests per minute (GCRA): a token idle for a minute may make this
    /// many calls back to back, then one every `60 s / N`.
    pub max_requests_per_minute: Option<NonZeroU32>,
    /// Requests that may arrive at once; default: the per-minute rate (a
    /// full minute's worth), as vibectl-server allows.
    pub burst: Option<NonZeroU32>,
    /// Calls (streams) in flight at once.
    pub max_concurrent_requests: Option<NonZeroU32>,
    /// Characters of input (system + user fragments).
    pub max_input_length: Option<NonZeroU32>,
    /// Longest a call may take, in seconds.
    pub request_timeout_seconds: Option<NonZeroU32>,
    /// Tokens (input + output) per calendar day (enforced by the core).
    pub max_tokens_per_day: Option<Tokens>,
    /// Tokens (input + output) per calendar month.
    pub max_tokens_per_month: Option<Tokens>,
    /// USD per calendar day, from the models' prices.
    pub max_cost_usd_per_day: Option<Usd>,
    /// USD per calendar month.
    pub max_cost_usd_per_month: Option<Usd>,
    /// `false`: the token and cost budgets run in shadow mode (counted,
    /// reported, logged as "would have refused", never refusing).
    pub enforce: Option<bool>,
}

impl LimitSet {
    /// `self`'s fields where set, else `base`'s.
    pub fn over(&self, base: &LimitSet) -> LimitSet {
        LimitSet {
            max_requests_per_minute: self
                .max_requests_per_minute
                .or(base.max_requests_per_minute),
            burst: self.burst.or(base.burst),
            max_concurrent_requests: self
                .max_concurrent_requests
                .or(base.max_concurrent_requests),
            max_input_length: self.max_input_length.or(base.max_input_length),
            request_timeout_seconds: self
                .request_timeout_seconds
                .or(base.request_timeout_seconds),
            max_tokens_per_day: self.max_tokens_per_day.or(base.max_tokens_per_day),
            max_tokens_per_month: self.max_tokens_per_month.or(base.max_tokens_per_month),
            max_cost_usd_per_day: self.max_cost_usd_per_day.or(base.max_cost_usd_per_day),
            max_cost_usd_per_month: self.max_cost_usd_per_month.or(base.max_cost_usd_per_month),
            enforce: self.enforce.or(base.enforce),
        }
    }

    /// The token and cost budgets of this set.
    pub fn quota(&self) -> QuotaSet {
        QuotaSet {
            max_tokens_per_day: self.max_tokens_per_day,
            max_tokens_per_month: self.max_tokens_per_month,
            max_cost_usd_per_day: self.max_cost_usd_per_day,
            max_cost_usd_per_month: self.max_cost_usd_per_month,
            enforce: self.enforce,
        }
    }

    /// The burst in force for the per-minute rate.
    pub fn effective_burst(&self) -> Option<NonZeroU32> {
        let rpm = self.max_requests_per_minute?;
        Some(self.burst.unwrap_or(rpm))
    }
}

/// `[limits]`. Everything but `backend`, `redis_url` and `redis_key_prefix`
/// is hot: the edge reloads it when the config file changes.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `memory` (default) or `redis`.
    pub backend: LimitsBackend,
    /// Redis URL for the `redis` backend, e.g. `redis://127.0.0.1:6379/0`
    /// (it may hold a password: treated as a secret).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key.
    pub redis_key_prefix: Option<String>,
    /// `fail_open` (default) or `fail_closed` when Redis cannot answer.
    pub on_backend_failure: BackendFailure,
    /// Calls in flight at once across all tokens.
    pub max_concurrent_total: Option<NonZeroU32>,
    /// Limits of every token (vibectl-server's name for them).
    pub global: LimitSet,
    /// Overrides by JWT `sub` (or `kid`), field by field over `global`.
    pub per_token: BTreeMap<String, LimitSet>,
    /// Token and cost budgets of a model's whole spend (all callers), by
    /// model id.
    pub per_model: BTreeMap<String, QuotaSet>,
}

impl LimitsConfig {
    /// `redis_key_prefix`, or its default.
    pub fn key_prefix(&self) -> &str {
        self.redis_key_prefix
            .as_deref()
            .unwrap_or(defaults::REDIS_KEY_PREFIX)
    }

    /// The limits that apply to `sub` (or its `kid`).
    pub fn for_token(&self, sub: &str, kid: Option<&str>) -> LimitSet {
        let over = self
            .per_token
            .get(sub)
            .or_else(|| kid.and_then(|k| self.per_token.get(k)));
        match over {
            Some(o) => o.over(&self.global),
            None => self.global,
        }
    }
}

/// `[metrics]`: Prometheus text on `/metrics` (unauthenticated: keep it on
/// loopback or a private network).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` (the edge on its admin listener, the core on `core_listen`).
    pub enabled: bool,
    /// The core's metrics listener.
    pub core_listen: SocketAddr,
    /// Distinct `sub` label values before further subjects collapse into `other`.
    pub max_subjects: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            core_listen: defaults::CORE_METRICS_LISTEN
                .parse()
                .expect("valid default address"),
            max_subjects: defaults::METRICS_MAX_SUBJECTS,
        }
    }
}
