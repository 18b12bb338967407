//! A new user's journey along the README's manual path ("Running the
//! processes yourself"), not scripts/dev: the real binaries with the default
//! state dir of a fresh `HOME`, `generate-token`, then the real vibectl
//! 0.11.6 client from PyPI: `setup-proxy configure` + `test`, and
//! `vibectl vibe "say hello"` with the client's default model
//! (`claude-3.7-sonnet`) and with `--model gpt-4o` — answered by echo when
//! no provider key is configured, and by the providers (local servers
//! speaking their wire formats) when keys and base URLs are. Also: no
//! version-skew warning, a scoped token's default, `--core http://…`, a
//! 5 MiB request, the in-flight gauge from start, and
//! `max_requests_per_minute = 6` as a user reads it.

use crate::journey_support::{Home, assert_ok, http_get, start_core, start_edge, text};
use crate::support::success;
use std::path::Path;
use tonic::{Code, Request};
use vibectl_proto::{ExecuteRequest, GetServerInfoRequest};
use vibectl_tests::{
    fake_anthropic::FakeAnthropic,
    fake_openai::{FakeOpenAi, Script},
};

/// A request carrying the token in `file`.
fn authed<T>(message: T, file: &Path) -> Request<T> {
    let token = std::fs::read_to_string(file).expect("token");
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().expect("ascii"),
    );
    request
}

fn execute(model: Option<&str>, text: String) -> ExecuteRequest {
    ExecuteRequest {
        system_fragments: vec![],
        user_fragments: vec![text],
        model_name: model.map(str::to_owned),
        response_model_schema: None,
        request_id: "journey".to_owned(),
    }
}

/// `vibectl vibe "say hello" [--model M]`: succeeds, without a skew warning.
async fn vibe(home: &Home, model: Option<&str>) -> String {
    let mut args = vec!["vibe", "say hello"];
    if let Some(model) = model {
        args.extend(["--model", model]);
    }
    let out = home.vibectl(&args).await;
    assert_ok(&out, &format!("vibectl vibe (model {model:?})"));
    let all = text(&out);
    assert!(!all.contains("Version skew"), "{all}");
    assert!(!all.contains("not available on proxy server"), "{all}");
    all
}

#[tokio::test]
async fn readme_manual_path_without_a_provider_key_reaches_echo() {
    let home = Home::new();
    // The README's `cargo run -p vibectl-core -- serve` (on a test port).
    let (core, core_port) = start_core(&home, &[]).await;
    assert!(
        core.log()
            .contains("no provider API key configured: the offline echo model answers"),
        "the core says so at start:\n{}",
        core.log()
    );
    // `cargo run -p vibectl-edge -- serve`, pointed at the core by URL.
    let core_url = format!("http://127.0.0.1:{core_port}");
    let (_edge, port, admin) = start_edge(&home, &core_url, &["--enable-metrics"]).await;
    let metrics = http_get(admin, "/metrics").await;
    assert!(
        metrics.contains("vibectl_concurrent_in_flight"),
        "the gauge is exported from start:\n{metrics}"
    );

    let alice = home.token("alice", &[]).await;
    home.configure("journey", port, &alice).await;
    let out = home.vibectl(&["setup-proxy", "test"]).await;
    assert_ok(&out, "setup-proxy test");
    let shown = text(&out);
    for part in ["0.11.6", "vibectl-llm-proxy", "echo"] {
        assert!(shown.contains(part), "{part} in:\n{shown}");
    }
    assert!(!shown.contains("Version skew"), "{shown}");
    for model in ["gpt-4o-mini", "claude-sonnet-4-5"] {
        assert!(!shown.contains(model), "no key, not listed: {shown}");
    }

    // The client's default model, then another name it knows: echo answers.
    let answer = vibe(&home, None).await;
    assert!(answer.contains("say hello"), "echo's answer:\n{answer}");
    vibe(&home, Some("gpt-4o")).await;

    // A scoped token that names no model gets its scope's first model.
    let scoped = home.token("carol", &["--models", "echo,4o"]).await;
    let mut client = home.grpc(port).await;
    let info = client
        .get_server_info(authed(GetServerInfoRequest {}, &scoped))
        .await
        .expect("server info")
        .into_inner();
    assert_eq!(info.default_model, "echo");
    let reply = client
        .execute(authed(execute(None, "hi".to_owned()), &scoped))
        .await
        .expect("not PERMISSION_DENIED")
        .into_inner();
    let ok = success(reply);
    assert_eq!(ok.actual_model_used, "echo");

    // 5 MiB: refused by the edge before forwarding, with its limit type.
    let big = "x".repeat(5 << 20);
    let status = client
        .execute(authed(execute(Some("echo"), big), &alice))
        .await
        .expect_err("over the maximum message size");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("limit-type")
            .and_then(|v| v.to_str().ok()),
        Some("message_size")
    );
    assert!(
        !core.log().contains("decoded message length too large"),
        "never reached the core"
    );
}

