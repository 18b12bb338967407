//! The core's Prometheus `/metrics`: after real calls (echo, a provider
//! without a key, a fake OpenAI stream the client abandons), a plain HTTP
//! GET shows every metric with the calls' own numbers, the `sub` label from
//! `x-vibectl-caller` bounded by `[metrics] max_subjects` (later subjects are
//! `other`), and model labels limited to configured ids.

use crate::support;

use futures::StreamExt;
use support::{
    Core, UNSET_KEY_ENV, WAIT, assert_cost, config, key_file, request, sample, with_header,
};
use tonic::Request;
use vibectl_proto::wire::CALLER_HEADER;
use vibectl_proto::{ExecuteRequest, ExecutionMetrics, execute_response, stream_chunk::ChunkType};
use vibectl_tests::fake_openai::{FakeOpenAi, Script};

fn metrics_config(extra_providers: &str) -> vibectl_config::Config {
    config(&format!(
        r#"
# Unknown and keyless models must fail here, not fall back to echo.
[core]
echo_fallback = false

[metrics]
max_subjects = 2

[providers.echo]
kind = "echo"

{extra_providers}

[[models]]
id = "echo"
provider = "echo"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[[models]]
id = "gpt-4o-mini"
provider = "openai"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
"#
    ))
}

fn as_sub(req: ExecuteRequest, sub: Option<&str>) -> Request<ExecuteRequest> {
    let req = Request::new(req);
    match sub {
        Some(sub) => with_header(req, CALLER_HEADER, sub),
        None => req,
    }
}

/// Unary `Execute` as `sub`; the metrics of a success, or `None`.
async fn execute(core: &Core, sub: Option<&str>, req: ExecuteRequest) -> Option<ExecutionMetrics> {
    let resp = tokio::time::timeout(WAIT, core.client().execute(as_sub(req, sub)))
        .await
        .expect("in time")
        .expect("OK")
        .into_inner();
    match resp.result {
        Some(execute_response::Result::Success(ok)) => ok.metrics,
        _ => None,
    }
}

fn tokens(m: &ExecutionMetrics) -> (f64, f64) {
    (
        f64::from(m.input_tokens.expect("input tokens")),
        f64::from(m.output_tokens.expect("output tokens")),
    )
}

