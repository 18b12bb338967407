//! Through the edge to the core and back, over real TLS with real gRPC
//! clients: server info, unary and streamed calls (incremental: the first
//! chunk arrives while the provider still holds the rest), in-band model
//! errors, a Unix-socket core, and a client cancel reaching the provider.

use crate::support::{failure, open_stream, stack_with_openai, success};
use futures::StreamExt;
use std::time::Duration;
use vibectl_proto::{GetServerInfoRequest, execute_response, stream_chunk::ChunkType};
use vibectl_tests::harness::next_chunk;
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{Stack, WAIT, authed, execute_request},
};

#[tokio::test]
async fn get_server_info_through_the_edge_lists_the_echo_model() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let info = client
        .get_server_info(authed(GetServerInfoRequest {}, &stack.token("alice")))
        .await
        .expect("OK")
        .into_inner();
    assert!(
        info.available_models.iter().any(|m| m.model_id == "echo"),
        "{:?}",
        info.available_models
    );
    assert!(!info.server_name.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn execute_returns_the_echoed_text_with_token_metrics() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let request = execute_request(Some("echo"), "hello through the edge");
    let reply = client
        .execute(authed(request, &stack.token("alice")))
        .await
        .expect("OK")
        .into_inner();
    assert!(!reply.request_id.is_empty());
    let success = success(reply);
    assert_eq!(success.response_text, "hello through the edge");
    assert_eq!(success.actual_model_used, "echo");
    let metrics = success.metrics.expect("metrics");
    assert!(metrics.input_tokens.unwrap_or(0) > 0, "{metrics:?}");
    assert!(metrics.output_tokens.unwrap_or(0) > 0, "{metrics:?}");
    assert!(metrics.total_tokens.unwrap_or(0) > 0, "{metrics:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn stream_execute_delivers_chunks_incrementally_then_complete_and_metrics() {
    let fake = FakeOpenAi::start(
        Script::text(["Hello", ", ", "world", "!"])
            .usage(9, 4)
            .gated(),
    )
    .await;
    let (stack, _key_dir) = stack_with_openai(&fake, "").await;
    let mut stream = open_stream(&stack, "alice", Some("gpt-4o-mini"), "say hello").await;

    // Chunk 1 crosses core and edge while the provider still holds the rest.
    let first = next_chunk(&mut stream).await;
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("Hello".into())));
    assert_eq!(fake.closed_count(), 0);
    fake.release_gate();

    let mut text = "Hello".to_owned();
    let mut kinds = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
    {
        match chunk.expect("chunk").chunk_type.expect("typed") {
            ChunkType::TextChunk(t) => text.push_str(&t),
            ChunkType::Complete(c) => kinds.push(format!("complete:{}", c.actual_model_used)),
            ChunkType::FinalMetrics(m) => {
                assert_eq!(m.input_tokens, Some(9));
                assert_eq!(m.output_tokens, Some(4));
                kinds.push("final_metrics".to_owned());
            }
            ChunkType::Error(e) => panic!("error chunk: {e:?}"),
        }
    }
    assert_eq!(text, "Hello, world!");
    assert_eq!(kinds, ["complete:gpt-4o-mini", "final_metrics"]);
    stack.shutdown().await;
}

#[tokio::test]
async fn echo_stream_has_several_chunks() {
    let stack = Stack::start().await;
    let stream = open_stream(&stack, "alice", None, "one two three four five").await;
    let chunks: Vec<_> = tokio::time::timeout(WAIT, stream.collect::<Vec<_>>())
        .await
        .expect("in time");
    let texts = chunks
        .iter()
        .filter(|c| {
            matches!(
                c.as_ref().expect("chunk").chunk_type,
                Some(ChunkType::TextChunk(_))
            )
        })
        .count();
    assert!(texts >= 3, "{chunks:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn unknown_model_is_model_not_found_in_band() {
    // Without the echo fallback (no provider key here), as with a key.
    let stack = Stack::builder()
        .config("[core]\necho_fallback = false\n")
        .start()
        .await;
    let mut client = stack.client().await;
    let request = execute_request(Some("no-such-model"), "hi");
    let reply = client
        .execute(authed(request, &stack.token("alice")))
        .await
        .expect("gRPC status OK: model errors travel in-band")
        .into_inner();
    let error = failure(reply);
    assert_eq!(error.error_code, "MODEL_NOT_FOUND");
    assert!(error.error_message.contains("no-such-model"), "{error:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn client_dropping_a_stream_closes_the_provider_connection() {
    let fake = FakeOpenAi::start(Script::text(["first", "never sent"]).gated()).await;
    let (stack, _key_dir) = stack_with_openai(&fake, "").await;
    let mut stream = open_stream(&stack, "alice", Some("gpt-4o-mini"), "stream then hang up").await;
    let first = next_chunk(&mut stream).await;
    assert_eq!(first.chunk_type, Some(ChunkType::TextChunk("first".into())));
    drop(stream); // RST_STREAM to the edge → the edge drops the core stream
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider never saw its connection closed"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn core_on_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("core.sock");
    let stack = Stack::builder()
        .core_listen(&format!("unix:{}", socket.display()))
        .start()
        .await;
    assert!(stack.core_address.starts_with("unix:"));
    let mut client = stack.client().await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.execute(authed(
            execute_request(None, "over a socket"),
            &stack.token("u"),
        )),
    )
    .await
    .expect("in time")
    .expect("OK")
    .into_inner();
    assert!(
        matches!(reply.result, Some(execute_response::Result::Success(_))),
        "{reply:?}"
    );
    stack.shutdown().await;
}
