//! The core against a fake OpenAI Chat Completions server (a real HTTP
//! server speaking the documented SSE format): incremental streaming,
//! the request on the wire, usage and cost, HTTP errors, retries, broken
//! streams and cancellation reaching the provider.

use crate::providers_common::{Provider, assert_error_after, assert_retried_once};
use crate::support::{
    Core, WAIT, assert_names, config, error_of, failure, key_file, request, success, texts,
};
use vibectl_tests::fake_openai::{OpenAiDialect, Script};

const KEY: &str = "sk-test-0123456789abcdef";

const OPENAI: Provider<OpenAiDialect> = Provider::new(
    "openai",
    ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "4o-mini"],
    (0.15, 0.6),
    KEY,
);

#[tokio::test]
async fn streams_incrementally_then_complete_then_metrics_with_cost() {
    let text = ["Hello", ", ", "world", "!"];
    let t = OPENAI.start(Script::text(text).usage(12, 4).gated()).await;
    let req = request(
        Some("4o-mini"),
        &["sys one", "sys two"],
        &["user one", "user two"],
        "oa-1",
    );
    // The first delta arrives while the fake still holds the rest back.
    let chunks = OPENAI.stream_gated(&t, req, "Hello").await;
    OPENAI.assert_streamed(&chunks, &text, "oa-1", (12, 4));

    let reqs = t.fake.requests();
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
    t.core.stop().await;
}

