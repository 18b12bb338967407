//! The usage ledger in SQLite: 10,000 calls across a graceful restart of
//! the core leave exactly 10,000 rows, and `vibectl-core usage` sums to
//! exactly what the calls' `final_metrics` said.

use crate::support::{self, Core, with_header};
use futures::StreamExt;
use vibectl_core::{
    ledger::{
        open_store,
        report::{Format, GroupBy},
    },
    usage_cli::{UsageArgs, usage},
};
use vibectl_proto::execute_response;

const CALLS_PER_RUN: usize = 5_000;

/// Runs `CALLS_PER_RUN` calls, 32 at once; returns the sum of their
/// `final_metrics` total tokens and cost.
async fn run_calls(core: &Core, run: usize) -> (i64, f64) {
    let results: Vec<(i64, f64)> = futures::stream::iter(0..CALLS_PER_RUN)
        .map(|i| {
            let mut client = core.client();
            async move {
                let req = support::request(
                    Some("priced"),
                    &[],
                    &["count these words"],
                    &format!("r{run}-{i}"),
                );
                let req = with_header(
                    tonic::Request::new(req),
                    "x-vibectl-caller",
                    if i % 2 == 0 { "alice" } else { "bob" },
                );
                let answer = client.execute(req).await.expect("OK").into_inner();
                let Some(execute_response::Result::Success(ok)) = answer.result else {
                    panic!("call failed: {answer:?}")
                };
                let m = ok.metrics.expect("metrics");
                (
                    i64::from(m.total_tokens.unwrap_or(0)),
                    m.cost_usd.unwrap_or(0.0),
                )
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results
        .into_iter()
        .fold((0, 0.0), |(t, c), (t2, c2)| (t + t2, c + c2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_across_a_graceful_restart_lose_no_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = format!(
        "[ledger]\nsqlite_path = \"{}\"\n",
        dir.path().join("usage.db").display()
    );
    ten_thousand_calls(&ledger).await;
}

/// 2 × 5,000 calls with a graceful restart between, with `ledger` (the
/// `[ledger]` table): every row there once, `usage` equal to the calls' sums.
pub(crate) async fn ten_thousand_calls(ledger: &str) {
    let text = format!(
        r#"
[providers.echo]
kind = "echo"

[[models]]
id = "priced"
provider = "echo"
input_usd_per_mtok = 1.5
output_usd_per_mtok = 3.0

{ledger}
"#
    );
    let mut tokens = 0;
    let mut cost = 0.0;
    for run in 0..2 {
        let core = Core::start(support::config(&text)).await;
        let (t, c) = run_calls(&core, run).await;
        tokens += t;
        cost += c;
        core.stop().await;
    }
    let cfg = support::config(&text);
    let store = open_store(&cfg).await.expect("ledger");
    let rows = store.rows(0, i64::MAX, None).await.expect("rows");
    assert_eq!(rows.len(), 2 * CALLS_PER_RUN);
    let mut ids: Vec<_> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2 * CALLS_PER_RUN, "every call once");

    let args = UsageArgs {
        config: None,
        since: Some("1d".parse().expect("duration")),
        month: None,
        by: vec![GroupBy::Sub],
        sub: None,
        format: Format::Json,
    };
    let report: serde_json::Value =
        serde_json::from_str(&usage(&cfg, &args).await.expect("usage")).expect("json");
    let groups = report.as_array().expect("array");
    assert_eq!(groups.len(), 2, "{report}");
    let sum = |key: &str| {
        groups
            .iter()
            .map(|g| g[key].as_f64().expect(key))
            .sum::<f64>()
    };
    assert_eq!(sum("calls") as usize, 2 * CALLS_PER_RUN);
    assert_eq!(
        sum("total_tokens") as i64,
        tokens,
        "usage = sum of final_metrics tokens"
    );
    assert!(
        (sum("cost_usd") - cost).abs() < 1e-9,
        "{} vs {cost}",
        sum("cost_usd")
    );
}

/// The value of a counter in the core's `/metrics` (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    support::sample(metrics, name, &[]).unwrap_or(0.0)
}

/// Sets this process's soft file-size limit (`prlimit`, util-linux): past
/// it every write to a regular file fails, as on a full disk.
fn file_size_limit(soft: &str) {
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--fsize={soft}:"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit");
}

#[tokio::test]
async fn a_full_disk_with_fail_open_keeps_calls_working_and_loses_no_accepted_row() {
    full_disk("fail_open").await;
}

#[tokio::test]
async fn a_full_disk_with_fail_closed_refuses_calls_until_it_has_room_again() {
    full_disk("fail_closed").await;
}

/// An SQLite ledger whose disk fills (writes fail, as on a full disk)
/// under `[limits] on_backend_failure = failure`: no crash; the error is
/// counted and logged naming the ledger file; calls answer (fail_open) or
/// are refused with `UNAVAILABLE` naming the ledger (fail_closed) until
/// the disk has room; no row accepted meanwhile is lost.
async fn full_disk(failure: &str) {
    // A write past the limit must fail (EFBIG), not kill the process.
    let _ignore = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))
        .expect("SIGXFSZ handler");
    let logs = crate::quota_common::capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("usage.db");
    let text = format!(
        "[limits]\non_backend_failure = \"{failure}\"\n\
         [ledger]\nsqlite_path = \"{}\"\nflush_interval = \"10ms\"\n",
        db.display()
    );
    let core = Core::start_with_metrics(support::config(&text)).await;
    let call = |i: usize| {
        let req = support::request(Some("echo"), &[], &["disk test"], &format!("d{i}"));
        let mut client = core.client();
        async move {
            let answer = tokio::time::timeout(support::WAIT, client.execute(req))
                .await
                .expect("answered in time");
            answer.map(|a| {
                let ok = matches!(
                    a.get_ref().result,
                    Some(execute_response::Result::Success(_))
                );
                assert!(ok, "{a:?}");
            })
        }
    };
    let wait_for = |name: &'static str| {
        let core = &core;
        async move {
            let deadline = std::time::Instant::now() + support::WAIT;
            loop {
                if counter(&core.scrape().await, name) >= 1.0 {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{name} never counted");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    call(0).await.expect("a call");
    wait_for("vibectl_ledger_rows_written_total").await;
    // The disk is full: the next row cannot be written.
    file_size_limit("1");
    call(1).await.expect("the ledger has not failed yet");
    wait_for("vibectl_ledger_write_errors_total").await;
    let log = logs.text();
    let line = log
        .lines()
        .find(|l| l.contains("usage ledger write failed"))
        .unwrap_or_else(|| panic!("no log line: {log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!("SQLite file {}", db.display())),
        "names the ledger file: {line}"
    );
    let mut calls = 2;
    for i in calls..calls + 10 {
        match (failure, call(i).await) {
            ("fail_open", Ok(())) => {}
            ("fail_closed", Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(status.message().contains("usage ledger"), "{status:?}");
            }
            (_, answer) => panic!("{failure}: {answer:?}"),
        }
    }
    calls += 10;
    // Room again: the queued rows are written, and with fail_closed calls
    // are let through again (bounded wait: the writer retries with backoff).
    file_size_limit("unlimited");
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let answer = call(calls).await;
        calls += 1;
        if answer.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    core.stop().await;
    let rows = open_store(&support::config(&text))
        .await
        .expect("ledger")
        .rows(0, i64::MAX, None)
        .await
        .expect("rows");
    let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((rows.len(), ids.len()), (calls, calls), "every call once");
    let refused = rows.iter().filter(|r| r.status == "UNAVAILABLE").count();
    match failure {
        "fail_open" => assert_eq!(refused, 0),
        _ => assert!(refused >= 10, "{rows:#?}"),
    }
}
