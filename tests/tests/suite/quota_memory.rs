//! Token quotas with the memory backend, against the fake OpenAI and
//! Anthropic servers: a call that does not fit its daily budget is refused
//! with `limit-type: token` and `retry-after-ms` until midnight; every call
//! leaves one ledger row (SQLite in a temp dir) with what was charged; a
//! cancelled stream is charged what it produced; a provider error charges
//! nothing; a restarted core keeps the day's use (restored from the ledger);
//! shadow mode refuses nothing and counts would-be refusals.

use crate::{
    quota_common::{assert_daily_token_refusal, call, provider_toml, request},
    support::{self, Core, WAIT, with_header},
};
use std::path::Path;
use tonic::Code;
use vibectl_core::{
    ledger::{LedgerRow, open_store},
    usage_cli::{QuotaStatusArgs, quota_status},
};
use vibectl_tests::{
    fake_anthropic::FakeAnthropic,
    fake_openai::{FakeOpenAi, Script},
    harness::next_chunk,
};

/// A config: model `m` served by `kind` at `base`, a ledger in `dir`.
pub(crate) fn cfg_text(kind: &str, base: &str, dir: &Path, limits: &str) -> String {
    format!(
        r#"{provider}
[ledger]
sqlite_path = "{db}"
flush_interval = "10ms"

{limits}
"#,
        provider = provider_toml(kind, base, dir),
        db = dir.join("usage.db").display(),
    )
}

/// A core serving [`cfg_text`] in a new temp dir (kept by the caller),
/// and the config's text.
async fn started(kind: &str, base: &str, limits: &str) -> (tempfile::TempDir, String, Core) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = cfg_text(kind, base, dir.path(), limits);
    let core = Core::start(support::config(&text)).await;
    (dir, text, core)
}

pub(crate) async fn rows(config_text: &str) -> Vec<LedgerRow> {
    let cfg = support::config(config_text);
    let store = open_store(&cfg).await.expect("ledger");
    store.rows(0, i64::MAX, None).await.expect("rows")
}

const DAILY_100: &str = "[limits.global]\nmax_tokens_per_day = 100\n";

#[tokio::test]
async fn over_budget_is_refused_until_midnight_and_every_call_is_in_the_ledger() {
    // Each call reserves 2 (input estimate) + 20 (max output) and is charged
    // the provider's 30 + 2 = 32: three fit in 100, the fourth cannot.
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2)).await;
    let (_dir, text, core) = started("openai", &fake.base_url(), DAILY_100).await;
    for i in 0..3 {
        call(&core, "alice", &format!("ok-{i}"))
            .await
            .expect("fits");
    }
    let refused = call(&core, "alice", "over").await.expect_err("over budget");
    assert_daily_token_refusal(&refused);
    assert!(
        refused.message().contains("max_tokens_per_day") && refused.message().contains("day"),
        "{}",
        refused.message()
    );
    // GetServerInfo tells the caller what is left, in response metadata.
    let left = remaining_today(&core, "alice").await;
    assert!(left.starts_with("max_tokens_per_day=4;resets="), "{left}");
    // Another subject has its own budget.
    call(&core, "bob", "bob-1").await.expect("bob fits");
    core.stop().await;

    let rows = rows(&text).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let alice: Vec<_> = rows.iter().filter(|r| r.sub == "alice").collect();
    assert_eq!(alice.iter().filter(|r| r.outcome == "ok").count(), 3);
    for r in alice.iter().filter(|r| r.outcome == "ok") {
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.estimated),
            (30, 2, false)
        );
        assert_eq!(r.cost_nanousd, 30 * 1_000 + 2 * 2_000);
        assert_eq!((r.model.as_str(), r.provider.as_str()), ("m", "p"));
    }
    let over = alice
        .iter()
        .find(|r| r.request_id == "over")
        .expect("refused row");
    assert_eq!(
        (&*over.outcome, &*over.status),
        ("refused", "RESOURCE_EXHAUSTED")
    );
    assert_eq!((over.input_tokens, over.output_tokens), (0, 0));
}

