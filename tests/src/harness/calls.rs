//! Calls through a stack: bearer metadata, an `ExecuteRequest`, and the
//! next chunk of a streamed answer within [`WAIT`].

use crate::WAIT;
use vibectl_proto::ExecuteRequest;

/// The next chunk of `stream` within [`WAIT`]; panics on a timeout, the
/// end of the stream or a status.
pub async fn next_chunk(
    stream: &mut tonic::Streaming<vibectl_proto::StreamChunk>,
) -> vibectl_proto::StreamChunk {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
        .expect("stream not ended")
        .expect("chunk, not a status")
}

/// A `tonic::Request` carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("metadata value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// An `ExecuteRequest` for `model` (None: the default) with one user fragment.
pub fn execute_request(model: Option<&str>, text: &str) -> ExecuteRequest {
    ExecuteRequest {
        system_fragments: vec!["You are terse.".to_owned()],
        user_fragments: vec![text.to_owned()],
        model_name: model.map(str::to_owned),
        response_model_schema: None,
        request_id: String::new(),
    }
}
