//! The quota instruments:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_quota_used` | gauge | `owner` (capped `sub` or `model:<id>`), `budget` |
//! | `vibectl_quota_limit` | gauge | `owner`, `budget` |
//! | `vibectl_quota_reservations_open` | gauge | |
//! | `vibectl_quota_refusals_total` | counter | `limit_type` (`token`/`cost`), `mode` (`enforced`/`shadow`) |
//! | `vibectl_quota_backend_errors_total` | counter | |

use super::policy::{Budget, Policy, Unit, scope_of};
use crate::metrics::Metrics;
use jiff::Timestamp;
use opentelemetry::{KeyValue, metrics::Counter};
use prometheus::{IntGauge, IntGaugeVec, Opts};
use std::sync::Arc;

/// The quota instruments, or nothing when metrics are off. The gauges are
/// Prometheus series in the core's registry, resolved once per budget
/// ([`QuotaMetrics::gauges`]) so that a call sets them with an atomic
/// store (through OpenTelemetry each record hashed and looked up its
/// labels: about 3,000 instructions per budget and call); the rare
/// counters stay OpenTelemetry instruments.
#[derive(Debug, Clone, Default)]
pub struct QuotaMetrics {
    inner: Option<Arc<Inner>>,
    metrics: Metrics,
}

#[derive(Debug)]
struct Inner {
    used: IntGaugeVec,
    limit: IntGaugeVec,
    open: IntGauge,
    refusals: Counter<u64>,
    errors: Counter<u64>,
}

/// One budget's `vibectl_quota_used` series (nothing when metrics are off).
#[derive(Debug, Clone, Default)]
pub struct BudgetGauges(Option<IntGauge>);

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl BudgetGauges {
    /// The backend counted `used` (settled) in the budget.
    pub fn observed(&self, used: u64) {
        if let Some(g) = &self.0 {
            g.set(gauge_value(used));
        }
    }

    /// A call of this replica settled `actual` in the budget (calls served
    /// from a lease never read the backend's count: this keeps the gauge
    /// current between reads).
    pub fn settled(&self, actual: u64) {
        if let Some(g) = &self.0
            && actual > 0
        {
            g.add(gauge_value(actual));
        }
    }
}

impl QuotaMetrics {
    /// Instruments in a registry of their own, as a core with metrics on
    /// has them (for measuring what they cost: `quota_bench`).
    #[cfg(feature = "test-support")]
    pub fn standalone(models: &[&str], max_subjects: usize) -> Result<Self, crate::CoreError> {
        Ok(Self::new(&Metrics::new(
            models.iter().copied(),
            max_subjects,
        )?))
    }

    /// Instruments in `metrics`' registry (none if they cannot be
    /// registered there: a second engine on one registry).
    pub fn new(metrics: &Metrics) -> Self {
        let inner = match (metrics.registry(), metrics.meter()) {
            (Some(registry), Some(m)) => match gauges(registry) {
                Ok((used, limit, open)) => Some(Arc::new(Inner {
                    used,
                    limit,
                    open,
                    refusals: m
                        .u64_counter("vibectl_quota_refusals")
                        .with_description(
                            "Calls refused (or, in shadow mode, that would have been) by a quota",
                        )
                        .build(),
                    errors: m
                        .u64_counter("vibectl_quota_backend_errors")
                        .with_description("Quota backend steps that failed")
                        .build(),
                })),
                Err(e) => {
                    tracing::warn!(error = %e, "quota metrics are off: their gauges could not be registered");
                    None
                }
            },
            _ => None,
        };
        Self {
            inner,
            metrics: metrics.clone(),
        }
    }

    /// The series of `budget` counted for `sub` (its owner label is the
    /// capped `sub`, or `model:<id>`); its limit is set now.
    pub(crate) fn gauges(&self, sub: &str, budget: &Budget) -> BudgetGauges {
        let Some(i) = &self.inner else {
            return BudgetGauges::default();
        };
        let owner = if budget.key.starts_with("model:") {
            scope_of(&budget.key).to_owned()
        } else {
            self.metrics.subject(Some(sub))
        };
        let labels = [owner.as_str(), budget.name];
        i.limit
            .with_label_values(&labels)
            .set(gauge_value(budget.limit));
        BudgetGauges(Some(i.used.with_label_values(&labels)))
    }

