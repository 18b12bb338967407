//! Shutdown of the core: an in-flight stream may finish within
//! `core.shutdown_grace`; past it, the call is cancelled, which reaches the
//! provider (its connection closes) and `serve` returns.

use crate::support;

use futures::StreamExt;
use support::{Core, WAIT, config, kinds, openai_toml, request};
use vibectl_proto::{StreamChunk, stream_chunk::ChunkType};
use vibectl_tests::fake_openai::{FakeOpenAi, Script};

async fn core_for(fake: &FakeOpenAi, dir: &std::path::Path, grace: &str) -> Core {
    let grace = format!("[core]\nshutdown_grace = \"{grace}\"");
    let cfg = config(&openai_toml(&grace, fake, dir, ""));
    Core::start(cfg).await
}

async fn next_chunk(stream: &mut tonic::Streaming<StreamChunk>) -> Option<StreamChunk> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .map(|c| c.expect("chunk, not a status"))
}

#[tokio::test]
async fn in_flight_stream_finishes_within_the_grace_period() {
    let fake = FakeOpenAi::start(Script::text(["before", " after"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "30s").await;
    let mut stream = core
        .client()
        .stream_execute(request(Some("gpt-4o-mini"), &[], &["x"], "sd-1"))
        .await
        .expect("OK")
        .into_inner();
    let first = next_chunk(&mut stream).await.expect("first chunk");
    assert_eq!(
        first.chunk_type,
        Some(ChunkType::TextChunk("before".into()))
    );
    core.begin_shutdown();
    assert!(!core.is_stopped(), "serve waits for the in-flight call");
    fake.release_gate();
    let mut chunks = vec![first];
    while let Some(c) = next_chunk(&mut stream).await {
        chunks.push(c);
    }
    assert_eq!(kinds(&chunks), ["text", "text", "complete", "metrics"]);
    core.stop().await;
}

#[tokio::test]
async fn grace_period_elapsed_cancels_the_call_and_reaches_the_provider() {
    let fake = FakeOpenAi::start(Script::text(["before", " never"]).gated()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core_for(&fake, dir.path(), "200ms").await;
    let mut stream = core
        .client()
        .stream_execute(request(Some("gpt-4o-mini"), &[], &["x"], "sd-2"))
        .await
        .expect("OK")
        .into_inner();
    assert!(next_chunk(&mut stream).await.is_some());
    core.stop().await;
    assert!(
        fake.wait_closed(WAIT).await,
        "the provider call was dropped"
    );
    // The client sees the stream end (with an error status), not a hang.
    let rest = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream ends in time");
    assert!(!matches!(
        rest,
        Some(Ok(StreamChunk {
            chunk_type: Some(ChunkType::Complete(_)),
            ..
        }))
    ));
}
