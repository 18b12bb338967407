//! Token and cost quotas: the budget types of `[limits.global]`,
//! `[limits.per_token."…"]` and `[limits.per_model."…"]`, and `[quota]`
//! (the time zone of the calendar windows, how long a reservation lives).

use crate::defaults;
use serde::{Deserialize, Deserializer, de};
use std::{fmt, time::Duration};

/// Nano-USD in one USD.
pub const NANOS_PER_USD: f64 = 1e9;

/// An amount of US dollars, kept as whole nano-dollars so that sums are
/// exact and budgets compare as integers. Written as a number of USD
/// (`5`, `12.5`); negative, non-finite and non-numeric values are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Usd(u64);

impl Usd {
    /// `nanos` nano-dollars.
    pub fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }
    /// Whole nano-dollars.
    pub fn nanos(self) -> u64 {
        self.0
    }
    /// As a float number of USD.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD
    }
    /// `usd` rounded to the nano-dollar; `None` when negative or not finite.
    pub fn from_f64(usd: f64) -> Option<Self> {
        (usd.is_finite() && usd >= 0.0).then(|| Self((usd * NANOS_PER_USD).round() as u64))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of USD >= 0, e.g. 5 or 12.5")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Usd, E> {
                Usd::from_f64(v).ok_or_else(|| {
                    E::custom(format!(
                        "{v} is not a budget: expected a number of USD >= 0"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Usd, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Usd, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A token budget: a whole number of tokens >= 0 (a negative or
/// fractional value is refused with the key named).
pub type Tokens = u64;

/// The budgets of one model's whole spend (`[limits.per_model."<id>"]`),
/// all callers together.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaSet {
    /// Tokens (input + output) per calendar day.
    pub max_tokens_per_day: Option<Tokens>,
    /// Tokens (input + output) per calendar month.
    pub max_tokens_per_month: Option<Tokens>,
    /// USD per calendar day (from the model's prices).
    pub max_cost_usd_per_day: Option<Usd>,
    /// USD per calendar month.
    pub max_cost_usd_per_month: Option<Usd>,
    /// `false`: shadow mode (count, report, never refuse). Default `true`.
    pub enforce: Option<bool>,
}

impl QuotaSet {
    /// True when no budget is set.
    pub fn is_empty(&self) -> bool {
        self.max_tokens_per_day.is_none()
            && self.max_tokens_per_month.is_none()
            && self.max_cost_usd_per_day.is_none()
            && self.max_cost_usd_per_month.is_none()
    }

    /// `self`'s fields where set, else `base`'s.
    pub fn over(&self, base: &QuotaSet) -> QuotaSet {
        QuotaSet {
            max_tokens_per_day: self.max_tokens_per_day.or(base.max_tokens_per_day),
            max_tokens_per_month: self.max_tokens_per_month.or(base.max_tokens_per_month),
            max_cost_usd_per_day: self.max_cost_usd_per_day.or(base.max_cost_usd_per_day),
            max_cost_usd_per_month: self.max_cost_usd_per_month.or(base.max_cost_usd_per_month),
            enforce: self.enforce.or(base.enforce),
        }
    }
}

/// `[quota]`: how the token and cost budgets of `[limits]` are kept. The
/// counters live where `[limits] backend` says (memory, or Redis shared by
/// every core replica).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// IANA time zone of the calendar day and month, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// How long a reservation lives if its call never ends (a crashed
    /// core): after this it no longer counts against any budget.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// With a shared (Redis) backend: a replica leases this many calls'
    /// worth of a budget at once and reserves later calls from the lease
    /// in memory, while the budget is far from its limit. 0: no leases.
    pub lease_calls: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            time_zone: defaults::QUOTA_TIME_ZONE.to_owned(),
            reservation_ttl: defaults::QUOTA_RESERVATION_TTL,
            lease_calls: defaults::QUOTA_LEASE_CALLS,
        }
    }
}

/// Checks what serde cannot: the time zone exists, `per_model` names
/// configured models, the reservation TTL is not zero.
pub(crate) fn validate(cfg: &crate::Config) -> Result<(), (String, String)> {
    if jiff::tz::TimeZone::get(&cfg.quota.time_zone).is_err() {
        return Err((
            "quota.time_zone".into(),
            format!(
                "`{}` is not a known IANA time zone (e.g. UTC, Europe/Berlin)",
                cfg.quota.time_zone
            ),
        ));
    }
    if cfg.quota.reservation_ttl.is_zero() {
        return Err(("quota.reservation_ttl".into(), "must be > 0".into()));
    }
    for model in cfg.limits.per_model.keys() {
        if !cfg.models.iter().any(|m| &m.id == model) {
            let known: Vec<_> = cfg.models.iter().map(|m| m.id.as_str()).collect();
            return Err((
                format!("limits.per_model.{model}"),
                format!(
                    "`{model}` is not a model id in [[models]] (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