#[tokio::test]
async fn a_restarted_core_keeps_the_days_use_from_the_ledger() {
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2)).await;
    let (_dir, text, core) = started("openai", &fake.base_url(), DAILY_100).await;
    call(&core, "alice", "1").await.expect("fits");
    call(&core, "alice", "2").await.expect("fits");
    core.stop().await;
    // 64 used: one more call fits (64 + 22 <= 100), a second does not.
    let core = Core::start(support::config(&text)).await;
    call(&core, "alice", "3").await.expect("fits after restart");
    let refused = call(&core, "alice", "4")
        .await
        .expect_err("use was restored");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    core.stop().await;
    // `quota status` reads the same numbers from the ledger.
    let cfg = support::config(&text);
    let status = quota_status(
        &cfg,
        &QuotaStatusArgs {
            config: None,
            sub: Some("alice".into()),
            format: vibectl_core::ledger::report::Format::Csv,
        },
    )
    .await
    .expect("status");
    assert!(
        status.contains("max_tokens_per_day") && status.contains(",96,0,100,"),
        "{status}"
    );
    // … and when the budget resets: the next UTC midnight.
    assert!(
        status.contains(&crate::quota_common::today().resets.to_string()),
        "{status}"
    );
}

/// What `sub` has left of its daily budget, as `GetServerInfo` says.
pub(crate) async fn remaining_today(core: &Core, sub: &str) -> String {
    remaining(core, sub).await.expect("remaining quota")
}

/// What `sub` has left of its budgets (`None`: no budget in force).
pub(crate) async fn remaining(core: &Core, sub: &str) -> Option<String> {
    let info = tokio::time::timeout(
        WAIT,
        core.client().get_server_info(with_header(
            tonic::Request::new(vibectl_proto::GetServerInfoRequest {}),
            "x-vibectl-caller",
            sub,
        )),
    )
    .await
    .expect("in time")
    .expect("server info");
    info.metadata()
        .get("x-vibectl-quota-remaining")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Starts a stream from a provider held after its first text chunk, hangs
/// up after that chunk, and returns the call's ledger row (once written)
/// and the text the client received. The quota charge is checked too: the
/// budget's remainder drops by exactly the row's tokens.
async fn cancel_after_first_chunk(core: &Core, text: &str, sub: &str) -> (LedgerRow, String) {
    let req = with_header(
        tonic::Request::new(request("cancelled")),
        "x-vibectl-caller",
        sub,
    );
    let mut stream = tokio::time::timeout(WAIT, core.client().stream_execute(req))
        .await
        .expect("answered in time")
        .expect("OK")
        .into_inner();
    let first = next_chunk(&mut stream).await;
    let Some(vibectl_proto::stream_chunk::ChunkType::TextChunk(received)) = first.chunk_type else {
        panic!("a text chunk first: {first:?}")
    };
    drop(stream);
    // Wait (bounded) until the core saw the cancellation and wrote the row.
    let deadline = std::time::Instant::now() + WAIT;
    let row = loop {
        if let Some(r) = rows(text)
            .await
            .into_iter()
            .find(|r| r.request_id == "cancelled")
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ledger row for the cancelled call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(row.outcome, "cancelled");
    // The reservation (2 + 20) is replaced by the charge (settled off the
    // call's path: wait for it, bounded).
    let charged = row.input_tokens + row.output_tokens;
    let expected = format!("max_tokens_per_day={};", 100 - charged);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = remaining_today(core, sub).await;
        if left.starts_with(&expected) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} vs {expected}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (row, received)
}

#[tokio::test]
async fn a_cancelled_anthropic_stream_is_charged_what_it_produced_and_an_error_nothing() {
    // Anthropic reports the input tokens at the start of the stream.
    let fake = FakeAnthropic::start(
        Script::text(["one", " two", " three", " four"])
            .usage(17, 4)
            .gated(),
    )
    .await;
    let (_dir, text, core) = started("anthropic", &fake.base_url(), DAILY_100).await;
    let (row, received) = cancel_after_first_chunk(&core, &text, "carol").await;
    assert_eq!(received, "one");
    assert_eq!(row.input_tokens, 17, "the provider's own input count");
    // The provider's count at the start of the stream (1), which is also
    // what was streamed: one text chunk.
    assert_eq!((row.output_tokens, row.estimated), (1, false));
    fake.release_gate();
    core.stop().await;

    let failing = FakeOpenAi::start(Script::error(500, "boom")).await;
    let (_dir, text, core) = started("openai", &failing.base_url(), DAILY_100).await;
    let answer = call(&core, "dave", "failed").await.expect("in-band error");
    assert!(matches!(
        answer.result,
        Some(vibectl_proto::execute_response::Result::Error(_))
    ));
    core.stop().await;
    let rows = rows(&text).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &*rows[0].outcome,
            rows[0].input_tokens,
            rows[0].output_tokens
        ),
        ("failed", 0, 0)
    );
}

