//! The core with the built-in `echo` model, no network: server info, unary
//! and streaming calls, request ids, model errors, missing keys, structured
//! output, the edge's identity header. The real `serve` runs in-process on
//! 127.0.0.1:0; the client is the generated tonic client over h2c. Health,
//! the Unix socket listener and reflection are [`crate::core_serving`].

use crate::support;

use support::{
    Core, UNSET_KEY_ENV, answer, assert_names, complete_of, config, error_of, failure, kinds,
    metrics_of, request, success, texts,
};
use vibectl_proto::{GetServerInfoRequest, execute_response};

pub(crate) fn echo_config(extra: &str) -> vibectl_config::Config {
    config(&format!(
        r#"
[core]
server_name = "test-core"
{extra}

[providers.echo]
kind = "echo"

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "{UNSET_KEY_ENV}"

[providers.anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "{UNSET_KEY_ENV}"

[[models]]
id = "gpt-4o-mini"
provider = "openai"
display_name = "GPT-4o mini"
aliases = ["4o-mini"]
max_context_length = 128000
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6

[[models]]
id = "echo"
provider = "echo"
display_name = "Echo"
aliases = ["parrot"]
max_context_length = 1000000
input_usd_per_mtok = 0.0
output_usd_per_mtok = 0.0

[[models]]
id = "claude-haiku-4-5"
provider = "anthropic"
aliases = ["haiku"]
"#
    ))
}

#[tokio::test]
async fn server_info_without_keys_lists_echo_answering_every_name() {
    let core = Core::start(echo_config("")).await;
    let info = answer(core.client().get_server_info(GetServerInfoRequest {})).await;
    assert_eq!(info.default_model, "echo", "no provider has a key, so echo");
    assert!(
        info.server_name
            .starts_with(&format!("test-core {} (Rust)", env!("CARGO_PKG_VERSION"))),
        "{}",
        info.server_name
    );
    assert_eq!(info.server_version, "0.11.6", "what vibectl 0.11.6 accepts");
    let ids: Vec<&str> = info
        .available_models
        .iter()
        .map(|m| m.model_id.as_str())
        .collect();
    assert_eq!(ids, ["echo"], "only models that can answer");
    let echo = &info.available_models[0];
    assert_eq!(echo.provider, "echo");
    assert!(
        echo.display_name.starts_with("Echo — no provider API key"),
        "{}",
        echo.display_name
    );
    assert_eq!(echo.max_context_length, Some(1_000_000));
    assert!(echo.supports_streaming);
    for alias in ["haiku", "parrot", "claude-3.7-sonnet", "gpt-4o", "4o-mini"] {
        assert_eq!(
            info.model_aliases.get(alias).map(String::as_str),
            Some("echo"),
            "{alias}"
        );
    }
    let limits = info.limits.expect("limits message present");
    assert_eq!(limits.max_requests_per_minute, None);
    let resp = core
        .execute(request(Some("any-model-at-all"), &[], &["hi"], "r"))
        .await;
    let ok = success(resp);
    assert_eq!(ok.actual_model_used, "echo");
    core.stop().await;
}

#[tokio::test]
async fn execute_echo_returns_text_and_token_metrics() {
    let core = Core::start(echo_config("")).await;
    let req = request(
        Some("echo"),
        &["You are terse."],
        &["Hello, world!", "How are you?"],
        "req-1",
    );
    let resp = core.execute(req).await;
    assert_eq!(resp.request_id, "req-1");
    let ok = success(resp);
    assert_eq!(ok.response_text, "Hello, world!\n\nHow are you?");
    assert_eq!(ok.actual_model_used, "echo");
    let m = ok.metrics.expect("metrics");
    // "You are terse." = 4; "Hello, world!" = 4; "How are you?" = 4.
    assert_eq!(m.input_tokens, Some(12));
    assert_eq!(m.output_tokens, Some(8));
    assert_eq!(m.total_tokens, Some(20));
    assert_eq!(m.cost_usd, Some(0.0));
    assert_eq!(m.retry_count, 0);
    assert!(m.timestamp > 1_600_000_000);
    core.stop().await;
}

#[tokio::test]
async fn stream_echo_gives_chunks_then_complete_then_metrics() {
    let core = Core::start(echo_config("")).await;
    let text = "the quick brown fox jumps over the lazy dog";
    let chunks = core
        .stream(request(Some("echo"), &[], &[text], "req-2"))
        .await;
    let kinds = kinds(&chunks);
    let n = kinds.len();
    assert!(n >= 5, "{kinds:?}");
    assert!(kinds[..n - 2].iter().all(|k| *k == "text"), "{kinds:?}");
    assert!(n - 2 >= 3, "at least 3 text chunks: {kinds:?}");
    assert_eq!(&kinds[n - 2..], ["complete", "metrics"]);
    assert_eq!(texts(&chunks).concat(), text);
    assert!(chunks.iter().all(|c| c.request_id == "req-2"));
    let done = complete_of(&chunks[n - 2]);
    assert_eq!(done.actual_model_used, "echo");
    let m = metrics_of(&chunks[n - 1]);
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.total_tokens),
        (Some(9), Some(9), Some(18))
    );
    core.stop().await;
}

#[tokio::test]
async fn empty_request_id_gets_a_uuid_echoed_everywhere() {
    let core = Core::start(echo_config("")).await;
    let chunks = core
        .stream(request(None, &[], &["one two three"], ""))
        .await;
    let id = chunks[0].request_id.clone();
    assert!(uuid_v4_like(&id), "{id}");
    assert!(chunks.iter().all(|c| c.request_id == id));
    let resp = core.execute(request(None, &[], &["hi"], "")).await;
    assert!(
        uuid_v4_like(&resp.request_id) && resp.request_id != id,
        "{}",
        resp.request_id
    );
    core.stop().await;
}

