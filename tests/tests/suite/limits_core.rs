//! The limits the core enforces itself, from the headers the edge sends:
//! the input length (`input-length` in `x-vibectl-limits`, in characters,
//! refused before any provider call) and the deadline (`grpc-timeout`, and
//! `timeout` in `x-vibectl-limits`), which cancels the provider call; and
//! `GetServerInfo` reporting the caller's limits. The real `serve` runs
//! in-process; providers are the built-in echo or a fake OpenAI server.

use crate::support;

use futures::StreamExt;
use std::time::{Duration, Instant};
use support::{Core, WAIT, config, openai_toml, request, sample, success, with_header};
use tonic::{Code, Request, Status};
use vibectl_proto::{
    ExecuteRequest, GetServerInfoRequest, execute_response,
    stream_chunk::ChunkType,
    wire::{GRPC_TIMEOUT, LIMITS_HEADER},
};
use vibectl_tests::fake_openai::{FakeOpenAi, Script};

/// A fake OpenAI serving `script`, a core (with metrics) whose `openai`
/// provider points at it beside `echo`, and the key file's directory.
async fn start(script: Script) -> (FakeOpenAi, Core, tempfile::TempDir) {
    let fake = FakeOpenAi::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&openai_toml("", &fake, dir.path(), "max_retries = 0"));
    (fake, Core::start_with_metrics(cfg).await, dir)
}

fn limited(req: ExecuteRequest, max_chars: &str) -> Request<ExecuteRequest> {
    let limits = format!("input-length={max_chars}");
    with_header(Request::new(req), LIMITS_HEADER, &limits)
}

fn assert_input_refused(status: &Status, characters: u64, limit: u32) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "input is {characters} characters; this token's limit is {limit} (max_input_length)"
        )
    );
    let limit_type = status.metadata().get("limit-type").map(|v| v.to_str().ok());
    assert_eq!(limit_type, Some(Some("input_length")), "{status:?}");
    assert!(
        status.metadata().get("retry-after-ms").is_none(),
        "waiting does not help: no retry-after-ms"
    );
}

#[tokio::test]
async fn input_over_the_limit_is_refused_before_any_provider_call() {
    let (fake, core, _dir) = start(Script::text(["never"])).await;
    // 5 + 6 = 11 characters against a limit of 10.
    let req = || request(Some("gpt-4o-mini"), &["sys: "], &["hello!"], "len-1");
    let status = tokio::time::timeout(WAIT, core.client().execute(limited(req(), "10")))
        .await
        .expect("in time")
        .expect_err("refused");
    assert_input_refused(&status, 11, 10);
    let status = tokio::time::timeout(WAIT, core.client().stream_execute(limited(req(), "10")))
        .await
        .expect("in time")
        .expect_err("refused before any chunk");
    assert_input_refused(&status, 11, 10);
    assert!(fake.requests().is_empty(), "the provider was never called");
    let metrics = core.scrape().await;
    for method in ["Execute", "StreamExecute"] {
        let labels = [
            ("method", method),
            ("model", "gpt-4o-mini"),
            ("result", "input_length"),
        ];
        assert_eq!(
            sample(&metrics, "vibectl_core_requests_total", &labels),
            Some(1.0),
            "{metrics}"
        );
    }
    core.stop().await;
}

#[tokio::test]
async fn input_within_the_limit_is_served() {
    let (fake, core, _dir) = start(Script::text(["fine"])).await;
    let req = request(Some("gpt-4o-mini"), &["sys: "], &["hello!"], "len-2");
    let resp = tokio::time::timeout(WAIT, core.client().execute(limited(req, "11")))
        .await
        .expect("in time")
        .expect("OK at exactly the limit")
        .into_inner();
    assert!(
        matches!(resp.result, Some(execute_response::Result::Success(_))),
        "{resp:?}"
    );
    assert_eq!(fake.requests().len(), 1);
    core.stop().await;
}

#[tokio::test]
async fn input_is_counted_in_characters_not_bytes() {
    let (_fake, core, _dir) = start(Script::text(["unused"])).await;
    // 7 characters, 21 bytes in UTF-8; plus "é" (2 bytes) in the system part.
    let text = "日本語テキスト";
    assert_eq!(text.len(), 21);
    let req = || request(Some("echo"), &["é"], &[text], "len-3");
    let resp = tokio::time::timeout(WAIT, core.client().execute(limited(req(), "8")))
        .await
        .expect("in time")
        .expect("8 characters fit a limit of 8")
        .into_inner();
    let ok = success(resp);
    assert_eq!(ok.response_text, text);
    let status = tokio::time::timeout(WAIT, core.client().execute(limited(req(), "7")))
        .await
        .expect("in time")
        .expect_err("refused");
    assert_input_refused(&status, 8, 7);
    core.stop().await;
}