    /// After a reload: drops the series of budgets `policy` no longer has
    /// for their owner (a removed budget's last values would stay on every
    /// scrape). A `sub` owner keeps a budget that any `[limits.per_token]`
    /// table has, as it may be keyed by a kid the label does not show.
    pub(crate) fn forget_removed(&self, policy: &Policy) {
        let Some(i) = &self.inner else { return };
        let now = Timestamp::now();
        let (tokens, _) = policy.configured();
        let per_token: Vec<&str> = tokens
            .iter()
            .flat_map(|t| policy.caller_budgets(t, Some(t), now))
            .map(|b| b.name)
            .collect();
        let has = |owner: &str, name: &str| match owner.strip_prefix("model:") {
            Some(model) => policy
                .model_budgets(model, now)
                .iter()
                .any(|b| b.name == name),
            None => {
                per_token.contains(&name)
                    || policy
                        .caller_budgets(owner, None, now)
                        .iter()
                        .any(|b| b.name == name)
            }
        };
        for family in prometheus::core::Collector::collect(&i.limit) {
            for m in family.get_metric() {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default()
                };
                let (owner, budget) = (label("owner"), label("budget"));
                if !has(&owner, &budget) {
                    let labels = [owner.as_str(), budget.as_str()];
                    let _ = i.limit.remove_label_values(&labels);
                    let _ = i.used.remove_label_values(&labels);
                }
            }
        }
    }

    pub(crate) fn refused(&self, unit: Unit, enforced: bool) {
        let Some(i) = &self.inner else { return };
        i.refusals.add(
            1,
            &[
                KeyValue::new("limit_type", unit.limit_type().as_str()),
                KeyValue::new("mode", if enforced { "enforced" } else { "shadow" }),
            ],
        );
    }

    pub(crate) fn reservation_opened(&self) {
        if let Some(i) = &self.inner {
            i.open.inc();
        }
    }

    pub(crate) fn reservation_closed(&self) {
        if let Some(i) = &self.inner {
            i.open.dec();
        }
    }

    pub(crate) fn backend_error(&self) {
        if let Some(i) = &self.inner {
            i.errors.add(1, &[]);
        }
    }
}

/// The gauges, registered in `registry` (names and help texts as the
/// OpenTelemetry exporter wrote them before).
fn gauges(
    registry: &prometheus::Registry,
) -> Result<(IntGaugeVec, IntGaugeVec, IntGauge), prometheus::Error> {
    let by_budget =
        |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["owner", "budget"]);
    let used = by_budget(
        "vibectl_quota_used",
        "Settled use of a quota budget in its window (tokens, or nano-USD for cost budgets)",
    )?;
    let limit = by_budget(
        "vibectl_quota_limit",
        "Limit of a quota budget (tokens, or nano-USD for cost budgets)",
    )?;
    let open = IntGauge::new(
        "vibectl_quota_reservations_open",
        "Quota reservations of calls in flight in this core",
    )?;
    registry.register(Box::new(used.clone()))?;
    registry.register(Box::new(limit.clone()))?;
    registry.register(Box::new(open.clone()))?;
    Ok((used, limit, open))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::policy::Policy;
    use jiff::Timestamp;
    use vibectl_config::Config;

    /// The scrape of the OpenTelemetry instruments these gauges replace
    /// (same calls): the series must not change.
    const BEFORE: &str = r#"# HELP vibectl_quota_limit Limit of a quota budget (tokens, or nano-USD for cost budgets)