fn uuid_v4_like(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts[2].starts_with('4')
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn unknown_model_is_model_not_found_listing_models_and_aliases() {
    let core = Core::start(echo_config("echo_fallback = false")).await;
    let resp = core
        .execute(request(Some("gpt-9"), &[], &["hi"], "r"))
        .await;
    let e = failure(resp);
    assert_eq!(e.error_code, "MODEL_NOT_FOUND");
    assert_names(&e.error_message, &["gpt-9", "echo", "parrot"]);
    // Only the models that can answer are offered (no key: not the others).
    assert!(!e.error_message.contains("haiku"), "{}", e.error_message);
    let chunks = core.stream(request(Some("gpt-9"), &[], &["hi"], "r")).await;
    assert_eq!(kinds(&chunks), ["error"]);
    let e = error_of(&chunks[0]);
    assert_eq!(e.error_code, "MODEL_NOT_FOUND");
    core.stop().await;
}

#[tokio::test]
async fn no_model_and_no_default_is_no_model() {
    let cfg = config(&format!(
        "[providers.openai]\nkind = \"openai\"\napi_key_env = \"{UNSET_KEY_ENV}\"\n\
         [[models]]\nid = \"gpt-4o-mini\"\nprovider = \"openai\"\n"
    ));
    let core = Core::start(cfg).await;
    let resp = core.execute(request(None, &[], &["hi"], "r")).await;
    let e = failure(resp);
    assert_eq!(e.error_code, "NO_MODEL");
    assert_names(&e.error_message, &["gpt-4o-mini"]);
    core.stop().await;
}

#[tokio::test]
async fn aliases_and_configured_default_resolve() {
    let core = Core::start(echo_config("default_model = \"parrot\"")).await;
    let resp = core
        .execute(request(Some("parrot"), &[], &["hi there"], "r"))
        .await;
    let ok = success(resp);
    assert_eq!(ok.actual_model_used, "echo");
    assert_eq!(ok.response_text, "hi there");
    let chunks = core.stream(request(None, &[], &["default"], "r")).await;
    let done = complete_of(&chunks[chunks.len() - 2]);
    assert_eq!(done.actual_model_used, "echo");
    core.stop().await;
}

#[tokio::test]
async fn missing_api_key_is_execution_failed_naming_the_variable() {
    let core = Core::start(echo_config("echo_fallback = false")).await;
    let resp = core
        .execute(request(Some("4o-mini"), &[], &["hi"], "r"))
        .await;
    let e = failure(resp);
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(e.error_details.as_deref(), Some("missing_api_key"));
    assert_names(&e.error_message, &["openai", "gpt-4o-mini", UNSET_KEY_ENV]);
    core.stop().await;
}

#[tokio::test]
async fn echo_answers_structured_output_with_json_the_schema_accepts() {
    let core = Core::start(echo_config("")).await;
    let mut req = request(Some("echo"), &[], &["list the pods"], "r-json");
    // The shape of vibectl's planner response: a discriminated union.
    req.response_model_schema = Some(
        serde_json::json!({
            "$defs": {
                "Thought": {"type": "object", "required": ["action_type", "text"],
                    "properties": {"action_type": {"const": "THOUGHT"}, "text": {"type": "string"}}},
                "Done": {"type": "object", "required": ["action_type"],
                    "properties": {"action_type": {"const": "DONE"}}}
            },
            "type": "object",
            "required": ["action"],
            "properties": {"action": {"oneOf": [{"$ref": "#/$defs/Thought"}, {"$ref": "#/$defs/Done"}]}}
        })
        .to_string(),
    );
    let resp = core.execute(req).await;
    let ok = success(resp);
    let answer: serde_json::Value =
        serde_json::from_str(&ok.response_text).expect("the answer is JSON");
    assert_eq!(
        answer,
        serde_json::json!({"action": {"action_type": "THOUGHT", "text": "list the pods"}})
    );
    assert!(ok.metrics.and_then(|m| m.output_tokens).unwrap_or(0) > 0);
    core.stop().await;
}

#[tokio::test]
async fn invalid_response_schema_fails_clearly() {
    let core = Core::start(echo_config("")).await;
    let mut req = request(Some("echo"), &[], &["hi"], "r");
    req.response_model_schema = Some("{not json".to_owned());
    let chunks = core.stream(req).await;
    assert_eq!(kinds(&chunks), ["error"]);
    let e = error_of(&chunks[0]);
    assert_eq!(e.error_code, "EXECUTION_FAILED");
    assert_eq!(e.error_details.as_deref(), Some("invalid_response_schema"));
    assert_names(&e.error_message, &["response_model_schema"]);
    core.stop().await;
}

#[tokio::test]
async fn calls_with_the_edge_identity_header_work() {
    let core = Core::start(echo_config("")).await;
    let mut req = tonic::Request::new(request(Some("echo"), &[], &["from the edge"], "sub-1"));
    req.metadata_mut().insert(
        vibectl_proto::wire::CALLER_HEADER,
        "alice@example\tjti=j-1".parse().expect("header"),
    );
    let resp = answer(core.client().execute(req)).await;
    assert_eq!(resp.request_id, "sub-1");
    assert!(
        matches!(resp.result, Some(execute_response::Result::Success(_))),
        "{resp:?}"
    );
    core.stop().await;
}
