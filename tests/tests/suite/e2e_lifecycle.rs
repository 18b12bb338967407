//! The edge's life around requests: readiness, a core that goes away
//! (`UNAVAILABLE` fast, never a hang), plaintext h2c without HSTS, and
//! graceful shutdown (GOAWAY, in-flight streams drained, then bounded).

use crate::support::{open_stream, stack_with_openai};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tonic::{Code, Request};
use vibectl_proto::{GetServerInfoRequest, execute_response, stream_chunk::ChunkType};
use vibectl_tests::harness::next_chunk;
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{Stack, WAIT, authed, execute_request},
};

const HSTS: &str = "strict-transport-security";

#[tokio::test]
async fn live_and_ready_then_not_ready_without_core() {
    let mut stack = Stack::start().await; // returns once /ready is 200
    assert_eq!(stack.admin_get("/live").await.0, 200);
    assert_eq!(stack.admin_get("/ready").await, (200, "ready\n".to_owned()));
    assert_eq!(stack.admin_get("/nope").await.0, 404);
    stack.stop_core().await;
    let (status, body) = stack.admin_get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "says why: {body}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_stopped_core_gives_unavailable_within_one_second() {
    let mut stack = Stack::start().await;
    let mut client = stack.client().await;
    let token = stack.token("alice");
    // Warm the pooled edge→core connection first, then take the core away.
    client
        .get_server_info(authed(GetServerInfoRequest {}, &token))
        .await
        .expect("OK while the core runs");
    stack.stop_core().await;

    let started = Instant::now();
    let status = tokio::time::timeout(
        WAIT,
        client.execute(authed(execute_request(None, "anyone there?"), &token)),
    )
    .await
    .expect("never a hang")
    .expect_err("core is down");
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(
        status.message().contains("unavailable"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("127.0.0.1"),
        "no internal address: {}",
        status.message()
    );
    assert!(
        status.metadata().get(HSTS).is_some(),
        "HSTS on the edge's own errors too"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_core_that_never_ran_gives_unavailable_quickly() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let stack = Stack::builder().external_core(&address).start().await;
    let (status, body) = stack.admin_get("/ready").await;
    assert_eq!(status, 503, "{body}");
    let mut client = stack.client().await;
    let started = Instant::now();
    let status = tokio::time::timeout(
        WAIT,
        client.get_server_info(authed(GetServerInfoRequest {}, &stack.token("a"))),
    )
    .await
    .expect("never a hang")
    .expect_err("no core");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn serve_insecure_works_over_h2c_without_hsts() {
    let stack = Stack::builder().insecure().start().await;
    let mut client = stack.client().await; // http:// (h2c prior knowledge)
    let ok = client
        .execute(authed(
            execute_request(None, "plain text"),
            &stack.token("dev"),
        ))
        .await
        .expect("OK over h2c");
    assert!(ok.metadata().get(HSTS).is_none(), "never HSTS on plaintext");
    assert!(matches!(
        ok.into_inner().result,
        Some(execute_response::Result::Success(_))
    ));
    let refusal = client
        .get_server_info(Request::new(GetServerInfoRequest {}))
        .await
        .expect_err("auth still required");
    assert_eq!(refusal.code(), Code::Unauthenticated);
    assert!(
        refusal.metadata().get(HSTS).is_none(),
        "no HSTS on a plaintext refusal"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_stream() {
    let fake = FakeOpenAi::start(Script::text(["one", " two", " three"]).gated()).await;
    let (mut stack, _key_dir) = stack_with_openai(&fake, "").await;
    let mut stream = open_stream(&stack, "a", Some("gpt-4o-mini"), "x").await;
    assert_eq!(
        next_chunk(&mut stream).await.chunk_type,
        Some(ChunkType::TextChunk("one".into()))
    );

    stack.begin_edge_shutdown();
    // The listener goes away: new connections are refused (bounded wait).
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the edge kept accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // …while the stream already in flight runs to its end.
    fake.release_gate();
    let mut rest = String::new();
    let mut saw_metrics = false;
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
    {
        match chunk.expect("no error: drained, not cut").chunk_type {
            Some(ChunkType::TextChunk(t)) => rest.push_str(&t),
            Some(ChunkType::FinalMetrics(_)) => saw_metrics = true,
            _ => {}
        }
    }
    assert_eq!(rest, " two three");
    assert!(saw_metrics);
    stack.stop_edge().await; // asserts every edge task exited cleanly
    assert_eq!(fake.closed_count(), 0, "the provider stream was not cut");
    stack.shutdown().await;
}

#[tokio::test]
async fn shutdown_grace_bounds_a_stream_that_never_ends() {
    let fake = FakeOpenAi::start(Script::text(["one", " never"]).gated()).await;
    let (mut stack, _key_dir) =
        stack_with_openai(&fake, "[edge]\nshutdown_grace = \"300ms\"").await;
    let mut stream = open_stream(&stack, "a", Some("gpt-4o-mini"), "x").await;
    next_chunk(&mut stream).await;
    let started = Instant::now();
    stack.stop_edge().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream ends");
    assert!(!matches!(end, Some(Ok(_))), "the stream was cut: {end:?}");
    assert!(fake.wait_closed(WAIT).await, "the cut reached the provider");
    stack.shutdown().await;
}
