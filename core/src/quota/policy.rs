//! Which budgets apply to a call, and the calendar windows they count in:
//! `[limits.global]` / `[limits.per_token."<sub or kid>"]` per caller, and
//! `[limits.per_model."<id>"]` for a model's whole spend. A budget is one
//! counter (a key) with a limit, counted in tokens or nano-USD over a day
//! or a month in `[quota] time_zone`.

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use std::sync::Arc;
use vibectl_config::{Config, LimitsConfig, QuotaSet, Usd};
use vibectl_proto::wire::LimitType;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Tokens, input + output.
    Tokens,
    /// Nano-USD.
    Cost,
}

impl Unit {
    /// The `limit-type` of a refusal.
    pub fn limit_type(self) -> LimitType {
        match self {
            Self::Tokens => LimitType::Token,
            Self::Cost => LimitType::Cost,
        }
    }
    /// Of a call's `tokens` and `cost`, the one this unit counts.
    pub fn pick(self, tokens: u64, cost: u64) -> u64 {
        match self {
            Self::Tokens => tokens,
            Self::Cost => cost,
        }
    }
    fn key(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Cost => "cost",
        }
    }
}

/// The calendar window of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The calendar day.
    Day,
    /// The calendar month.
    Month,
}

impl Period {
    /// `day` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }
}

/// One calendar window: its key part and when it starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `2026-12-06` or `2026-12`.
    pub label: String,
    /// Its first instant.
    pub starts: Timestamp,
    /// The first instant of the next window.
    pub resets: Timestamp,
}

impl Window {
    /// The window of `period` holding `now` in `tz`.
    pub fn of(period: Period, now: Timestamp, tz: &TimeZone) -> Window {
        let date = now.to_zoned(tz.clone()).date();
        let (first, next, label) = match period {
            Period::Day => (date, date.tomorrow().ok(), date.to_string()),
            Period::Month => {
                let first = date.first_of_month();
                let label = format!("{:04}-{:02}", first.year(), first.month());
                (first, first.checked_add(1.month()).ok(), label)
            }
        };
        let start_of = |d: jiff::civil::Date| d.to_zoned(tz.clone()).map(|z| z.timestamp());
        Window {
            label,
            starts: start_of(first).unwrap_or(now),
            resets: next
                .and_then(|d| start_of(d).ok())
                .unwrap_or(Timestamp::MAX),
        }
    }
}

/// One budget that applies to a call.
#[derive(Debug, Clone)]
pub struct Budget {
    /// The counter's key (without the backend's prefix), e.g.
    /// `sub:alice:tokens:day:2026-12-06` (shared by the calls' lines).
    pub key: Arc<str>,
    /// Who it is for, as a message says it: `token \`alice\`` or `model \`gpt-4o\``.
    pub owner: String,
    /// The config key, e.g. `max_tokens_per_day`.
    pub name: &'static str,
    /// Tokens or nano-USD.
    pub unit: Unit,
    /// Day or month.
    pub period: Period,
    /// The limit, in the unit.
    pub limit: u64,
    /// `false`: shadow mode.
    pub enforce: bool,
    /// The window counted in.
    pub window: Window,
}

/// The quota settings in force (swapped whole on a config reload).
#[derive(Debug, Clone)]
pub struct Policy {
    limits: LimitsConfig,
    /// The time zone of the windows.
    pub tz: TimeZone,
    /// Its name, for messages.
    pub tz_name: String,
    /// How long a reservation of a call that never ends keeps counting.
    pub reservation_ttl: std::time::Duration,
    /// `[quota] lease_calls`: calls' worth a replica leases of a shared
    /// budget (0: none).
    pub lease_calls: u64,
    /// No budget configured at all (computed once).
    empty: bool,
}

impl Policy {
    /// The policy of a validated configuration.
    pub fn from_config(config: &Config) -> Arc<Policy> {
        let limits = &config.limits;
        let empty = limits.global.quota().is_empty()
            && limits.per_token.values().all(|s| s.quota().is_empty())
            && limits.per_model.values().all(QuotaSet::is_empty);
        Arc::new(Policy {
            empty,
            limits: config.limits.clone(),
            tz: TimeZone::get(&config.quota.time_zone).unwrap_or(TimeZone::UTC),
            tz_name: config.quota.time_zone.clone(),
            reservation_ttl: config.quota.reservation_ttl,
            lease_calls: u64::from(config.quota.lease_calls),
        })
    }

    /// True when no budget is configured at all (the fast path).
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The caller's budgets (by `sub`, or `kid` for the override).
    pub fn caller_set(&self, sub: &str, kid: Option<&str>) -> QuotaSet {
        self.limits.for_token(sub, kid).quota()
    }