#[tokio::test]
async fn every_metric_shows_the_calls_with_bounded_labels() {
    let providers = format!(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_env = \"{UNSET_KEY_ENV}\"\n"
    );
    let core = Core::start_with_metrics(metrics_config(&providers)).await;
    let echo = |id: &str| request(Some("echo"), &["be brief"], &["pods are running fine"], id);

    let alice = execute(&core, Some("alice"), echo("m-1"))
        .await
        .expect("ok");
    // bob streams.
    let stream = tokio::time::timeout(
        WAIT,
        core.client()
            .stream_execute(as_sub(echo("m-2"), Some("bob"))),
    )
    .await
    .expect("in time")
    .expect("OK")
    .into_inner();
    let chunks: Vec<_> = tokio::time::timeout(WAIT, stream.collect::<Vec<_>>())
        .await
        .expect("stream ended in time");
    let bob = chunks
        .iter()
        .find_map(|c| match &c.as_ref().expect("chunk").chunk_type {
            Some(ChunkType::FinalMetrics(m)) => Some(*m),
            _ => None,
        })
        .expect("final metrics");
    // The third subject and later ones are `other`; no subject is `-`.
    execute(&core, Some("carol"), echo("m-3"))
        .await
        .expect("ok");
    execute(&core, Some("dave"), echo("m-4")).await.expect("ok");
    execute(&core, None, echo("m-5")).await.expect("ok");
    // An unknown model and a provider without a key.
    let unknown = request(Some("gpt-9"), &[], &["x"], "m-6");
    assert!(execute(&core, Some("alice"), unknown).await.is_none());
    let keyless = request(Some("gpt-4o-mini"), &[], &["x"], "m-7");
    assert!(execute(&core, Some("alice"), keyless).await.is_none());

    let text = core.scrape().await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    // Tokens and cost are each call's own.
    for (sub, m) in [("alice", &alice), ("bob", &bob)] {
        let (input, output) = tokens(m);
        let labels = |direction| [("sub", sub), ("model", "echo"), ("direction", direction)];
        assert_eq!(value("vibectl_tokens_total", &labels("input")), input);
        assert_eq!(value("vibectl_tokens_total", &labels("output")), output);
        let cost = value("vibectl_cost_usd_total", &[("sub", sub), ("model", "echo")]);
        assert_cost(m.cost_usd, cost);
    }
    let (input, _) = tokens(&alice);
    let other_input = [("sub", "other"), ("model", "echo"), ("direction", "input")];
    assert_eq!(value("vibectl_tokens_total", &other_input), 2.0 * input);
    let requests = |sub, method, model, result| {
        value(
            "vibectl_core_requests_total",
            &[
                ("sub", sub),
                ("method", method),
                ("model", model),
                ("result", result),
            ],
        )
    };
    assert_eq!(requests("alice", "Execute", "echo", "ok"), 1.0);
    assert_eq!(requests("bob", "StreamExecute", "echo", "ok"), 1.0);
    assert_eq!(requests("other", "Execute", "echo", "ok"), 2.0);
    assert_eq!(requests("-", "Execute", "echo", "ok"), 1.0);
    assert_eq!(
        requests("alice", "Execute", "unknown", "model_not_found"),
        1.0
    );
    assert_eq!(
        requests("alice", "Execute", "gpt-4o-mini", "execution_failed"),
        1.0
    );
    assert!(!text.contains("sub=\"carol\"") && !text.contains("sub=\"dave\""));
    assert!(!text.contains("model=\"gpt-9\""));
    assert_eq!(
        value(
            "vibectl_provider_errors_total",
            &[
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("kind", "missing_api_key")
            ],
        ),
        1.0
    );
    // Histograms: one duration per call, one first chunk per echo answer.
    let execute_echo = [("method", "Execute"), ("model", "echo")];
    assert_eq!(
        value("vibectl_core_request_duration_seconds_count", &execute_echo),
        4.0
    );
    assert!(value("vibectl_core_request_duration_seconds_sum", &execute_echo) > 0.0);
    assert_eq!(
        value(
            "vibectl_core_time_to_first_chunk_seconds_count",
            &[("model", "echo")]
        ),
        5.0
    );
    for family in [
        "# TYPE vibectl_tokens_total counter",
        "# TYPE vibectl_cost_usd_total counter",
        "# TYPE vibectl_core_requests_total counter",
        "# TYPE vibectl_core_request_duration_seconds histogram",
        "# TYPE vibectl_core_time_to_first_chunk_seconds histogram",
        "# TYPE vibectl_provider_errors_total counter",
    ] {
        assert!(text.contains(family), "no {family} in\n{text}");
    }
    assert!(!text.contains("otel_scope"), "{text}");
    core.stop().await;
}

#[tokio::test]
async fn an_abandoned_stream_counts_as_cancelled_with_its_tokens() {
    let fake = FakeOpenAi::start(Script::text(["first", "never sent"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = format!(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\n",
        fake.base_url(),
        key_file(dir.path(), "sk-metrics-test-0123456789"),
    );
    let core = Core::start_with_metrics(metrics_config(&providers)).await;
    let req = as_sub(
        request(Some("gpt-4o-mini"), &[], &["long"], "m-8"),
        Some("erin"),
    );
    let mut stream = tokio::time::timeout(WAIT, core.client().stream_execute(req))
        .await
        .expect("in time")
        .expect("OK")
        .into_inner();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
        .expect("a chunk")
        .expect("not a status");
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("first".into())));
    drop(stream);
    // The call's record is dropped with the provider stream, before the
    // provider sees its connection close.
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider call was dropped"
    );
    let text = core.scrape().await;
    let labels = [
        ("sub", "erin"),
        ("method", "StreamExecute"),
        ("model", "gpt-4o-mini"),
        ("result", "cancelled"),
    ];
    assert_eq!(
        sample(&text, "vibectl_core_requests_total", &labels),
        Some(1.0),
        "{text}"
    );
    let output = [("sub", "erin"), ("direction", "output")];
    assert_eq!(
        sample(&text, "vibectl_tokens_total", &output),
        Some(1.0),
        "{text}"
    );
    let first_chunk = [("model", "gpt-4o-mini")];
    assert_eq!(
        sample(
            &text,
            "vibectl_core_time_to_first_chunk_seconds_count",
            &first_chunk
        ),
        Some(1.0),
        "{text}"
    );
    core.stop().await;
}