# TYPE vibectl_quota_limit gauge
vibectl_quota_limit{budget="max_cost_usd_per_month",owner="alice"} 2000000000
vibectl_quota_limit{budget="max_cost_usd_per_month",owner="bob"} 2000000000
vibectl_quota_limit{budget="max_cost_usd_per_month",owner="other"} 2000000000
vibectl_quota_limit{budget="max_tokens_per_day",owner="alice"} 1000
vibectl_quota_limit{budget="max_tokens_per_day",owner="bob"} 1000
vibectl_quota_limit{budget="max_tokens_per_day",owner="model:echo"} 50
vibectl_quota_limit{budget="max_tokens_per_day",owner="other"} 1000
# HELP vibectl_quota_refusals_total Calls refused (or, in shadow mode, that would have been) by a quota
# TYPE vibectl_quota_refusals_total counter
vibectl_quota_refusals_total{limit_type="token",mode="shadow"} 1
# HELP vibectl_quota_reservations_open Quota reservations of calls in flight in this core
# TYPE vibectl_quota_reservations_open gauge
vibectl_quota_reservations_open 1
# HELP vibectl_quota_used Settled use of a quota budget in its window (tokens, or nano-USD for cost budgets)
# TYPE vibectl_quota_used gauge
vibectl_quota_used{budget="max_cost_usd_per_month",owner="alice"} 1
vibectl_quota_used{budget="max_cost_usd_per_month",owner="bob"} 11
vibectl_quota_used{budget="max_cost_usd_per_month",owner="other"} 21
vibectl_quota_used{budget="max_tokens_per_day",owner="alice"} 0
vibectl_quota_used{budget="max_tokens_per_day",owner="bob"} 10
vibectl_quota_used{budget="max_tokens_per_day",owner="model:echo"} 22
vibectl_quota_used{budget="max_tokens_per_day",owner="other"} 20"#;

    #[test]
    fn a_scrape_shows_the_same_series_as_before() {
        let m = Metrics::new(["echo"], 2).expect("metrics");
        let q = QuotaMetrics::new(&m);
        let config = Config::from_toml(
            "[limits.global]\nmax_tokens_per_day = 1000\nmax_cost_usd_per_month = 2\n\
             [limits.per_model.echo]\nmax_tokens_per_day = 50\n",
            std::path::Path::new("m.toml"),
        )
        .expect("config");
        let policy = Policy::from_config(&config);
        let now = Timestamp::now();
        for (i, sub) in ["alice", "bob", "carol"].into_iter().enumerate() {
            let budgets = policy.budgets(sub, None, "echo", now);
            for (j, b) in budgets.iter().enumerate() {
                q.gauges(sub, b).observed((10 * i + j) as u64);
            }
        }
        q.reservation_opened();
        q.refused(Unit::Tokens, false);
        let text = m.render().expect("render");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("vibectl_quota_"))
            .collect();
        assert_eq!(lines.join("\n"), BEFORE);
    }

    #[test]
    fn a_reload_drops_the_series_of_removed_budgets_only() {
        let m = Metrics::new(["echo"], 8).expect("metrics");
        let q = QuotaMetrics::new(&m);
        let policy = |text: &str| {
            Policy::from_config(
                &Config::from_toml(text, std::path::Path::new("m.toml")).expect("config"),
            )
        };
        let before = policy(
            "[limits.global]\nmax_tokens_per_day = 1000\nmax_cost_usd_per_month = 2\n\
             [limits.per_model.echo]\nmax_tokens_per_day = 50\n",
        );
        for b in before.budgets("alice", None, "echo", Timestamp::now()) {
            q.gauges("alice", &b).observed(7);
        }
        let series = || {
            let text = m.render().expect("render");
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("vibectl_quota_used{"))
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(series().len(), 3);
        // The monthly cost budget and the model's budget are removed.
        q.forget_removed(&policy("[limits.global]\nmax_tokens_per_day = 500\n"));
        assert_eq!(
            series(),
            ["vibectl_quota_used{budget=\"max_tokens_per_day\",owner=\"alice\"} 7"]
        );
        let text = m.render().expect("render");
        assert!(!text.contains("max_cost_usd_per_month"), "{text}");
        assert!(!text.contains("model:echo"), "{text}");
    }
}
