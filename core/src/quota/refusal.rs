//! What a refused call is told: `RESOURCE_EXHAUSTED` naming the budget,
//! its window and the counts, with `limit-type` and `retry-after-ms`.

use super::{
    backend::Counts,
    policy::{Budget, Policy, Unit},
};
use tonic::Status;
use vibectl_config::Usd;

/// The name a ledger row and the logs give a refusal's status.
pub fn code_name(status: &Status) -> &'static str {
    match status.code() {
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

/// The `RESOURCE_EXHAUSTED` status of a budget that does not fit.
pub(super) fn refusal(policy: &Policy, b: &Budget, c: Counts, needs: u64, now_ms: i64) -> Status {
    let show = |n: u64| match b.unit {
        Unit::Tokens => format!("{n} tokens"),
        Unit::Cost => format!("{} USD", Usd::from_nanos(n)),
    };
    let resets = b.window.resets;
    let retry_after_ms = (resets.as_millisecond() - now_ms).max(0);
    let mut status = Status::resource_exhausted(format!(
        "{} budget of {} exhausted: {} = {} per {} ({} {} in {}); used {}, reserved {}, this call needs up to {}; resets at {}",
        b.unit.limit_type().as_str(),
        b.owner,
        b.name,
        show(b.limit),
        b.period.name(),
        b.period.name(),
        b.window.label,
        policy.tz_name,
        show(c.used),
        show(c.reserved),
        show(needs),
        resets,
    ));
    let md = status.metadata_mut();
    md.insert(
        vibectl_proto::wire::LIMIT_TYPE,
        b.unit.limit_type().as_str().parse().expect("ASCII"),
    );
    if let Ok(v) = retry_after_ms.to_string().parse() {
        md.insert(vibectl_proto::wire::RETRY_AFTER_MS, v);
    }
    status
}