#[tokio::test]
async fn a_cancelled_openai_stream_is_charged_the_streamed_text_as_an_estimate() {
    // OpenAI sends usage only in its last chunk, which a cancelled stream
    // never gets: the input and what was streamed are counted by the core,
    // and the row says so.
    let fake = FakeOpenAi::start(
        Script::text(["one two three", " four", " five"])
            .usage(40, 5)
            .gated(),
    )
    .await;
    let (_dir, text, core) = started("openai", &fake.base_url(), DAILY_100).await;
    let (row, received) = cancel_after_first_chunk(&core, &text, "olga").await;
    assert_eq!(received, "one two three");
    fake.release_gate();
    core.stop().await;
    // The core's counts: "hello world" is 2 tokens (what the reservation
    // took as the input estimate), "one two three" 3; not the 40 + 5 the
    // server would have reported at the end.
    assert_eq!(
        (row.input_tokens, row.output_tokens, row.estimated),
        (2, 3, true),
        "{row:?}"
    );
    assert_eq!(row.cost_nanousd, 2 * 1_000 + 3 * 2_000);
}

#[tokio::test]
async fn shadow_mode_refuses_nothing_and_counts_would_be_refusals() {
    let logs = crate::quota_common::capture_logs();
    let fake = FakeOpenAi::start(Script::text(["a"]).usage(30, 1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = "[limits.global]\nmax_tokens_per_day = 10\nenforce = false\n";
    let text = cfg_text("openai", &fake.base_url(), dir.path(), limits);
    let core = Core::start_with_metrics(support::config(&text)).await;
    for i in 0..3 {
        call(&core, "erin", &format!("s-{i}"))
            .await
            .expect("shadow mode refuses nothing");
    }
    let metrics = core.scrape().await;
    let would = support::sample(
        &metrics,
        "vibectl_quota_refusals_total",
        &[("limit_type", "token"), ("mode", "shadow")],
    );
    assert_eq!(would, Some(3.0), "{metrics}");
    assert!(
        support::sample(
            &metrics,
            "vibectl_quota_refusals_total",
            &[("mode", "enforced")]
        )
        .is_none(),
        "{metrics}"
    );
    assert!(
        support::sample(
            &metrics,
            "vibectl_quota_limit",
            &[("budget", "max_tokens_per_day")]
        ) == Some(10.0),
        "{metrics}"
    );
    // One WARN line per would-be refusal, naming the budget, its owner
    // and the numbers.
    let log = logs.text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("would have refused: quota exhausted (shadow mode"))
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    for line in lines {
        assert!(line.contains("WARN"), "{line}");
        for field in ["sub=\"erin\"", "budget=\"max_tokens_per_day\"", "limit=10"] {
            assert!(line.contains(field), "{field} in {line}");
        }
    }
    core.stop().await;
}
