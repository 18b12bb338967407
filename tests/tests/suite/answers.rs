//! What an answer holds, checked: the success or error of a unary call,
//! the kind and text of each streamed chunk, the error, metrics or
//! completion one chunk carries (each panics, showing what came instead),
//! a gRPC answer within the bound, and costs compared to within rounding.

use crate::support::WAIT;
use vibectl_proto::{
    ExecuteError, ExecuteResponse, ExecuteSuccess, ExecutionMetrics, StreamChunk, StreamComplete,
    execute_response, stream_chunk::ChunkType,
};

/// The text chunks of a stream, in order.
pub fn texts(chunks: &[StreamChunk]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| match &c.chunk_type {
            Some(ChunkType::TextChunk(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// A short name per chunk: `text`, `complete`, `metrics`, `error`.
pub fn kinds(chunks: &[StreamChunk]) -> Vec<&'static str> {
    chunks
        .iter()
        .map(|c| match &c.chunk_type {
            Some(ChunkType::TextChunk(_)) => "text",
            Some(ChunkType::Complete(_)) => "complete",
            Some(ChunkType::FinalMetrics(_)) => "metrics",
            Some(ChunkType::Error(_)) => "error",
            None => "empty",
        })
        .collect()
}

/// The success in `resp`; panics, showing it, when it is an error.
pub fn success(resp: ExecuteResponse) -> ExecuteSuccess {
    match resp.result {
        Some(execute_response::Result::Success(ok)) => ok,
        _ => panic!("expected success: {resp:?}"),
    }
}

/// The error in `resp`; panics, showing it, when it succeeded.
pub fn failure(resp: ExecuteResponse) -> ExecuteError {
    match resp.result {
        Some(execute_response::Result::Error(e)) => e,
        _ => panic!("expected error: {resp:?}"),
    }
}

/// The error `chunk` carries; panics, showing it, when it is another kind.
pub fn error_of(chunk: &StreamChunk) -> &ExecuteError {
    match &chunk.chunk_type {
        Some(ChunkType::Error(e)) => e,
        _ => panic!("expected an error chunk: {chunk:?}"),
    }
}

/// The metrics `chunk` carries; panics, showing it, otherwise.
pub fn metrics_of(chunk: &StreamChunk) -> &ExecutionMetrics {
    match &chunk.chunk_type {
        Some(ChunkType::FinalMetrics(m)) => m,
        _ => panic!("expected a metrics chunk: {chunk:?}"),
    }
}

/// The completion `chunk` carries; panics, showing it, otherwise.
pub fn complete_of(chunk: &StreamChunk) -> &StreamComplete {
    match &chunk.chunk_type {
        Some(ChunkType::Complete(done)) => done,
        _ => panic!("expected a complete chunk: {chunk:?}"),
    }
}

/// The answer to a gRPC `call` within [`WAIT`], its status OK.
pub async fn answer<T>(call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> T {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("answered in time")
        .expect("status OK")
        .into_inner()
}

/// Asserts two costs are equal to within rounding.
pub fn assert_cost(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("cost_usd is set");
    assert!(
        (actual - expected).abs() < 1e-12,
        "cost {actual} != {expected}"
    );
}

/// Asserts that `message` names each of `parts`.
pub fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part} missing in {message}");
    }
}
