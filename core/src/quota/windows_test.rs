//! Budgets reset at the calendar boundaries of `[quota] time_zone`: a
//! fixed clock just before and at midnight (and a month's end) in Berlin,
//! and a refusal's `retry-after-ms` is exactly the time to the reset.

use super::{Caller, QuotaMetrics, Quotas, memory::MemoryBackend};
use crate::registry::Registry;
use jiff::Timestamp;
use std::sync::Arc;
use tonic::Code;
use vibectl_config::Config;

const CONFIG: &str = r#"
[quota]
time_zone = "Europe/Berlin"

[limits.global]
max_tokens_per_day = 100
max_tokens_per_month = 150

[providers.echo]
kind = "echo"

[[models]]
id = "m"
provider = "echo"
max_output_tokens = 50
"#;

/// A refusal's `retry-after-ms`.
fn retry_after_ms(status: &tonic::Status) -> i64 {
    status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms")
}

fn at(ts: &str) -> Timestamp {
    ts.parse().expect("timestamp")
}

#[tokio::test]
async fn budgets_reset_at_midnight_and_at_the_month_in_the_time_zone() {
    let config = Config::from_toml(CONFIG, std::path::Path::new("t.toml")).expect("config");
    let quotas = Arc::new(Quotas::new(
        &config,
        Arc::new(MemoryBackend::default()),
        QuotaMetrics::default(),
    ));
    let model = Registry::from_config(&config)
        .resolve(Some("m"))
        .expect("m");
    let caller = Caller {
        sub: "alice",
        kid: None,
    };
    // Each call reserves 10 + 50 = 60 tokens (held: never settled here).
    let (q, m) = (&quotas, &model);
    let reserve = move |now: &str| q.reserve_at(caller, m, 10, at(now));
    let mut held = Vec::new();

    // 2026-11-28, 23:59:59.999 in Berlin (UTC+1): one call fits the day…
    held.push(reserve("2026-11-28T22:59:59.999Z").await.expect("fits"));
    let refused = reserve("2026-11-28T22:59:59.999Z")
        .await
        .expect_err("the day is spent");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // One millisecond before midnight: retry in 1 ms, not a day.
    assert_eq!(retry_after_ms(&refused), 1);
    assert!(
        refused
            .message()
            .contains("day 2026-11-28 in Europe/Berlin"),
        "{}",
        refused.message()
    );
    // …and at midnight in Berlin (23:00 UTC) the day starts anew.
    held.push(reserve("2026-11-28T23:00:00Z").await.expect("a new day"));
    // 120 of November's 150 are held: the 30th's first call does not fit
    // the month, though it fits its day.
    let refused = reserve("2026-11-29T23:00:00Z")
        .await
        .expect_err("the month is spent");
    // The month resets at 2026-11-30T23:00Z, one day later.
    assert_eq!(retry_after_ms(&refused), 86_400_000);
    assert!(
        refused.message().contains("max_tokens_per_month")
            && refused.message().contains("month 2026-11 in Europe/Berlin"),
        "{}",
        refused.message()
    );
    // December starts in Berlin at 2026-11-30T23:00Z: a new day and month.
    held.push(reserve("2026-11-30T23:00:00Z").await.expect("a new month"));
    assert!(held.iter().all(Option::is_some));
}
