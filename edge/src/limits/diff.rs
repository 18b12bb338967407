//! What changed between two `[limits]` tables, in words for the reload log
//! ("global max_requests_per_minute 60 → 120"), split into what a reload
//! puts in force and what needs a restart (the backend and its Redis
//! address). The Redis URL is never printed, only that it changed.

use std::num::NonZeroU32;
use vibectl_config::{BackendFailure, LimitSet, LimitsBackend, LimitsConfig};

/// The changes of one reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsDiff {
    /// Changes a reload puts in force.
    pub applied: Vec<String>,
    /// Changed keys that take effect only after a restart.
    pub needs_restart: Vec<String>,
}

/// The differences from `old` to `new`.
pub fn diff(old: &LimitsConfig, new: &LimitsConfig) -> LimitsDiff {
    let mut d = LimitsDiff::default();
    if old.backend != new.backend {
        d.needs_restart.push(format!(
            "limits.backend {} → {}",
            backend(old.backend),
            backend(new.backend)
        ));
    }
    if old.redis_url != new.redis_url {
        d.needs_restart.push("limits.redis_url changed".to_owned());
    }
    if old.key_prefix() != new.key_prefix() {
        d.needs_restart.push(format!(
            "limits.redis_key_prefix `{}` → `{}`",
            old.key_prefix(),
            new.key_prefix()
        ));
    }
    if old.on_backend_failure != new.on_backend_failure {
        d.applied.push(format!(
            "on_backend_failure {} → {}",
            failure(old.on_backend_failure),
            failure(new.on_backend_failure)
        ));
    }
    if old.max_concurrent_total != new.max_concurrent_total {
        d.applied.push(format!(
            "max_concurrent_total {} → {}",
            value(old.max_concurrent_total),
            value(new.max_concurrent_total)
        ));
    }
    set_diff("global", &old.global, &new.global, &mut d.applied);
    for (name, old_set) in &old.per_token {
        match new.per_token.get(name) {
            Some(new_set) => set_diff(
                &format!("per_token `{name}`"),
                old_set,
                new_set,
                &mut d.applied,
            ),
            None => d.applied.push(format!("per_token `{name}` removed")),
        }
    }
    for (name, new_set) in &new.per_token {
        if !old.per_token.contains_key(name) {
            let mut fields = Vec::new();
            set_diff("", &LimitSet::default(), new_set, &mut fields);
            let fields: Vec<_> = fields
                .iter()
                .map(|f| f.trim_start().replace("unlimited → ", ""))
                .collect();
            d.applied.push(format!(
                "per_token `{name}` added ({})",
                if fields.is_empty() {
                    "no overrides".to_owned()
                } else {
                    fields.join(", ")
                }
            ));
        }
    }
    d
}

fn set_diff(scope: &str, old: &LimitSet, new: &LimitSet, out: &mut Vec<String>) {
    let fields: [(&str, Option<NonZeroU32>, Option<NonZeroU32>); 5] = [
        (
            "max_requests_per_minute",
            old.max_requests_per_minute,
            new.max_requests_per_minute,
        ),
        ("burst", old.burst, new.burst),
        (
            "max_concurrent_requests",
            old.max_concurrent_requests,
            new.max_concurrent_requests,
        ),
        (
            "max_input_length",
            old.max_input_length,
            new.max_input_length,
        ),
        (
            "request_timeout_seconds",
            old.request_timeout_seconds,
            new.request_timeout_seconds,
        ),
    ];
    for (key, before, after) in fields {
        if before != after {
            out.push(format!(
                "{scope} {key} {} → {}",
                value(before),
                value(after)
            ));
        }
    }
}

fn value(n: Option<NonZeroU32>) -> String {
    n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

fn backend(b: LimitsBackend) -> &'static str {
    match b {
        LimitsBackend::Memory => "memory",
        LimitsBackend::Redis => "redis",
    }
}

fn failure(f: BackendFailure) -> &'static str {
    match f {
        BackendFailure::FailOpen => "fail_open",
        BackendFailure::FailClosed => "fail_closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml: &str) -> LimitsConfig {
        vibectl_config::Config::from_toml(
            &format!("[limits]\n{toml}"),
            std::path::Path::new("t.toml"),
        )
        .expect("valid")
        .limits
    }

    #[test]
    fn changes_are_told_in_words() {
        let old = limits(
            "[limits.global]\nmax_requests_per_minute = 60\n[limits.per_token.bob]\nburst = 2",
        );
        let new = limits(
            "max_concurrent_total = 10\n[limits.global]\nmax_requests_per_minute = 120\n[limits.per_token.alice]\nmax_requests_per_minute = 5",
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.applied,
            [
                "max_concurrent_total unlimited → 10",
                "global max_requests_per_minute 60 → 120",
                "per_token `bob` removed",
                "per_token `alice` added (max_requests_per_minute 5)",
            ]
        );
        assert!(d.needs_restart.is_empty());
        let same = diff(&new, &new);
        assert!(same.applied.is_empty() && same.needs_restart.is_empty());
    }

    #[test]
    fn backend_changes_need_a_restart_and_hide_the_url() {
        let old = limits("");
        let new = limits("backend = \"redis\"\nredis_url = \"redis://u:hunter2@h:6379/0\"");
        let d = diff(&old, &new);
        assert!(d.applied.is_empty());
        assert_eq!(d.needs_restart.len(), 2, "{:?}", d.needs_restart);
        assert!(d.needs_restart.iter().all(|l| !l.contains("hunter2")));
    }
}
