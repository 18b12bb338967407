//! A fake OpenAI Chat Completions server: a real HTTP/1.1 server (hyper) on
//! 127.0.0.1:0 that answers `POST …/chat/completions` with the documented
//! `chat.completion.chunk` SSE stream (a role delta first, content deltas, a
//! finish chunk, the usage chunk with `choices: []` when
//! `stream_options.include_usage` is set, then `data: [DONE]`), or with an
//! error body `{"error":{"message","type","param":null,"code"}}` and the
//! right status.
//!
//! ```ignore
//! let fake = FakeOpenAi::start(Script::text(["Hel", "lo"]).usage(12, 2).gated()).await;
//! // point `[providers.openai] base_url` at fake.base_url() …
//! fake.release_gate();                       // let the held stream go on
//! let reqs = fake.requests();                // headers and JSON bodies seen
//! assert!(fake.wait_requests(1, Duration::from_secs(5)).await);
//! assert!(fake.wait_closed(Duration::from_secs(5)).await); // client hung up
//! ```
//!
//! The scripting, recording, gate and close detection live in
//! [`crate::scripted_provider`] (also reachable here as `common`) and are
//! shared with [`crate::fake_anthropic`].

pub use crate::scripted_provider::{Fake, FakeServer, RecordedRequest, Script};

/// The shared fake-provider machinery, under the name tests use
/// (`fake_openai::common::Dialect`).
pub use crate::scripted_provider as common;

use crate::scripted_provider::{Dialect, ErrorReply, Frame, StreamReply};
use serde_json::{Value, json};

/// The fake OpenAI server. Dereferences to [`FakeServer`] for
/// `requests()`, `release_gate()`, `wait_closed()` and friends; stops when
/// dropped.
pub type FakeOpenAi = Fake<OpenAiDialect>;

/// OpenAI's Chat Completions wire format.
#[derive(Default)]
pub struct OpenAiDialect;

const CREATED: u64 = 1_700_000_000;

impl Dialect for OpenAiDialect {
    fn path_suffix(&self) -> &'static str {
        "/chat/completions"
    }

    fn stream_frames(&self, reply: &StreamReply, request: &Value) -> Vec<Frame> {
        let model = request["model"]
            .as_str()
            .unwrap_or("gpt-4o-mini")
            .to_owned();
        let include_usage = request["stream_options"]["include_usage"] == json!(true);
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut c = json!({
                "id": "chatcmpl-fake0001",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
            });
            if include_usage {
                c["usage"] = usage.unwrap_or(Value::Null);
            }
            Frame::meta(format!("data: {c}\n\n"))
        };
        let delta = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        let mut frames = vec![chunk(
            delta(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            None,
        )];
        for text in &reply.chunks {
            let mut f = chunk(delta(json!({"content": text}), Value::Null), None);
            f.is_text = true;
            frames.push(f);
        }
        if let Some((kind, message)) = &reply.error_event {
            let error =
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
            frames.push(Frame::meta(format!("data: {error}\n\n")));
            return frames;
        }
        frames.push(chunk(delta(json!({}), json!("stop")), None));
        if include_usage {
            let usage = json!({
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            });
            frames.push(chunk(json!([]), Some(usage)));
        }
        frames.push(Frame::meta("data: [DONE]\n\n".to_owned()));
        frames
    }

    fn error_body(&self, e: &ErrorReply) -> String {
        let (kind, code) = match e.status {
            400 => ("invalid_request_error", None),
            401 => ("invalid_request_error", Some("invalid_api_key")),
            403 => (
                "invalid_request_error",
                Some("unsupported_country_region_territory"),
            ),
            404 => ("invalid_request_error", Some("model_not_found")),
            429 => ("requests", Some("rate_limit_exceeded")),
            _ => ("server_error", None),
        };
        let kind = e.kind.as_deref().unwrap_or(kind);
        let code = e.code.as_deref().or(code);
        json!({"error": {"message": e.message, "type": kind, "param": null, "code": code}})
            .to_string()
    }
}
