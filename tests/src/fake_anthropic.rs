//! A fake Anthropic Messages API server: a real HTTP/1.1 server (hyper) on
//! 127.0.0.1:0 that answers `POST …/messages` with the documented SSE
//! events (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta` with `text_delta`, `content_block_stop`,
//! `message_delta` with the output tokens, `message_stop`), an in-stream
//! `error` event when scripted, or an error body
//! `{"type":"error","error":{"type":"authentication_error","message":…}}`
//! with the right status.
//!
//! Same scripting and observation API as [`crate::fake_openai`]:
//! `FakeAnthropic::start(Script::text([..])).await`, `.base_url()`,
//! `.requests()`, `.release_gate()`, `.wait_closed(timeout)`.

pub use crate::scripted_provider::{Fake, FakeServer, RecordedRequest, Script};

use crate::scripted_provider::{Dialect, ErrorReply, Frame, StreamReply};
use serde_json::{Value, json};

/// The fake Anthropic server. Dereferences to [`FakeServer`]; stops when
/// dropped.
pub type FakeAnthropic = Fake<AnthropicDialect>;

/// Anthropic's Messages wire format.
#[derive(Default)]
pub struct AnthropicDialect;

fn event(name: &str, data: &Value) -> Frame {
    Frame::meta(format!("event: {name}\ndata: {data}\n\n"))
}

impl Dialect for AnthropicDialect {
    fn path_suffix(&self) -> &'static str {
        "/messages"
    }

    fn stream_frames(&self, reply: &StreamReply, request: &Value) -> Vec<Frame> {
        let model = request["model"].as_str().unwrap_or("claude-sonnet-4-5");
        let mut frames = vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": "msg_fake0001", "type": "message", "role": "assistant",
                    "content": [], "model": model, "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}
                }}),
            ),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", &json!({"type": "ping"})),
        ];
        for text in &reply.chunks {
            let mut f = event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            );
            f.is_text = true;
            frames.push(f);
        }
        if let Some((kind, message)) = &reply.error_event {
            frames.push(event(
                "error",
                &json!({"type": "error", "error": {"type": kind, "message": message}}),
            ));
            return frames;
        }
        frames.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        frames.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": reply.output_tokens}}),
        ));
        frames.push(event("message_stop", &json!({"type": "message_stop"})));
        frames
    }

    fn error_body(&self, e: &ErrorReply) -> String {
        let kind = match e.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        let kind = e.kind.as_deref().unwrap_or(kind);
        json!({"type": "error", "error": {"type": kind, "message": e.message}}).to_string()
    }
}
