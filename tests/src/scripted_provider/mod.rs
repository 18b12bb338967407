//! The server machinery shared by the fake providers
//! ([`crate::fake_openai`], [`crate::fake_anthropic`]): a real HTTP/1.1
//! server (hyper) on 127.0.0.1:0 that answers each request from a
//! [`Script`] in the wire format of a [`Dialect`], records every request,
//! holds gated streams until `release_gate()`, cuts or aborts a stream when
//! scripted, and notices the client hang up.
//!
//! `script` is what to answer, `server` the server that answers it.

mod script;
mod server;

pub use script::{ErrorReply, Reply, Script, StreamReply};
pub use server::{Fake, FakeServer, RecordedRequest};

use serde_json::Value;

/// A provider's wire format.
pub trait Dialect: Send + Sync + 'static {
    /// Requests to a path ending so are answered; others get a 404.
    fn path_suffix(&self) -> &'static str;
    /// The SSE frames of a streamed reply to `request` (its JSON body).
    fn stream_frames(&self, reply: &StreamReply, request: &Value) -> Vec<Frame>;
    /// The JSON error body.
    fn error_body(&self, error: &ErrorReply) -> String;
}

/// One piece of an SSE response.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The bytes to send (one or more complete SSE events).
    pub bytes: String,
    /// True for a text delta (counted by `gated` and `cut_after`).
    pub is_text: bool,
}

impl Frame {
    /// A frame that is not a text delta.
    pub fn meta(bytes: String) -> Self {
        Self {
            bytes,
            is_text: false,
        }
    }
}
