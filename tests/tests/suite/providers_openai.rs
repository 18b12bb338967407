//! The core against a fake OpenAI Chat Completions server (a real HTTP
//! server speaking the documented SSE format): incremental streaming,
//! the request on the wire, usage and cost, HTTP errors, retries, broken
//! streams and cancellation reaching the provider.

use crate::support;

use futures::StreamExt;
use support::{Core, WAIT, assert_cost, config, key_file, kinds, request, texts};
use vibectl_proto::{execute_response, stream_chunk::ChunkType};
use vibectl_tests::fake_openai::{FakeOpenAi, Script};
use vibectl_tests::harness::next_chunk;

const KEY: &str = "sk-test-0123456789abcdef";

/// A core whose `openai` provider points at `fake`, with its key in a file.
async fn core_for(fake: &FakeOpenAi, dir: &std::path::Path, provider_extra: &str) -> Core {
    let provider_extra = if provider_extra.contains("retry_initial_backoff") {
        provider_extra.to_owned()
    } else {
        format!("retry_initial_backoff = \"10ms\"\n{provider_extra}")
    };
    let cfg = config(&format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{base}"
api_key_file = "{key}"
{provider_extra}

[[models]]
id = "gpt-4o-mini"
provider = "openai"
upstream_model = "gpt-4o-mini-2024-07-18"
aliases = ["4o-mini"]
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
"#,
        base = fake.base_url(),
        key = key_file(dir, KEY),
    ));
    Core::start(cfg).await
}

#[tokio::test]
async fn streams_incrementally_then_complete_then_metrics_with_cost() {
    let fake = FakeOpenAi::start(
        Script::text(["Hello", ", ", "world", "!"])
            .usage(12, 4)
            .gated(),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let req = request(
        Some("4o-mini"),
        &["sys one", "sys two"],
        &["user one", "user two"],
        "oa-1",
    );
    let mut stream = core
        .client()
        .stream_execute(req)
        .await
        .expect("OK")
        .into_inner();

    // The first delta arrives while the fake still holds the rest back.
    let first = next_chunk(&mut stream).await;
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("Hello".into())));
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
        ["text", "text", "text", "text", "complete", "metrics"]
    );
    assert_eq!(texts(&chunks), ["Hello", ", ", "world", "!"]);
    assert!(chunks.iter().all(|c| c.request_id == "oa-1"));
    let Some(ChunkType::Complete(done)) = &chunks[4].chunk_type else {
        unreachable!()
    };
    assert_eq!(done.actual_model_used, "gpt-4o-mini");
    let Some(ChunkType::FinalMetrics(m)) = &chunks[5].chunk_type else {
        unreachable!()
    };
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.total_tokens),
        (Some(12), Some(4), Some(16))
    );
    assert_cost(m.cost_usd, 12.0 * 0.15 / 1e6 + 4.0 * 0.6 / 1e6);
    assert_eq!(m.retry_count, 0);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(r.body["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"]["include_usage"], true);
    assert_eq!(
        r.body["messages"],
        serde_json::json!([
            {"role": "system", "content": "sys one\n\nsys two"},
            {"role": "user", "content": "user one\n\nuser two"},
        ])
    );
    assert!(r.body.get("response_format").is_none());
    core.stop().await;
}

