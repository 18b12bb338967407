//! Prometheus metrics of the core: the instruments ([`instruments`]: tokens,
//! cost, calls, durations, time to first chunk, provider errors, with
//! bounded labels) and the `/metrics` HTTP listener ([`endpoint`]), on when
//! `[metrics] enabled = true` or `vibectl-core serve --enable-metrics`.

mod call_result;
mod endpoint;
mod instruments;
mod series;

pub use call_result::CallResult;
pub use endpoint::serve_metrics;
pub use instruments::{CallSample, Metrics};
pub use series::Subject;