#[tokio::test]
async fn response_schema_becomes_a_strict_json_schema_format() {
    let t = OPENAI.start(Script::text([r#"{"ok":true}"#])).await;
    let mut req = OPENAI.request("answer", "oa-2");
    let schema = serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
    req.response_model_schema = Some(schema.to_string());
    let chunks = t.core.stream(req).await;
    assert_eq!(texts(&chunks).concat(), r#"{"ok":true}"#);
    let body = &t.fake.requests()[0].body;
    assert_eq!(
        body["response_format"],
        serde_json::json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": true}})
    );
    assert!(
        body["messages"].as_array().is_some_and(|m| m.len() == 1),
        "no system message when none given"
    );
    t.core.stop().await;
}

#[tokio::test]
async fn unparseable_schema_fails_before_any_call() {
    let t = OPENAI.start(Script::text(["x"])).await;
    let mut req = OPENAI.request("answer", "oa-3");
    req.response_model_schema = Some("{\"type\": ".to_owned());
    let chunks = t.core.stream(req).await;
    let e = error_of(&chunks[0]);
    assert_eq!(e.error_details.as_deref(), Some("invalid_response_schema"));
    assert_names(&e.error_message, &["openai", "gpt-4o-mini"]);
    assert!(t.fake.requests().is_empty());
    t.core.stop().await;
}

#[tokio::test]
async fn a_redirect_is_an_error_and_the_key_goes_nowhere_else() {
    OPENAI
        .assert_redirect_not_followed("/chat/completions")
        .await;
}

#[tokio::test]
async fn http_401_is_execution_failed_without_the_key() {
    let message = format!(
        "Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."
    );
    let t = OPENAI.start(Script::error(401, message)).await;
    let resp = t.core.execute(OPENAI.request("hi", "oa-4")).await;
    assert!(!format!("{resp:?}").contains("0123456789abcdef"));
    OPENAI.assert_401_without_key(
        resp,
        &[
            "`openai`",
            "`gpt-4o-mini`",
            "401",
            "Incorrect API key provided",
            "invalid_api_key",
        ],
    );
    assert_eq!(t.fake.requests().len(), 1, "a 401 is not retried");
    t.core.stop().await;
}

#[tokio::test]
async fn server_error_then_success_is_retried_once() {
    let script = Script::error(
        500,
        "The server had an error while processing your request.",
    )
    .then(Script::text(["fine"]).usage(3, 1));
    let t = OPENAI.start_with(script, "max_retries = 2", "").await;
    let chunks = t.core.stream(OPENAI.request("hi", "oa-5")).await;
    assert_retried_once(&chunks);
    assert_eq!(t.fake.requests().len(), 2);
    t.core.stop().await;
}

#[tokio::test]
async fn rate_limit_honours_retry_after_and_gives_up_after_max_retries() {
    let t = OPENAI
        .start_with(
            Script::error(429, "Rate limit reached").retry_after("0"),
            "max_retries = 2\nretry_initial_backoff = \"1h\"",
            "",
        )
        .await;
    // With a 1 h backoff this only finishes because retry-after: 0 wins.
    let resp = t.core.execute(OPENAI.request("hi", "oa-6")).await;
    let e = failure(resp);
    assert_eq!(e.error_details.as_deref(), Some("provider_http_429"));
    assert_names(&e.error_message, &["after 2 retries"]);
    assert_eq!(t.fake.requests().len(), 3);
    t.core.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_sent_once_the_provider_refused_the_old_one() {
    const ROTATED: &str = "sk-rotated-fedcba9876543210";
    let script = Script::error(401, "Incorrect API key provided").then(Script::text(["ok"]));
    let t = OPENAI.start(script).await;
    // Rotated after start: the first call still sends the key the core
    // looked up then (no file read on a call's path), and is refused.
    t.rotate_key(ROTATED);
    let refused = t.core.execute(OPENAI.request("hi", "oa-k1")).await;
    OPENAI.assert_401_without_key(refused, &["Incorrect API key provided"]);
    let answered = t.core.execute(OPENAI.request("hi", "oa-k2")).await;
    assert_eq!(success(answered).response_text, "ok");
    let sent: Vec<String> = t
        .fake
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sent, [format!("Bearer {KEY}"), format!("Bearer {ROTATED}")]);
    t.core.stop().await;
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
    let resp = core.execute(OPENAI.request("hi", "oa-7")).await;
    let e = failure(resp);
    assert_eq!(e.error_details.as_deref(), Some("provider_connect_failed"));
    assert_names(&e.error_message, &["after 1 retry"]);
    core.stop().await;
}

#[tokio::test]
async fn stream_cut_midway_gives_an_error_chunk_after_the_text() {
    let t = OPENAI
        .start(Script::text(["one ", "two ", "three"]).cut_after(2))
        .await;
    let chunks = t.core.stream(OPENAI.request("count", "oa-8")).await;
    let e = assert_error_after(&chunks, &["one ", "two "], "provider_stream_broken");
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(
        t.fake.requests().len(),
        1,
        "no retry once output was produced"
    );
    t.core.stop().await;
}

#[tokio::test]
async fn connection_aborted_midway_gives_an_error_chunk_after_the_text() {
    let t = OPENAI
        .start(Script::text(["one ", "two ", "three"]).abort_after(1))
        .await;
    let chunks = t.core.stream(OPENAI.request("count", "oa-8b")).await;
    assert_error_after(&chunks, &["one "], "provider_stream_broken");
    t.core.stop().await;
}

#[tokio::test]
async fn error_event_in_the_stream_is_reported() {
    let script = Script::text(["partial"]).error_event("server_error", "The model crashed");
    let t = OPENAI.start(script).await;
    let chunks = t.core.stream(OPENAI.request("x", "oa-9")).await;
    let e = assert_error_after(&chunks, &["partial"], "provider_error_server_error");
    assert_names(&e.error_message, &["The model crashed"]);
    t.core.stop().await;
}

#[tokio::test]
async fn client_dropping_the_stream_closes_the_provider_connection() {
    let t = OPENAI
        .start(Script::text(["first", "never sent"]).gated())
        .await;
    let req = OPENAI.request("long answer", "oa-10");
    OPENAI.assert_drop_closes(&t, req, "first").await;
    t.core.stop().await;
}

#[tokio::test]
async fn provider_timeout_ends_a_stalled_stream() {
    let t = OPENAI
        .start_with(
            Script::text(["first", "late"]).gated(),
            "timeout = \"300ms\"",
            "",
        )
        .await;
    let chunks = t.core.stream(OPENAI.request("x", "oa-11")).await;
    assert_error_after(&chunks, &["first"], "provider_timeout");
    assert!(
        t.fake.wait_closed(WAIT).await,
        "the stalled provider call was dropped"
    );
    t.core.stop().await;
}

#[tokio::test]
async fn unary_execute_collects_text_and_metrics() {
    let t = OPENAI
        .start(Script::text(["Pods ", "are ", "running."]).usage(20, 5))
        .await;
    let resp = t
        .core
        .execute(request(
            Some("gpt-4o-mini"),
            &["sys"],
            &["status?"],
            "oa-12",
        ))
        .await;
    assert_eq!(resp.request_id, "oa-12");
    OPENAI.assert_unary(resp, "Pods are running.", (20, 5));
    t.core.stop().await;
}

#[tokio::test]
async fn unary_client_cancel_closes_the_provider_connection() {
    let t = OPENAI
        .start(Script::text(["first", "never sent"]).gated())
        .await;
    let mut client = t.core.client();
    let call = tokio::spawn(async move { client.execute(OPENAI.request("x", "oa-13")).await });
    assert!(
        t.fake.wait_requests(1, WAIT).await,
        "the provider was called"
    );
    call.abort();
    assert!(
        t.fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    t.core.stop().await;
}