#[tokio::test]
async fn with_keys_the_clients_names_reach_the_real_providers() {
    // vibectl's planner asks for JSON (`response_model_schema`), then a
    // plain memory update: each fake answers the plan, then text.
    let plan = r#"{"action": {"action_type": "THOUGHT", "text": "hello from the provider"}}"#;
    let script = || Script::text([plan]).then(Script::text(["memory updated"]));
    let openai = FakeOpenAi::start(script()).await;
    let anthropic = FakeAnthropic::start(script()).await;
    let home = Home::new();
    home.write_config(&format!(
        "[providers.echo]\nkind = \"echo\"\n\
         [providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"OPENAI_API_KEY\"\n\
         [providers.anthropic]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key_env = \"ANTHROPIC_API_KEY\"\n",
        openai.base_url(),
        anthropic.base_url()
    ));
    let (core, core_port) = start_core(
        &home,
        &[
            ("OPENAI_API_KEY", "sk-journey-openai"),
            ("ANTHROPIC_API_KEY", "sk-journey-anthropic"),
        ],
    )
    .await;
    assert!(!core.log().contains("offline echo"), "{}", core.log());
    let (_edge, port, _) = start_edge(&home, &format!("127.0.0.1:{core_port}"), &[]).await;
    let alice = home.token("alice", &[]).await;
    home.configure("journey", port, &alice).await;
    let out = home.vibectl(&["setup-proxy", "test"]).await;
    assert_ok(&out, "setup-proxy test");
    assert!(text(&out).contains("claude-sonnet-4-5"), "{}", text(&out));

    let answer = vibe(&home, None).await;
    assert!(answer.contains("hello from the provider"), "{answer}");
    let asked = anthropic.requests();
    assert!(!asked.is_empty(), "the default model reached Anthropic");
    assert_eq!(asked[0].body["model"], "claude-sonnet-4-5");

    vibe(&home, Some("gpt-4o")).await;
    let asked = openai.requests();
    assert!(!asked.is_empty(), "gpt-4o reached OpenAI");
    assert_eq!(asked[0].body["model"], "gpt-4o");
}

#[tokio::test]
async fn six_per_minute_allows_two_vibe_runs_back_to_back_then_refuses_with_the_wait() {
    let home = Home::new();
    // Only bob is limited; alice sets the client up.
    home.write_config("[limits.per_token.bob]\nmax_requests_per_minute = 6\n");
    let (_core, core_port) = start_core(&home, &[]).await;
    let (_edge, port, _) = start_edge(&home, &format!("127.0.0.1:{core_port}"), &[]).await;
    // A new token's bucket is full, as after a minute idle.
    let bob = home.token("bob", &[]).await;
    home.configure("bob", port, &bob).await;
    // One `vibe` is GetServerInfo and two Execute: six calls in all.
    vibe(&home, None).await;
    vibe(&home, None).await;
    let mut client = home.grpc(port).await;
    let status = client
        .get_server_info(authed(GetServerInfoRequest {}, &bob))
        .await
        .expect_err("the seventh call within the minute");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let meta = |k: &str| {
        status
            .metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(meta("limit-type").as_deref(), Some("rpm"));
    // The real wait: the next call is due 60/6 = 10 s after the first.
    let wait: u64 = meta("retry-after-ms")
        .expect("retry-after-ms")
        .parse()
        .expect("ms");
    assert!((1..=10_000).contains(&wait), "retry-after-ms {wait}");
    assert!(
        status.message().contains("6 requests per minute"),
        "{}",
        status.message()
    );
}
