//! The core against a fake Anthropic Messages API server (a real HTTP server
//! speaking the documented SSE events): incremental streaming, the request
//! on the wire, usage from `message_start`/`message_delta`, errors, retries,
//! broken streams and cancellation reaching the provider.

use crate::providers_common::{Provider, assert_error_after, assert_retried_once};
use crate::support::{assert_names, request, texts};
use vibectl_tests::fake_anthropic::{AnthropicDialect, Script};

const KEY: &str = "sk-ant-test-fedcba9876543210";

const ANTHROPIC: Provider<AnthropicDialect> = Provider::new(
    "anthropic",
    ["claude-haiku-4-5", "claude-haiku-4-5-20251001", "haiku"],
    (1.0, 5.0),
    KEY,
);

#[tokio::test]
async fn streams_incrementally_with_usage_from_start_and_delta() {
    let text = ["Hi", " there", "."];
    let t = ANTHROPIC
        .start(Script::text(text).usage(25, 15).gated())
        .await;
    let req = request(
        Some("haiku"),
        &["be brief", "be kind"],
        &["hello", "again"],
        "an-1",
    );
    let chunks = ANTHROPIC.stream_gated(&t, req, "Hi").await;
    ANTHROPIC.assert_streamed(&chunks, &text, "an-1", (25, 15));

    let reqs = t.fake.requests();
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
    t.core.stop().await;
}

#[tokio::test]
async fn max_output_tokens_and_schema_instruction_are_sent() {
    let t = ANTHROPIC
        .start_with(Script::text([r#"{"n":1}"#]), "", "max_output_tokens = 1024")
        .await;
    let mut req = ANTHROPIC.request("give n", "an-2");
    req.response_model_schema =
        Some(r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.to_owned());
    let chunks = t.core.stream(req).await;
    assert_eq!(texts(&chunks).concat(), r#"{"n":1}"#);
    let body = &t.fake.requests()[0].body;
    assert_eq!(body["max_tokens"], 1024);
    let system = body["system"].as_str().expect("system prompt");
    assert!(
        system.contains("JSON schema") && system.contains(r#""n":{"type":"integer"}"#),
        "{system}"
    );
    t.core.stop().await;
}

#[tokio::test]
async fn a_redirect_is_an_error_and_the_key_goes_nowhere_else() {
    ANTHROPIC.assert_redirect_not_followed("/messages").await;
}

#[tokio::test]
async fn http_401_is_execution_failed_without_the_key() {
    let t = ANTHROPIC
        .start(Script::error(401, format!("invalid x-api-key {KEY}")))
        .await;
    let resp = t
        .core
        .execute(request(Some("haiku"), &[], &["hi"], "an-3"))
        .await;
    ANTHROPIC.assert_401_without_key(
        resp,
        &[
            "`anthropic`",
            "`claude-haiku-4-5`",
            "401",
            "invalid x-api-key",
            "authentication_error",
        ],
    );
    assert_eq!(t.fake.requests().len(), 1);
    t.core.stop().await;
}

#[tokio::test]
async fn overloaded_then_success_is_retried_once() {
    let script = Script::error(529, "Overloaded").then(Script::text(["ok"]).usage(5, 1));
    let t = ANTHROPIC.start(script).await;
    let chunks = t.core.stream(ANTHROPIC.request("hi", "an-4")).await;
    let m = assert_retried_once(&chunks);
    assert_eq!((m.input_tokens, m.output_tokens), (Some(5), Some(1)));
    assert_eq!(t.fake.requests().len(), 2);
    t.core.stop().await;
}

#[tokio::test]
async fn error_event_mid_stream_is_an_error_chunk() {
    let script = Script::text(["partial"]).error_event("overloaded_error", "Overloaded");
    let t = ANTHROPIC.start(script).await;
    let chunks = t.core.stream(ANTHROPIC.request("x", "an-5")).await;
    let e = assert_error_after(&chunks, &["partial"], "provider_error_overloaded_error");
    assert_names(&e.error_message, &["Overloaded"]);
    t.core.stop().await;
}

#[tokio::test]
async fn stream_cut_midway_gives_an_error_chunk_after_the_text() {
    let t = ANTHROPIC
        .start(Script::text(["a", "b", "c"]).cut_after(1))
        .await;
    let chunks = t.core.stream(ANTHROPIC.request("x", "an-6")).await;
    assert_error_after(&chunks, &["a"], "provider_stream_broken");
    t.core.stop().await;
}

#[tokio::test]
async fn client_dropping_the_stream_closes_the_provider_connection() {
    let t = ANTHROPIC
        .start(Script::text(["first", "never sent"]).gated())
        .await;
    let req = request(Some("haiku"), &[], &["x"], "an-7");
    ANTHROPIC.assert_drop_closes(&t, req, "first").await;
    t.core.stop().await;
}

#[tokio::test]
async fn unary_execute_collects_text_and_metrics() {
    let t = ANTHROPIC
        .start(Script::text(["All ", "good."]).usage(30, 2))
        .await;
    let resp = t
        .core
        .execute(request(Some("haiku"), &[], &["status?"], "an-8"))
        .await;
    ANTHROPIC.assert_unary(resp, "All good.", (30, 2));
    t.core.stop().await;
}