#[tokio::test]
async fn response_schema_becomes_a_strict_json_schema_format() {
    let fake = FakeOpenAi::start(Script::text([r#"{"ok":true}"#])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let mut req = request(Some("gpt-4o-mini"), &[], &["answer"], "oa-2");
    let schema = serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
    req.response_model_schema = Some(schema.to_string());
    let chunks = core.stream(req).await;
    assert_eq!(texts(&chunks).concat(), r#"{"ok":true}"#);
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["response_format"],
        serde_json::json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": true}})
    );
    assert!(
        body["messages"].as_array().is_some_and(|m| m.len() == 1),
        "no system message when none given"
    );
    core.stop().await;
}

#[tokio::test]
async fn unparseable_schema_fails_before_any_call() {
    let fake = FakeOpenAi::start(Script::text(["x"])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let mut req = request(Some("gpt-4o-mini"), &[], &["answer"], "oa-3");
    req.response_model_schema = Some("{\"type\": ".to_owned());
    let chunks = core.stream(req).await;
    let Some(ChunkType::Error(e)) = &chunks[0].chunk_type else {
        panic!("{chunks:?}")
    };
    assert_eq!(e.error_details.as_deref(), Some("invalid_response_schema"));
    assert!(e.error_message.contains("openai") && e.error_message.contains("gpt-4o-mini"));
    assert!(fake.requests().is_empty());
    core.stop().await;
}

#[tokio::test]
async fn http_401_is_execution_failed_without_the_key() {
    let message = format!(
        "Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    let fake = FakeOpenAi::start(Script::error(401, message)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let resp = core
        .execute(request(Some("gpt-4o-mini"), &[], &["hi"], "oa-4"))
        .await;
    let Some(execute_response::Result::Error(e)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(e.error_details.as_deref(), Some("provider_http_401"));
    for part in [
        "`openai`",
        "`gpt-4o-mini`",
        "401",
        "Incorrect API key provided",
        "invalid_api_key",
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
    assert!(!format!("{e:?}").contains("0123456789abcdef"));
    assert_eq!(fake.requests().len(), 1, "a 401 is not retried");
    core.stop().await;
}

#[tokio::test]
async fn server_error_then_success_is_retried_once() {
    let script = Script::error(
        500,
        "The server had an error while processing your request.",
    )
    .then(Script::text(["fine"]).usage(3, 1));
    let fake = FakeOpenAi::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "max_retries = 2").await;
    let chunks = core
        .stream(request(Some("gpt-4o-mini"), &[], &["hi"], "oa-5"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "complete", "metrics"]);
    let Some(ChunkType::FinalMetrics(m)) = &chunks[2].chunk_type else {
        unreachable!()
    };
    assert_eq!(m.retry_count, 1);
    assert_eq!(fake.requests().len(), 2);
    core.stop().await;
}

#[tokio::test]
async fn rate_limit_honours_retry_after_and_gives_up_after_max_retries() {
    let fake = FakeOpenAi::start(Script::error(429, "Rate limit reached").retry_after("0")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(
        &fake,
        dir.path(),
        "max_retries = 2\nretry_initial_backoff = \"1h\"",
    )
    .await;
    // With a 1 h backoff this only finishes because retry-after: 0 wins.
    let resp = core
        .execute(request(Some("gpt-4o-mini"), &[], &["hi"], "oa-6"))
        .await;
    let Some(execute_response::Result::Error(e)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(e.error_details.as_deref(), Some("provider_http_429"));
    assert!(
        e.error_message.contains("after 2 retries"),
        "{}",
        e.error_message
    );
    assert_eq!(fake.requests().len(), 3);
    core.stop().await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&format!(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n\
         api_key_file = \"{}\"\nmax_retries = 1\nretry_initial_backoff = \"10ms\"\n\
         [[models]]\nid = \"gpt-4o-mini\"\nprovider = \"openai\"\n",
        key_file(dir.path(), KEY)
    ));
    let core = Core::start(cfg).await;
    let resp = core
        .execute(request(Some("gpt-4o-mini"), &[], &["hi"], "oa-7"))
        .await;
    let Some(execute_response::Result::Error(e)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(e.error_details.as_deref(), Some("provider_connect_failed"));
    assert!(
        e.error_message.contains("after 1 retry"),
        "{}",
        e.error_message
    );
    core.stop().await;
}

#[tokio::test]
async fn stream_cut_midway_gives_an_error_chunk_after_the_text() {
    let fake = FakeOpenAi::start(Script::text(["one ", "two ", "three"]).cut_after(2)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let chunks = core
        .stream(request(Some("gpt-4o-mini"), &[], &["count"], "oa-8"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "text", "error"]);
    assert_eq!(texts(&chunks), ["one ", "two "]);
    let Some(ChunkType::Error(e)) = &chunks[2].chunk_type else {
        unreachable!()
    };
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(e.error_details.as_deref(), Some("provider_stream_broken"));
    assert_eq!(
        fake.requests().len(),
        1,
        "no retry once output was produced"
    );
    core.stop().await;
}

#[tokio::test]
async fn connection_aborted_midway_gives_an_error_chunk_after_the_text() {
    let fake = FakeOpenAi::start(Script::text(["one ", "two ", "three"]).abort_after(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let chunks = core
        .stream(request(Some("gpt-4o-mini"), &[], &["count"], "oa-8b"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "error"]);
    assert_eq!(texts(&chunks), ["one "]);
    let Some(ChunkType::Error(e)) = &chunks[1].chunk_type else {
        unreachable!()
    };
    assert_eq!(e.error_details.as_deref(), Some("provider_stream_broken"));
    core.stop().await;
}

#[tokio::test]
async fn error_event_in_the_stream_is_reported() {
    let fake = FakeOpenAi::start(
        Script::text(["partial"]).error_event("server_error", "The model crashed"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let chunks = core
        .stream(request(Some("gpt-4o-mini"), &[], &["x"], "oa-9"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "error"]);
    let Some(ChunkType::Error(e)) = &chunks[1].chunk_type else {
        unreachable!()
    };
    assert_eq!(
        e.error_details.as_deref(),
        Some("provider_error_server_error")
    );
    assert!(
        e.error_message.contains("The model crashed"),
        "{}",
        e.error_message
    );
    core.stop().await;
}

#[tokio::test]
async fn client_dropping_the_stream_closes_the_provider_connection() {
    let fake = FakeOpenAi::start(Script::text(["first", "never sent"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let req = request(Some("gpt-4o-mini"), &[], &["long answer"], "oa-10");
    let mut stream = core
        .client()
        .stream_execute(req)
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
async fn provider_timeout_ends_a_stalled_stream() {
    let fake = FakeOpenAi::start(Script::text(["first", "late"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "timeout = \"300ms\"").await;
    let chunks = core
        .stream(request(Some("gpt-4o-mini"), &[], &["x"], "oa-11"))
        .await;
    assert_eq!(kinds(&chunks), ["text", "error"]);
    let Some(ChunkType::Error(e)) = &chunks[1].chunk_type else {
        unreachable!()
    };
    assert_eq!(e.error_details.as_deref(), Some("provider_timeout"));
    assert!(
        fake.wait_closed(WAIT).await,
        "the stalled provider call was dropped"
    );
    core.stop().await;
}

#[tokio::test]
async fn unary_execute_collects_text_and_metrics() {
    let fake = FakeOpenAi::start(Script::text(["Pods ", "are ", "running."]).usage(20, 5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let resp = core
        .execute(request(
            Some("gpt-4o-mini"),
            &["sys"],
            &["status?"],
            "oa-12",
        ))
        .await;
    assert_eq!(resp.request_id, "oa-12");
    let Some(execute_response::Result::Success(ok)) = resp.result else {
        panic!("{resp:?}")
    };
    assert_eq!(ok.response_text, "Pods are running.");
    assert_eq!(ok.actual_model_used, "gpt-4o-mini");
    let m = ok.metrics.expect("metrics");
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.total_tokens),
        (Some(20), Some(5), Some(25))
    );
    assert_cost(m.cost_usd, 20.0 * 0.15 / 1e6 + 5.0 * 0.6 / 1e6);
    core.stop().await;
}

#[tokio::test]
async fn unary_client_cancel_closes_the_provider_connection() {
    let fake = FakeOpenAi::start(Script::text(["first", "never sent"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "").await;
    let mut client = core.client();
    let call = tokio::spawn(async move {
        client
            .execute(request(Some("gpt-4o-mini"), &[], &["x"], "oa-13"))
            .await
    });
    assert!(fake.wait_requests(1, WAIT).await, "the provider was called");
    call.abort();
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    core.stop().await;
}
