//! What the quota tests share (`quota_memory`, `quota_redis`): the day's
//! counter key and window, and the checks of a `limit-type: token` refusal.

use tonic::{Code, Status};
use vibectl_core::quota::policy::{Period, Unit, Window, counter_key};

/// Today's window (UTC, the default `[quota] time_zone`).
pub fn today() -> Window {
    Window::of(
        Period::Day,
        jiff::Timestamp::now(),
        &jiff::tz::TimeZone::UTC,
    )
}

/// The counter of `sub`'s daily token budget.
pub fn today_key(sub: &str) -> String {
    counter_key(
        &format!("sub:{sub}"),
        Unit::Tokens,
        Period::Day,
        &today().label,
    )
}

/// Milliseconds until the next UTC midnight.
pub fn ms_to_midnight() -> i64 {
    today().resets.as_millisecond() - jiff::Timestamp::now().as_millisecond()
}

/// `status` refuses a call over a daily token budget: `RESOURCE_EXHAUSTED`,
/// `limit-type: token`, and `retry-after-ms` until midnight (within 5 s).
pub fn assert_daily_token_refusal(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let md = status.metadata();
    assert_eq!(
        md.get("limit-type").and_then(|v| v.to_str().ok()),
        Some("token"),
        "{status:?}"
    );
    let retry: i64 = md
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms");
    let expected = ms_to_midnight();
    assert!(
        (retry - expected).abs() < 5_000,
        "retry-after-ms {retry} vs {expected} to midnight"
    );
}
