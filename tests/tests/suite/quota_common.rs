//! What the quota and ledger tests share (`quota_memory`, `quota_redis`,
//! `ledger_sqlite`): the day's counter key and window, the checks of a
//! `limit-type: token` refusal, and the capture of the core's log.

use std::path::Path;
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

/// Sends this test process's `vibectl_core` log (info and up) to the
/// returned capture (call it first: one subscriber per process).
pub fn capture_logs() -> vibectl_tests::logs::Captured {
    let logs = vibectl_tests::logs::Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("vibectl_core=info")
        .with_writer(logs.clone())
        .with_ansi(false)
        .try_init()
        .expect("this test's process logs to the capture");
    logs
}

/// Provider `p` of `kind` at `base` (its key in a file in `dir`) and its
/// model `m`: up to 20 output tokens, USD 1 / 2 per million in / out.
pub fn provider_toml(kind: &str, base: &str, dir: &Path) -> String {
    let key = crate::support::key_file(dir, "sk-quota-test-key");
    format!(
        r#"
[providers.p]
kind = "{kind}"
base_url = "{base}"
api_key_file = "{key}"
max_retries = 0

[[models]]
id = "m"
provider = "p"
max_output_tokens = 20
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
"#
    )
}

/// A request for model `m` (see [`provider_toml`]).
pub fn request(id: &str) -> vibectl_proto::ExecuteRequest {
    crate::support::request(Some("m"), &[], &["hello world"], id)
}

/// An `Execute` of [`request`] by `sub` (as the edge passes it).
pub async fn call(
    core: &crate::support::Core,
    sub: &str,
    id: &str,
) -> Result<vibectl_proto::ExecuteResponse, tonic::Status> {
    let req =
        crate::support::with_header(tonic::Request::new(request(id)), "x-vibectl-caller", sub);
    tokio::time::timeout(crate::support::WAIT, core.client().execute(req))
        .await
        .expect("answered in time")
        .map(tonic::Response::into_inner)
}
