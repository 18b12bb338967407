//! The edge's side of the limits contract with the core, against a
//! recording core: an admitted call carries the caller's limits in
//! `x-vibectl-limits` (absent = unlimited; client-sent ones never pass),
//! the token's deadline there (`timeout=N`) and the client's `grpc-timeout`
//! only when it is the shorter; a core that ignores the deadline is cut off by the edge's
//! backstop one second after it, with `DEADLINE_EXCEEDED` and
//! `limit-type: timeout`, and its stream is dropped.

use futures::StreamExt;
use std::time::{Duration, Instant};
use tonic::{Code, metadata::MetadataMap};
use vibectl_proto::{GetServerInfoRequest, stream_chunk::ChunkType};
use vibectl_tests::{
    fake_core::StubbornCore,
    harness::{Stack, WAIT, authed, execute_request},
};

fn header<'a>(meta: &'a MetadataMap, name: &str) -> Option<&'a str> {
    meta.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn admitted_calls_carry_the_callers_limits_and_the_shorter_deadline() {
    let core = StubbornCore::default();
    let served = core.served().await;
    let stack = Stack::builder()
        .config(
            "[limits.per_token.alice]\nmax_requests_per_minute = 600\nmax_concurrent_requests = 4\n\
             max_input_length = 1000\nrequest_timeout_seconds = 7\n",
        )
        .external_core(&served.addr.to_string())
        .start()
        .await;
    let mut client = stack.client().await;

    let mut request = authed(GetServerInfoRequest {}, &stack.token("alice"));
    request
        .metadata_mut()
        .insert("x-vibectl-limits", "rpm=999999".parse().expect("ascii"));
    request.set_timeout(Duration::from_secs(60));
    client.get_server_info(request).await.expect("OK");
    let seen = core.last();
    let limits: Vec<_> = seen.get_all("x-vibectl-limits").iter().collect();
    assert_eq!(
        limits,
        ["rpm=600,concurrency=4,input-length=1000,timeout=7"],
        "the edge's value only, never the client's"
    );
    assert_eq!(
        header(&seen, "grpc-timeout"),
        None,
        "the token's 7 s (timeout=7) beats the client's 60 s, which is not sent"
    );

    // A client deadline shorter than the token's passes unchanged.
    let mut request = authed(GetServerInfoRequest {}, &stack.token("alice"));
    request.set_timeout(Duration::from_secs(2));
    client.get_server_info(request).await.expect("OK");
    let timeout = header(&core.last(), "grpc-timeout").map(str::to_owned);
    let millis: u64 = timeout
        .as_deref()
        .and_then(|t| t.strip_suffix('m'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("grpc-timeout {timeout:?}"));
    assert!(millis <= 2000 && millis > 1000, "{millis}");

    // No limits configured: no headers at all (absent = unlimited).
    let mut request = authed(GetServerInfoRequest {}, &stack.token("bob"));
    request
        .metadata_mut()
        .insert("x-vibectl-limits", "timeout=1".parse().expect("ascii"));
    client.get_server_info(request).await.expect("OK");
    let seen = core.last();
    for name in ["x-vibectl-limits", "grpc-timeout"] {
        assert!(seen.get(name).is_none(), "{name}: {:?}", seen.get(name));
    }

    stack.shutdown().await;
    served.stop().await;
}

#[tokio::test]
async fn a_core_that_ignores_the_deadline_is_cut_off_by_the_edge() {
    let core = StubbornCore::default();
    let served = core.served().await;
    let stack = Stack::builder()
        .config("[limits.per_token.alice]\nrequest_timeout_seconds = 1\n")
        .external_core(&served.addr.to_string())
        .start()
        .await;
    let mut client = stack.client().await;
    let started = Instant::now();
    let mut stream = client
        .stream_execute(authed(execute_request(None, "hang"), &stack.token("alice")))
        .await
        .expect("admitted")
        .into_inner();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("a chunk")
        .expect("ok");
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("first".into())));
    let status = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("ended in time")
        .expect("a status")
        .expect_err("DEADLINE_EXCEEDED");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("limit-type")
            .and_then(|v| v.to_str().ok()),
        Some("timeout")
    );
    assert!(
        status.message().contains("request_timeout_seconds"),
        "{}",
        status.message()
    );
    // One second of deadline, then the backstop's grace second.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let mut dropped = core.dropped.subscribe();
    tokio::time::timeout(WAIT, dropped.wait_for(|n| *n >= 1))
        .await
        .expect("the core's stream was dropped")
        .expect("watch");
    stack.shutdown().await;
    served.stop().await;
}
