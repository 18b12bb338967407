//! The connection-limit and failure-budget series, read at scrape time
//! from [`ConnStats`] and [`FailureBudget`]:
//!
//! | Prometheus name | kind | labels |
//! | --- | --- | --- |
//! | `vibectl_connections_open` | gauge | — |
//! | `vibectl_connections_max` | gauge | — (the total cap in force) |
//! | `vibectl_connections_closed_total` | counter | `reason` (first_request_timeout, idle_timeout, evicted_total_cap, evicted_address_cap, shed_fd_limit, premature_reset) |
//! | `vibectl_connections_refused_total` | counter | `reason` (total_cap, address_cap: nothing idle to close; address_rate, address_handshakes: at accept, before TLS) |
//! | `vibectl_accept_errors_total` | counter | `kind` (fd_limit, other) |
//! | `vibectl_proxy_protocol_refused_total` | counter | — |
//! | `vibectl_auth_budget_refusals_total` | counter | — (tokens refused cheaply, address over its failure budget) |

use crate::{auth::budget::FailureBudget, conn::ConnStats};
use arc_swap::ArcSwapOption;
use opentelemetry::{
    KeyValue,
    metrics::{Meter, ObservableCounter, ObservableGauge},
};
use std::sync::Arc;

/// What the instruments read; set by [`super::Metrics::watch_connections`].
#[derive(Default)]
pub(super) struct Sources {
    pub(super) stats: ArcSwapOption<ConnStats>,
    pub(super) budget: ArcSwapOption<FailureBudget>,
}

/// Reads a counter's values from the sources and observes them.
type ReadCounter = fn(&Sources, &dyn Fn(u64, &[KeyValue]));

/// Keeps the instruments registered.
#[allow(dead_code)]
pub(super) struct Observed(Vec<ObservableCounter<u64>>, Vec<ObservableGauge<u64>>);

/// Registers the series of the module doc on `meter`.
pub(super) fn register(meter: &Meter, sources: &Arc<Sources>) -> Observed {
    let gauge = |name: &'static str, what: &'static str, read: fn(&ConnStats) -> u64| {
        let sources = sources.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(what)
            .with_callback(move |o| {
                if let Some(stats) = sources.stats.load().as_ref() {
                    o.observe(read(stats), &[]);
                }
            })
            .build()
    };
    let counter = |name: &'static str, what: &'static str, read: ReadCounter| {
        let sources = sources.clone();
        meter
            .u64_observable_counter(name)
            .with_description(what)
            .with_callback(move |o| read(&sources, &|n, labels| o.observe(n, labels)))
            .build()
    };
    let gauges = vec![
        gauge(
            "vibectl_connections_open",
            "Client connections open on the main listener",
            |s| s.snapshot().open,
        ),
        gauge(
            "vibectl_connections_max",
            "The cap on client connections in force",
            |s| s.snapshot().max,
        ),
    ];
    let counters = vec![
        counter(
            "vibectl_connections_closed",
            "Client connections closed by the edge, by reason",
            |s, observe| {
                if let Some(stats) = s.stats.load().as_ref() {
                    for (reason, n) in stats.snapshot().closed {
                        observe(n, &[KeyValue::new("reason", reason.as_str())]);
                    }
                }
            },
        ),
        counter(
            "vibectl_connections_refused",
            "Client connections closed at accept (a cap with none idle, an address's rate or handshakes)",
            |s, observe| {
                if let Some(stats) = s.stats.load().as_ref() {
                    for (reason, n) in stats.snapshot().refused {
                        observe(n, &[KeyValue::new("reason", reason.as_str())]);
                    }
                }
            },
        ),
        counter(
            "vibectl_accept_errors",
            "Failed accepts on the main listener (fd_limit: EMFILE/ENFILE)",
            |s, observe| {
                if let Some(stats) = s.stats.load().as_ref() {
                    let snap = stats.snapshot();
                    observe(snap.accept_fd_limit, &[KeyValue::new("kind", "fd_limit")]);
                    observe(snap.accept_other, &[KeyValue::new("kind", "other")]);
                }
            },
        ),
        counter(
            "vibectl_proxy_protocol_refused",
            "Connections refused for their PROXY protocol header (untrusted, missing, malformed)",
            |s, observe| {
                if let Some(stats) = s.stats.load().as_ref() {
                    observe(stats.snapshot().proxy_refused, &[]);
                }
            },
        ),
        counter(
            "vibectl_auth_budget_refusals",
            "Tokens refused without verification: their address is past its failure budget",
            |s, observe| {
                if let Some(budget) = s.budget.load().as_ref() {
                    observe(budget.refusals(), &[]);
                }
            },
        ),
    ];
    Observed(counters, gauges)
}