    /// Every budget a call by `sub` to `model` counts against, at `now`.
    pub fn budgets(
        &self,
        sub: &str,
        kid: Option<&str>,
        model: &str,
        now: Timestamp,
    ) -> Vec<Budget> {
        let mut out = self.caller_budgets(sub, kid, now);
        out.extend(self.model_budgets(model, now));
        out
    }

    /// The budgets of the caller `sub` alone.
    pub fn caller_budgets(&self, sub: &str, kid: Option<&str>, now: Timestamp) -> Vec<Budget> {
        let mut out = Vec::new();
        let caller = self.caller_set(sub, kid);
        self.push(
            &mut out,
            &format!("sub:{sub}"),
            &format!("token `{sub}`"),
            &caller,
            now,
        );
        out
    }

    /// The budgets of `model`'s whole spend.
    pub fn model_budgets(&self, model: &str, now: Timestamp) -> Vec<Budget> {
        let mut out = Vec::new();
        if let Some(set) = self.limits.per_model.get(model) {
            self.push(
                &mut out,
                &format!("model:{model}"),
                &format!("model `{model}`"),
                set,
                now,
            );
        }
        out
    }

    /// The subjects and kids with their own `[limits.per_token]` table,
    /// and the models with a `[limits.per_model]` table.
    pub fn configured(&self) -> (Vec<String>, Vec<String>) {
        (
            self.limits.per_token.keys().cloned().collect(),
            self.limits.per_model.keys().cloned().collect(),
        )
    }

    fn push(
        &self,
        out: &mut Vec<Budget>,
        scope: &str,
        owner: &str,
        set: &QuotaSet,
        now: Timestamp,
    ) {
        let enforce = set.enforce.unwrap_or(true);
        let cost = |u: Option<Usd>| u.map(Usd::nanos);
        for (name, unit, period, limit) in [
            (
                "max_tokens_per_day",
                Unit::Tokens,
                Period::Day,
                set.max_tokens_per_day,
            ),
            (
                "max_tokens_per_month",
                Unit::Tokens,
                Period::Month,
                set.max_tokens_per_month,
            ),
            (
                "max_cost_usd_per_day",
                Unit::Cost,
                Period::Day,
                cost(set.max_cost_usd_per_day),
            ),
            (
                "max_cost_usd_per_month",
                Unit::Cost,
                Period::Month,
                cost(set.max_cost_usd_per_month),
            ),
        ] {
            let Some(limit) = limit else { continue };
            let window = Window::of(period, now, &self.tz);
            out.push(Budget {
                key: counter_key(scope, unit, period, &window.label).into(),
                owner: owner.to_owned(),
                name,
                unit,
                period,
                limit,
                enforce,
                window,
            });
        }
    }
}

/// The counter of `scope` (`sub:<sub>` or `model:<id>`) in a window.
pub fn counter_key(scope: &str, unit: Unit, period: Period, label: &str) -> String {
    format!("{scope}:{}:{}:{label}", unit.key(), period.name())
}

/// The scope of a [`counter_key`]: the key without its unit, period and
/// window label (the last three fields, none of which holds a `:`), so a
/// model id with a `:` in it (`llama3:8b`) stays whole.
pub fn scope_of(key: &str) -> &str {
    key.rsplitn(4, ':').nth(3).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_keys_scope_keeps_a_model_id_with_colons() {
        let key = counter_key(
            "model:ollama/llama3:8b",
            Unit::Tokens,
            Period::Day,
            "2026-12-06",
        );
        assert_eq!(scope_of(&key), "model:ollama/llama3:8b");
        let key = counter_key("sub:alice", Unit::Cost, Period::Month, "2026-12");
        assert_eq!(scope_of(&key), "sub:alice");
    }

    #[test]
    fn windows_follow_the_calendar_in_the_time_zone() {
        let now: Timestamp = "2026-11-30T23:30:00Z".parse().expect("ts");
        let utc = Window::of(Period::Day, now, &TimeZone::UTC);
        assert_eq!(utc.label, "2026-11-30");
        assert_eq!(utc.resets.to_string(), "2026-12-01T00:00:00Z");
        let berlin = TimeZone::get("Europe/Berlin").expect("tz");
        let day = Window::of(Period::Day, now, &berlin);
        assert_eq!(day.label, "2026-12-01");
        assert_eq!(day.resets.to_string(), "2026-12-01T23:00:00Z");
        let month = Window::of(Period::Month, now, &berlin);
        assert_eq!(month.label, "2026-12");
        assert_eq!(month.starts.to_string(), "2026-11-30T23:00:00Z");
        assert_eq!(month.resets.to_string(), "2026-12-31T23:00:00Z");
    }
}
