//! Per-token limits at the edge, end to end over TLS with real gRPC
//! clients: requests per minute (GCRA: exactly the burst plus the refill of
//! the elapsed time pass), per-token overrides, concurrency held for the
//! whole response stream, input length (enforced by the core before any
//! provider call) and the token's deadline.

use crate::support::stack_with_openai;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tonic::{Code, Status, transport::Channel};
use vibectl_proto::{
    GetServerInfoRequest, StreamChunk, vibectl_llm_proxy_client::VibectlLlmProxyClient,
};
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{Stack, WAIT, authed, execute_request},
};

/// `limit-type` and `retry-after-ms` of a refusal.
fn limit_of(status: &Status) -> (String, Option<u64>) {
    let meta = status.metadata();
    let text = |k: &str| meta.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (
        text("limit-type").unwrap_or_default(),
        text("retry-after-ms").and_then(|v| v.parse().ok()),
    )
}

/// Calls `Execute` for `token` `n` times in a row; returns how many
/// passed, the refusals, and the window in which the edge decided
/// (`min`: first answer → last send, `max`: first send → last answer).
async fn burst(
    client: &mut VibectlLlmProxyClient<Channel>,
    token: &str,
    n: usize,
) -> (usize, Vec<Status>, Duration, Duration) {
    let mut passed = 0;
    let mut refusals = Vec::new();
    let first_send = Instant::now();
    let mut first_answer = None;
    let mut last_send = first_send;
    for _ in 0..n {
        last_send = Instant::now();
        let call = client.execute(authed(execute_request(Some("echo"), "hi"), token));
        match tokio::time::timeout(WAIT, call).await.expect("in time") {
            Ok(_) => passed += 1,
            Err(status) => refusals.push(status),
        }
        first_answer.get_or_insert_with(Instant::now);
    }
    let last_answer = Instant::now();
    let first_answer = first_answer.expect("at least one call");
    (
        passed,
        refusals,
        last_send.saturating_duration_since(first_answer),
        last_answer - first_send,
    )
}

/// GCRA from a full bucket: `burst` at once, then one per `interval`.
fn assert_bucket(passed: usize, burst: usize, interval: Duration, min: Duration, max: Duration) {
    let refill = |d: Duration| usize::try_from(d.as_nanos() / interval.as_nanos()).expect("small");
    let (low, high) = (burst + refill(min), burst + refill(max));
    eprintln!("{passed} passed (bucket {low}..={high}; window {min:?}..{max:?})");
    assert!(
        (low..=high).contains(&passed),
        "{passed} passed; the bucket allows {low}..={high} (burst {burst}, refill over {min:?}..{max:?})"
    );
}

#[tokio::test]
async fn rpm_passes_exactly_the_bucket_and_refuses_the_rest_with_rpm_metadata() {
    let stack = Stack::builder()
        .config(
            "[limits.global]\nmax_requests_per_minute = 60\n\
             [limits.per_token.vip]\nmax_requests_per_minute = 600\nburst = 50\n",
        )
        .start()
        .await;
    let mut client = stack.client().await;

    // 60/min: a minute's worth (60) back to back, then one per second.
    let (passed, refusals, min, max) = burst(&mut client, &stack.token("alice"), 200).await;
    assert_bucket(passed, 60, Duration::from_secs(1), min, max);
    assert_eq!(passed + refusals.len(), 200);
    for status in &refusals {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let (limit, retry) = limit_of(status);
        assert_eq!(limit, "rpm");
        let retry = retry.expect("retry-after-ms");
        assert!(retry > 0 && retry <= 1000, "retry-after-ms {retry}");
        assert!(
            status
                .message()
                .starts_with("rate limit: 60 requests per minute for token `alice`; retry in "),
            "{}",
            status.message()
        );
    }
    // The refusals' waits count down as the next token nears.
    let waits: Vec<u64> = refusals.iter().filter_map(|s| limit_of(s).1).collect();
    assert!(waits.iter().any(|&w| w < 1000), "{waits:?}");

    // Another token has its own bucket.
    let (passed, _, min, max) = burst(&mut client, &stack.token("bob"), 70).await;
    assert_bucket(passed, 60, Duration::from_secs(1), min, max);

    // The override: 600/min, burst 50 (one per 100 ms after it).
    let (passed, refusals, min, max) = burst(&mut client, &stack.token("vip"), 200).await;
    assert_bucket(passed, 50, Duration::from_millis(100), min, max);
    for status in &refusals {
        let retry = limit_of(status).1.expect("retry-after-ms");
        assert!(
            retry > 0 && retry <= 100,
            "retry-after-ms {retry} at 600/min"
        );
        assert!(
            status
                .message()
                .contains("600 requests per minute for token `vip`")
        );
    }
    stack.shutdown().await;
}

