//! The result of a run, as text for people and JSON for `scripts/bench`.

use crate::{args::Args, procstat, run::WorkerStats};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::Duration;

/// Everything one run measured.
pub struct RunResult {
    label: String,
    stats: WorkerStats,
    elapsed: Duration,
    procs: Value,
}

impl RunResult {
    /// Wraps merged stats with the run's description.
    pub fn new(args: &Args, stats: WorkerStats, elapsed: Duration, procs: Value) -> Self {
        let label = format!(
            "{:?} {} conn x {} streams{}",
            args.method,
            args.connections,
            args.concurrency,
            if args.fresh_connections {
                ", new connection per call"
            } else {
                ""
            }
        );
        Self {
            label,
            stats,
            elapsed,
            procs,
        }
    }

    /// Calls that succeeded.
    pub fn calls_ok(&self) -> u64 {
        self.stats.ok
    }

    fn rate(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// JSON for scripts.
    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ok": self.stats.ok,
            "rate_per_s": self.rate(),
            "chunks": self.stats.chunks,
            "errors": self.stats.errors,
            "latency_us": summary(self.stats.latency_us.as_ref()),
            "ttfc_us": summary(self.stats.ttfc_us.as_ref()),
            "procs": self.procs,
        })
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}: {} ok in {:.2}s = {:.0} calls/s\n",
            self.label,
            self.stats.ok,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        out += &line("latency", self.stats.latency_us.as_ref());
        if self.stats.chunks > 0 {
            out += &line("first chunk", self.stats.ttfc_us.as_ref());
        }
        if !self.stats.errors.is_empty() {
            out += &format!("  errors: {:?}\n", self.stats.errors);
        }
        out += &procstat::text(&self.procs);
        out
    }
}

fn summary(h: Option<&Histogram<u64>>) -> Value {
    match h {
        Some(h) if !h.is_empty() => json!({
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
            "mean": h.mean(),
        }),
        _ => Value::Null,
    }
}

fn line(name: &str, h: Option<&Histogram<u64>>) -> String {
    match h {
        Some(h) if !h.is_empty() => format!(
            "  {name:<12} p50 {} µs  p90 {} µs  p99 {} µs  max {} µs\n",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.max()
        ),
        _ => String::new(),
    }
}
