//! The core against a fake Anthropic Messages API server (a real HTTP server
//! speaking the documented SSE events): incremental streaming, the request
//! on the wire, usage from `message_start`/`message_delta`, errors, retries,
//! broken streams and cancellation reaching the provider.

use crate::support;

use futures::StreamExt;
use support::{Core, WAIT, assert_cost, config, key_file, kinds, request, texts};
use vibectl_proto::{execute_response, stream_chunk::ChunkType};
use vibectl_tests::fake_anthropic::{FakeAnthropic, Script};
use vibectl_tests::harness::next_chunk;

const KEY: &str = "sk-ant-test-fedcba9876543210";

/// A core whose `anthropic` provider points at `fake`; `model_extra` is added
/// to the model's table.
async fn core_for(
    fake: &FakeAnthropic,
    dir: &std::path::Path,
    provider_extra: &str,
    model_extra: &str,
) -> Core {
    let cfg = config(&format!(
        r#"
[providers.anthropic]
kind = "anthropic"
base_url = "{base}"
api_key_file = "{key}"
retry_initial_backoff = "10ms"
{provider_extra}

[[models]]
id = "claude-haiku-4-5"
provider = "anthropic"
upstream_model = "claude-haiku-4-5-20251001"
aliases = ["haiku"]
input_usd_per_mtok = 1.0
output_usd_per_mtok = 5.0
{model_extra}
"#,
        base = fake.base_url(),
        key = key_file(dir, KEY),
    ));
    Core::start(cfg).await
}

#[tokio::test]
async fn streams_incrementally_with_usage_from_start_and_delta() {
    let fake =
        FakeAnthropic::start(Script::text(["Hi", " there", "."]).usage(25, 15).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let req = request(
        Some("haiku"),
        &["be brief", "be kind"],
        &["hello", "again"],
        "an-1",
    );
    let mut stream = core
        .client()
        .stream_execute(req)
        .await
        .expect("OK")
        .into_inner();

    let first = next_chunk(&mut stream).await;
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("Hi".into())));
    fake.release_gate();
    let mut chunks = vec![first];
    while let Some(c) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
    {
        chunks.push(c.expect("chunk"));
    }
    assert_eq!(
        kinds(&chunks),
        ["text", "text", "text", "complete", "metrics"]
    );
    assert_eq!(texts(&chunks), ["Hi", " there", "."]);
    assert!(chunks.iter().all(|c| c.request_id == "an-1"));
    let Some(ChunkType::Complete(done)) = &chunks[3].chunk_type else {
        unreachable!()
    };
    assert_eq!(done.actual_model_used, "claude-haiku-4-5");
    let Some(ChunkType::FinalMetrics(m)) = &chunks[4].chunk_type else {
        unreachable!()
    };
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.total_tokens),
        (Some(25), Some(15), Some(40))
    );
    assert_cost(m.cost_usd, 25.0 * 1.0 / 1e6 + 15.0 * 5.0 / 1e6);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.body["model"], "claude-haiku-4-5-20251001");
    assert_eq!(r.body["max_tokens"], 4096);
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["system"], "be brief\n\nbe kind");
    assert_eq!(
        r.body["messages"],
        serde_json::json!([{"role": "user", "content": "hello\n\nagain"}])
    );
    core.stop().await;
}