async fn open_stream(
    client: &mut VibectlLlmProxyClient<Channel>,
    token: &str,
) -> Result<tonic::Streaming<StreamChunk>, Status> {
    let request = authed(execute_request(Some("gpt-4o-mini"), "stream"), token);
    tokio::time::timeout(WAIT, client.stream_execute(request))
        .await
        .expect("answered in time")
        .map(tonic::Response::into_inner)
}

async fn first_chunk(stream: &mut tonic::Streaming<StreamChunk>) {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
        .expect("not ended")
        .expect("a chunk");
}

#[tokio::test]
async fn concurrency_admits_exactly_n_streams_for_their_whole_length() {
    let fake = FakeOpenAi::start(Script::text(["one", "two", "three"]).gated()).await;
    let (stack, _keys) = stack_with_openai(
        &fake,
        "[limits.per_token.alice]\nmax_concurrent_requests = 3\n",
    )
    .await;
    let mut client = stack.client().await;
    let alice = stack.token("alice");

    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = open_stream(&mut client, &alice).await.expect("admitted");
        first_chunk(&mut stream).await; // the provider holds the rest
        held.push(stream);
    }
    let refused = open_stream(&mut client, &alice)
        .await
        .expect_err("the fourth is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let (limit, retry) = limit_of(&refused);
    assert_eq!(limit, "concurrency");
    assert!(retry.is_some_and(|r| r > 0), "retry-after-ms {retry:?}");
    assert!(
        refused
            .message()
            .contains("3 calls in flight at once for token `alice`"),
        "{}",
        refused.message()
    );
    // Another token is not affected; GetServerInfo takes no slot and the
    // core reports the caller's limits from the edge's headers.
    open_stream(&mut client, &stack.token("bob"))
        .await
        .expect("bob has his own slots");
    let info = client
        .get_server_info(authed(GetServerInfoRequest {}, &alice))
        .await
        .expect("GetServerInfo at the concurrency limit")
        .into_inner();
    assert_eq!(info.limits.and_then(|l| l.max_concurrent_requests), Some(3));

    // A stream the client drops frees its slot: the next call gets in.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut next = loop {
        match open_stream(&mut client, &alice).await {
            Ok(stream) => break stream,
            Err(status) => assert_eq!(limit_of(&status).0, "concurrency", "{status:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first_chunk(&mut next).await;
    held.push(next);

    // Streams that end free their slots before the client sees the end.
    fake.release_gate();
    for stream in held {
        let rest: Vec<_> = tokio::time::timeout(WAIT, stream.collect::<Vec<_>>())
            .await
            .expect("streams end");
        assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    }
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(open_stream(&mut client, &alice).await.expect("slots free"));
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn over_long_input_is_refused_before_any_provider_call() {
    let fake = FakeOpenAi::start(Script::text(["fine"])).await;
    let (stack, _keys) =
        stack_with_openai(&fake, "[limits.per_token.alice]\nmax_input_length = 40\n").await;
    let mut client = stack.client().await;
    let long = "x".repeat(100);
    let status = client
        .execute(authed(
            execute_request(Some("gpt-4o-mini"), &long),
            &stack.token("alice"),
        ))
        .await
        .expect_err("too long");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(limit_of(&status).0, "input_length");
    assert!(fake.requests().is_empty(), "the provider saw nothing");

    // Within the limit (and for a token without one) the call goes through.
    let short = execute_request(Some("gpt-4o-mini"), "short");
    client
        .execute(authed(short, &stack.token("alice")))
        .await
        .expect("within the limit");
    client
        .execute(authed(
            execute_request(Some("gpt-4o-mini"), &long),
            &stack.token("bob"),
        ))
        .await
        .expect("bob has no input limit");
    assert_eq!(fake.requests().len(), 2);
    stack.shutdown().await;
}

#[tokio::test]
async fn the_token_timeout_ends_a_longer_stream_and_closes_the_provider_call() {
    let fake = FakeOpenAi::start(Script::text(["slow", "never"]).gated()).await;
    let (stack, _keys) = stack_with_openai(
        &fake,
        "[limits.per_token.alice]\nrequest_timeout_seconds = 1\n",
    )
    .await;
    let mut client = stack.client().await;
    let started = Instant::now();
    let mut stream = open_stream(&mut client, &stack.token("alice"))
        .await
        .expect("admitted");
    first_chunk(&mut stream).await;
    let status = loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("ended in time")
        {
            Some(Ok(_)) => {}
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status"),
        }
    };
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider saw its connection closed"
    );
    stack.shutdown().await;
}
