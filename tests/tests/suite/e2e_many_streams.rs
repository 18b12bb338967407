//! Many calls in flight through one edge: the edge multiplexes every
//! client's stream over its connection to the core, so the core must not
//! cap that connection at hyper's default of 200 streams, and a storm of
//! client cancellations must not make the core drop the connection (h2's
//! rapid-reset guard) and with it every other caller's stream.

use crate::support::stack_with_openai;
use futures::StreamExt;
use vibectl_proto::{StreamChunk, stream_chunk::ChunkType};
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{WAIT, authed, execute_request},
};

const STREAMS: usize = 260;
const CONNECTIONS: usize = 2;

async fn first_text(stream: &mut tonic::Streaming<StreamChunk>) -> String {
    let chunk = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("first chunk in time")
        .expect("stream open")
        .expect("a chunk, not a status");
    match chunk.chunk_type {
        Some(ChunkType::TextChunk(t)) => t,
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_200_streams_in_flight_and_a_cancel_storm_spares_the_others() {
    let fake = FakeOpenAi::start(Script::text(["held", " then released"]).gated()).await;
    let (stack, _keys) = stack_with_openai(&fake, "").await;
    let token = stack.token("many");
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(stack.client().await);
    }

    // STREAMS calls held open by the provider at once, across two client
    // connections (the edge allows 200 streams per client connection).
    let mut opening = futures::stream::FuturesUnordered::new();
    for i in 0..STREAMS {
        let mut client = clients[i % CONNECTIONS].clone();
        let token = token.clone();
        opening.push(async move {
            let request = execute_request(Some("gpt-4o-mini"), "hold me");
            let mut stream = client
                .stream_execute(authed(request, &token))
                .await
                .expect("call accepted")
                .into_inner();
            assert_eq!(first_text(&mut stream).await, "held");
            stream
        });
    }
    let mut held = Vec::with_capacity(STREAMS);
    tokio::time::timeout(WAIT, async {
        while let Some(stream) = opening.next().await {
            held.push(stream);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} of {STREAMS} calls got their first chunk in time",
            held.len()
        )
    });
    assert_eq!(
        held.len(),
        STREAMS,
        "every call got its first chunk while all were open"
    );

    // One more caller, mid-stream, while every other caller cancels at once.
    let mut survivor_client = stack.client().await;
    let mut survivor = survivor_client
        .stream_execute(authed(
            execute_request(Some("gpt-4o-mini"), "survive"),
            &token,
        ))
        .await
        .expect("call accepted")
        .into_inner();
    assert_eq!(first_text(&mut survivor).await, "held");
    drop(held);
    drop(clients);
    fake.release_gate();
    let mut text = String::new();
    let mut completed = false;
    while let Some(chunk) = tokio::time::timeout(WAIT, survivor.next())
        .await
        .expect("survivor keeps streaming")
    {
        match chunk.expect("no status error on the survivor").chunk_type {
            Some(ChunkType::TextChunk(t)) => text.push_str(&t),
            Some(ChunkType::Complete(_)) => completed = true,
            _ => {}
        }
    }
    assert!(completed, "survivor completed; got {text:?}");
    assert_eq!(text, " then released");
    stack.shutdown().await;
}
