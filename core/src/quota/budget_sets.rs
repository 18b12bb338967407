//! The budgets of a call, made once per caller, model and window: their
//! counter keys, limits and calendar windows ([`Policy::budgets`]) and
//! their gauges, kept until one of their windows ends. A reload puts a
//! new [`InForce`] in force, with no set made yet. A call looks its set up
//! (a read lock and a hash of its `sub`) instead of formatting four keys
//! and computing two calendar windows (about 7,000 instructions a call).

use super::{
    metrics::{BudgetGauges, QuotaMetrics},
    policy::{Budget, Policy},
};
use jiff::Timestamp;
use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

/// Subjects whose sets are kept at most; beyond, the sets start over (a
/// stream of one-off subjects never grows the map without bound).
const MAX_SUBJECTS: usize = 16_384;

/// The budgets a caller's calls to one model count against, in the
/// windows that hold the instant it was made for.
#[derive(Debug)]
pub struct BudgetSet {
    /// The caller's budgets, then the model's.
    pub budgets: Box<[Budget]>,
    /// Their `vibectl_quota_used` series, in the same order.
    pub gauges: Box<[BudgetGauges]>,
    /// The latest start of its windows.
    from: Timestamp,
    /// The earliest end of its windows.
    until: Timestamp,
}

impl BudgetSet {
    /// True when every window of the set holds `now`.
    pub fn holds(&self, now: Timestamp) -> bool {
        self.from <= now && now < self.until
    }

    /// True until the first of its windows ends (by this process' clock).
    pub fn current(&self) -> bool {
        Timestamp::now() < self.until
    }
}

#[derive(Debug)]
struct Entry {
    kid: Option<Box<str>>,
    model: Box<str>,
    set: Arc<BudgetSet>,
}

/// The quota policy in force and the budget sets made under it.
#[derive(Debug)]
pub struct InForce {
    /// The policy.
    pub policy: Arc<Policy>,
    /// By `sub`: the sets of its (kid, model) pairs.
    sets: RwLock<HashMap<Box<str>, Vec<Entry>>>,
}

impl InForce {
    /// `policy`, with no set made yet.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            policy,
            sets: RwLock::default(),
        }
    }

    /// The budgets of a call by `sub` (verified by `kid`) to `model` at
    /// `now` (made, and kept, at the first call of their windows).
    pub fn budgets(
        &self,
        metrics: &QuotaMetrics,
        sub: &str,
        kid: Option<&str>,
        model: &str,
        now: Timestamp,
    ) -> Arc<BudgetSet> {
        if let Some(set) = self.find(sub, kid, model)
            && set.holds(now)
        {
            return set;
        }
        let budgets = self.policy.budgets(sub, kid, model, now);
        let set = Arc::new(BudgetSet {
            gauges: budgets.iter().map(|b| metrics.gauges(sub, b)).collect(),
            from: budgets
                .iter()
                .map(|b| b.window.starts)
                .max()
                .unwrap_or(Timestamp::MIN),
            until: budgets
                .iter()
                .map(|b| b.window.resets)
                .min()
                .unwrap_or(Timestamp::MAX),
            budgets: budgets.into(),
        });
        self.keep(sub, kid, model, &set);
        set
    }

    fn find(&self, sub: &str, kid: Option<&str>, model: &str) -> Option<Arc<BudgetSet>> {
        let sets = self.sets.read().unwrap_or_else(PoisonError::into_inner);
        sets.get(sub)?
            .iter()
            .find(|e| e.kid.as_deref() == kid && &*e.model == model)
            .map(|e| e.set.clone())
    }

    fn keep(&self, sub: &str, kid: Option<&str>, model: &str, set: &Arc<BudgetSet>) {
        let mut sets = self.sets.write().unwrap_or_else(PoisonError::into_inner);
        if sets.len() >= MAX_SUBJECTS && !sets.contains_key(sub) {
            sets.clear();
        }
        let entries = sets.entry(Box::from(sub)).or_default();
        match entries
            .iter_mut()
            .find(|e| e.kid.as_deref() == kid && &*e.model == model)
        {
            Some(e) => e.set = set.clone(),
            None => entries.push(Entry {
                kid: kid.map(Box::from),
                model: Box::from(model),
                set: set.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibectl_config::Config;

    #[test]
    fn a_set_is_kept_for_its_windows_and_made_anew_when_one_ends() {
        let config = Config::from_toml(
            "[limits.global]\nmax_tokens_per_day = 10\nmax_tokens_per_month = 100\n\
             [limits.per_token.bob]\nmax_tokens_per_day = 5\n",
            std::path::Path::new("s.toml"),
        )
        .expect("config");
        let in_force = InForce::new(Policy::from_config(&config));
        let metrics = QuotaMetrics::default();
        let at = |t: &str| t.parse::<Timestamp>().expect("ts");
        let get = |sub, kid, now| in_force.budgets(&metrics, sub, kid, "echo", now);
        let a = get("ann", None, at("2026-11-30T10:00:00Z"));
        assert!(Arc::ptr_eq(
            &a,
            &get("ann", None, at("2026-11-30T23:59:59Z"))
        ));
        assert_eq!(&*a.budgets[0].key, "sub:ann:tokens:day:2026-11-30");
        // The day ends: a new set, in the new windows.
        let b = get("ann", None, at("2026-12-01T00:00:00Z"));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(&*b.budgets[0].key, "sub:ann:tokens:day:2026-12-01");
        assert_eq!(&*b.budgets[1].key, "sub:ann:tokens:month:2026-12");
        // Per caller and key id: bob's own table, and bob by a kid too.
        let bob = get("bob", None, at("2026-12-01T01:00:00Z"));
        assert_eq!(bob.budgets[0].limit, 5);
        assert_eq!(
            get("x", Some("bob"), at("2026-12-01T01:00:00Z")).budgets[0].limit,
            5
        );
        assert_eq!(
            get("x", None, at("2026-12-01T01:00:00Z")).budgets[0].limit,
            10
        );
    }
}