/// The next item of a stream, bounded.
async fn next<T>(stream: &mut tonic::Streaming<T>) -> Option<Result<T, Status>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream item in time")
}

#[tokio::test]
async fn deadline_ends_a_stream_that_sent_chunks_and_closes_the_provider() {
    let (fake, core, _dir) = start(Script::text(["first", "never sent"]).gated()).await;
    let req = with_header(
        Request::new(request(Some("gpt-4o-mini"), &[], &["slow"], "dl-1")),
        GRPC_TIMEOUT,
        "400m",
    );
    let started = Instant::now();
    let mut stream = tokio::time::timeout(WAIT, core.raw_client().stream_execute(req))
        .await
        .expect("in time")
        .expect("stream opened")
        .into_inner();
    let first = next(&mut stream)
        .await
        .expect("a chunk")
        .expect("not a status");
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("first".into())));
    let status = next(&mut stream)
        .await
        .expect("the stream ends with a status")
        .expect_err("a status, not a chunk");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "request timed out after 400 ms (the client's deadline, grpc-timeout)"
    );
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    assert!(
        next(&mut stream).await.is_none(),
        "nothing after the status"
    );
    // Tokens already produced are accounted.
    let metrics = core.scrape().await;
    let labels = [("model", "gpt-4o-mini"), ("result", "deadline_exceeded")];
    assert_eq!(
        sample(&metrics, "vibectl_core_requests_total", &labels),
        Some(1.0),
        "{metrics}"
    );
    let output = [("model", "gpt-4o-mini"), ("direction", "output")];
    assert_eq!(
        sample(&metrics, "vibectl_tokens_total", &output),
        Some(1.0),
        "{metrics}"
    );
    core.stop().await;
}

#[tokio::test]
async fn deadline_ends_a_unary_call_and_closes_the_provider() {
    let (fake, core, _dir) = start(Script::text(["first", "never sent"]).gated()).await;
    let req = with_header(
        Request::new(request(Some("gpt-4o-mini"), &[], &["slow"], "dl-2")),
        GRPC_TIMEOUT,
        "300m",
    );
    let started = Instant::now();
    let status = tokio::time::timeout(WAIT, core.raw_client().execute(req))
        .await
        .expect("answered in time")
        .expect_err("deadline exceeded");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("300 ms"), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    core.stop().await;
}

#[tokio::test]
async fn the_tokens_timeout_is_named_and_typed() {
    // The edge sends the token's limit alone (`timeout=1`, no
    // grpc-timeout); a grpc-timeout a moment shorter is the same deadline.
    for grpc_timeout in [None, Some("995m")] {
        let (fake, core, _dir) = start(Script::text(["first", "never sent"]).gated()).await;
        let mut req = with_header(
            Request::new(request(Some("gpt-4o-mini"), &[], &["slow"], "dl-3")),
            LIMITS_HEADER,
            "timeout=1",
        );
        if let Some(value) = grpc_timeout {
            req = with_header(req, GRPC_TIMEOUT, value);
        }
        let status = tokio::time::timeout(WAIT, core.raw_client().execute(req))
            .await
            .expect("answered in time")
            .expect_err("deadline exceeded");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(
            status.message(),
            "request timed out after 1 s (request_timeout_seconds)"
        );
        let limit_type = status.metadata().get("limit-type").map(|v| v.to_str().ok());
        assert_eq!(limit_type, Some(Some("timeout")));
        assert!(fake.wait_closed(WAIT).await);
        core.stop().await;
    }
}

#[tokio::test]
async fn server_info_reports_the_callers_limits() {
    let (_fake, core, _dir) = start(Script::text(["unused"])).await;
    let req = with_header(
        Request::new(GetServerInfoRequest {}),
        LIMITS_HEADER,
        "rpm=120,concurrency=4,input-length=32000,timeout=300",
    );
    let info = tokio::time::timeout(WAIT, core.client().get_server_info(req))
        .await
        .expect("in time")
        .expect("OK")
        .into_inner();
    let limits = info.limits.expect("limits");
    assert_eq!(limits.max_requests_per_minute, Some(120));
    assert_eq!(limits.max_concurrent_requests, Some(4));
    assert_eq!(limits.max_input_length, Some(32000));
    assert_eq!(limits.request_timeout_seconds, Some(300));
    // Without headers: no limits, every field unset.
    let info = tokio::time::timeout(WAIT, core.client().get_server_info(GetServerInfoRequest {}))
        .await
        .expect("in time")
        .expect("OK")
        .into_inner();
    assert_eq!(info.limits, Some(vibectl_proto::ServerLimits::default()));
    core.stop().await;
}