#[tokio::test]
async fn max_output_tokens_and_schema_instruction_are_sent() {
    let fake = FakeAnthropic::start(Script::text([r#"{"n":1}"#])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "max_output_tokens = 1024").await;
    let mut req = request(Some("claude-haiku-4-5"), &[], &["give n"], "an-2");
    req.response_model_schema =
        Some(r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.to_owned());
    let chunks = core.stream(req).await;
    assert_eq!(texts(&chunks).concat(), r#"{"n":1}"#);
    let body = &fake.requests()[0].body;
    assert_eq!(body["max_tokens"], 1024);
    let system = body["system"].as_str().expect("system prompt");
    assert!(
        system.contains("JSON schema") && system.contains(r#""n":{"type":"integer"}"#),
        "{system}"
    );
    core.stop().await;
}

#[tokio::test]
async fn http_401_is_execution_failed_without_the_key() {
    let fake = FakeAnthropic::start(Script::error(401, format!("invalid x-api-key {KEY}"))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let resp = core
        .execute(request(Some("haiku"), &[], &["hi"], "an-3"))
        .await;
    let Some(execute_response::Result::Error(e)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(e.error_details.as_deref(), Some("provider_http_401"));
    for part in [
        "`anthropic`",
        "`claude-haiku-4-5`",
        "401",
        "invalid x-api-key",
        "authentication_error",
    ] {
        assert!(
            e.error_message.contains(part),
            "{part} missing in {}",
            e.error_message
        );
    }
    assert!(
        !e.error_message.contains(KEY),
        "key leaked: {}",
        e.error_message
    );
    assert_eq!(fake.requests().len(), 1);
    core.stop().await;
}

#[tokio::test]
async fn overloaded_then_success_is_retried_once() {
    let fake = FakeAnthropic::start(
        Script::error(529, "Overloaded").then(Script::text(["ok"]).usage(5, 1)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let chunks = core
        .stream(request(Some("haiku"), &[], &["hi"], "an-4"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "complete", "metrics"]);
    let Some(ChunkType::FinalMetrics(m)) = &chunks[2].chunk_type else {
        unreachable!()
    };
    assert_eq!(m.retry_count, 1);
    assert_eq!((m.input_tokens, m.output_tokens), (Some(5), Some(1)));
    assert_eq!(fake.requests().len(), 2);
    core.stop().await;
}

#[tokio::test]
async fn error_event_mid_stream_is_an_error_chunk() {
    let fake = FakeAnthropic::start(
        Script::text(["partial"]).error_event("overloaded_error", "Overloaded"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let chunks = core
        .stream(request(Some("haiku"), &[], &["x"], "an-5"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "error"]);
    let Some(ChunkType::Error(e)) = &chunks[1].chunk_type else {
        unreachable!()
    };
    assert_eq!(
        e.error_details.as_deref(),
        Some("provider_error_overloaded_error")
    );
    assert!(
        e.error_message.contains("Overloaded"),
        "{}",
        e.error_message
    );
    core.stop().await;
}

#[tokio::test]
async fn stream_cut_midway_gives_an_error_chunk_after_the_text() {
    let fake = FakeAnthropic::start(Script::text(["a", "b", "c"]).cut_after(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let chunks = core
        .stream(request(Some("haiku"), &[], &["x"], "an-6"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "error"]);
    let Some(ChunkType::Error(e)) = &chunks[1].chunk_type else {
        unreachable!()
    };
    assert_eq!(e.error_details.as_deref(), Some("provider_stream_broken"));
    core.stop().await;
}

#[tokio::test]
async fn client_dropping_the_stream_closes_the_provider_connection() {
    let fake = FakeAnthropic::start(Script::text(["first", "never sent"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let mut stream = core
        .client()
        .stream_execute(request(Some("haiku"), &[], &["x"], "an-7"))
        .await
        .expect("OK")
        .into_inner();
    assert_eq!(
        next_chunk(&mut stream).await.chunk_type,
        Some(ChunkType::TextChunk("first".into()))
    );
    drop(stream);
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    core.stop().await;
}

#[tokio::test]
async fn unary_execute_collects_text_and_metrics() {
    let fake = FakeAnthropic::start(Script::text(["All ", "good."]).usage(30, 2)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "", "").await;
    let resp = core
        .execute(request(Some("haiku"), &[], &["status?"], "an-8"))
        .await;
    let Some(execute_response::Result::Success(ok)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(ok.response_text, "All good.");
    assert_eq!(ok.actual_model_used, "claude-haiku-4-5");
    let m = ok.metrics.expect("metrics");
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.total_tokens),
        (Some(30), Some(2), Some(32))
    );
    assert_cost(m.cost_usd, 30.0 / 1e6 + 2.0 * 5.0 / 1e6);
    core.stop().await;
}
