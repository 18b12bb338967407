//! The Anthropic Messages API wire format: `POST {base_url}/messages` with
//! `x-api-key` and `anthropic-version`, answered by SSE events
//! `message_start` (input tokens), `content_block_delta` (`text_delta`),
//! `message_delta` (output tokens), `message_stop`, `ping` and `error`.

use super::{
    ProviderError, ProviderRequest, Usage,
    format::{Parsed, saturate, wire_format},
};
use eventsource_stream::Event;
use serde::Deserialize;
use serde_json::{Value, json};
use vibectl_config::{Secret, defaults};

/// The API version this client speaks.
pub(super) const API_VERSION: &str = "2023-06-01";

/// The Anthropic Messages format.
#[derive(Debug)]
pub(super) struct Anthropic;

wire_format!(
    Anthropic,
    base_url: "https://api.anthropic.com/v1",
    path: "/messages"
);

/// The request body: the system fragments as the `system` string (plus the
/// schema instruction, if any), the user fragments as one user message.
fn body(req: &ProviderRequest) -> Value {
    let mut system = req.system_prompt();
    if let Some(schema) = &req.schema {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(
            "Answer with one JSON document only (no prose, no code fences) that \
             validates against this JSON schema:\n",
        );
        system.push_str(&schema.to_string());
    }
    let mut body = json!({
        "model": req.model.upstream_model,
        "max_tokens": req.model.max_output_tokens.unwrap_or(defaults::MAX_OUTPUT_TOKENS),
        "stream": true,
        "messages": [{"role": "user", "content": req.user_prompt()}],
    });
    if !system.is_empty() {
        body["system"] = json!(system);
    }
    body
}

/// `x-api-key` (marked sensitive) and `anthropic-version`.
fn authorize(rb: reqwest::RequestBuilder, key: &Secret) -> reqwest::RequestBuilder {
    let rb = rb.header("anthropic-version", API_VERSION);
    match reqwest::header::HeaderValue::from_str(key.expose()) {
        Ok(mut value) => {
            value.set_sensitive(true);
            rb.header("x-api-key", value)
        }
        Err(_) => rb,
    }
}

/// One SSE event, by its `type`.
fn parse(event: &Event) -> Result<Parsed, ProviderError> {
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(Parsed::default());
    }
    if let Some(parsed) = serde_json::from_str::<Typed>(data)
        .ok()
        .and_then(|typed| typed.read(&event.event))
    {
        return Ok(parsed);
    }
    // An error event, or a shape the typed reading does not take (a field
    // of another JSON type): the lenient reading decides.
    parse_value(event, data)
}

/// The fields of an event the proxy reads. Everything else (the whole
/// `message` of `message_start` but its usage, block indexes, stop
/// reasons) is skipped as it is parsed, not built into a `Value` tree as
/// [`parse_value`] does.
#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    message: Option<TypedMessage>,
    #[serde(borrow)]
    delta: Option<TypedDelta<'a>>,
    usage: Option<TypedUsage>,
}

#[derive(Deserialize)]
struct TypedMessage {
    usage: Option<TypedUsage>,
}

#[derive(Deserialize)]
struct TypedDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    text: Option<String>,
}

#[derive(Default, Deserialize)]
struct TypedUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl TypedUsage {
    /// The same fields of a `Value`; one of another JSON type is absent.
    fn of(usage: &Value) -> Self {
        Self {
            input_tokens: usage["input_tokens"].as_u64(),
            output_tokens: usage["output_tokens"].as_u64(),
            cache_creation_input_tokens: usage["cache_creation_input_tokens"].as_u64(),
            cache_read_input_tokens: usage["cache_read_input_tokens"].as_u64(),
        }
    }

    /// Input tokens count prompt-cache reads and writes (billed as input).
    fn usage(self) -> Usage {
        let cached = [
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ]
        .into_iter()
        .flatten()
        .map(saturate)
        .fold(0u32, u32::saturating_add);
        Usage {
            input_tokens: self
                .input_tokens
                .map(|n| saturate(n).saturating_add(cached)),
            output_tokens: self.output_tokens.map(saturate),
        }
    }
}

impl<'a> Typed<'a> {
    /// The same fields of a `Value`; one of another JSON type is absent.
    fn of(v: &'a Value) -> Self {
        Self {
            kind: v["type"].as_str(),
            message: Some(TypedMessage {
                usage: Some(TypedUsage::of(&v["message"]["usage"])),
            }),
            delta: Some(TypedDelta {
                kind: v["delta"]["type"].as_str(),
                text: v["delta"]["text"].as_str().map(str::to_owned),
            }),
            usage: Some(TypedUsage::of(&v["usage"])),
        }
    }

    /// The event read by its `type` (else the SSE event name); `None` for
    /// an `error` event, which [`parse_value`] reads.
    fn read(self, event_name: &str) -> Option<Parsed> {
        let mut parsed = Parsed::default();
        match self.kind.unwrap_or(event_name) {
            "message_start" => {
                let usage = self.message.and_then(|m| m.usage).unwrap_or_default();
                parsed.usage = Some(usage.usage());
            }
            "content_block_delta" => {
                if let Some(delta) = self.delta.filter(|d| d.kind == Some("text_delta")) {
                    parsed.text = delta.text;
                }
            }
            "message_delta" => parsed.usage = Some(self.usage.unwrap_or_default().usage()),
            "message_stop" => parsed.done = true,
            "error" => return None,
            // ping, content_block_start/stop, other block types (thinking,
            // tool use) and event types added later carry no text for us.
            _ => {}
        }
        Some(parsed)
    }
}

/// The lenient reading of an event, through a `Value`: any JSON type in
/// any field, and the error events.
fn parse_value(event: &Event, data: &str) -> Result<Parsed, ProviderError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| ProviderError::BadResponse(format!("a stream event is not JSON: {e}")))?;
    Typed::of(&v)
        .read(&event.event)
        .ok_or_else(|| ProviderError::Upstream {
            kind: v["error"]["type"].as_str().unwrap_or("error").to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned(),
        })
}

/// The message of an error body `{"type":"error","error":{"type","message"}}`.
fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let error = v.get("error")?;
    let message = error["message"].as_str().unwrap_or("no message");
    Some(match error["type"].as_str() {
        Some(kind) => format!("{message} ({kind})"),
        None => message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            event: name.to_owned(),
            data: data.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn documented_events() {
        let p = parse(&event("message_start", r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#)).expect("start");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: Some(25),
                output_tokens: Some(1)
            })
        );
        let p = parse(&event("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#)).expect("delta");
        assert_eq!(p.text.as_deref(), Some("Hello"));
        let p = parse(&event("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#)).expect("message_delta");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: None,
                output_tokens: Some(15)
            })
        );
        assert!(
            parse(&event("ping", r#"{"type": "ping"}"#))
                .expect("ping")
                .text
                .is_none()
        );
        assert!(
            parse(&event("message_stop", r#"{"type":"message_stop"}"#))
                .expect("stop")
                .done
        );
    }

    /// The typed reading gives what the lenient one gives, on the events
    /// it takes; the others (a field of another JSON type) still parse.
    #[test]
    fn typed_and_lenient_readings_agree() {
        let typed = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":10,"cache_read_input_tokens":4294967295,"output_tokens":1}}}"#,
            ),
            (
                "message_start",
                r#"{"type":"message_start","message":{"usage":null}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf\u00e9 \"q\""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
            ("message_delta", r#"{"type":"message_delta","delta":{}}"#),
            ("message_stop", r#"{}"#),
            ("ping", r#"{"type": "ping"}"#),
        ];
        for (name, data) in typed {
            let e = event(name, data);
            let read: Typed = serde_json::from_str(data).expect(data);
            let lenient = parse_value(&e, data).expect(data);
            assert_eq!(read.read(name), Some(lenient), "{data}");
        }
        let odd = event(
            "content_block_delta",
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":7}}"#,
        );
        assert!(serde_json::from_str::<Typed>(&odd.data).is_err());
        assert_eq!(parse(&odd).expect("lenient").text, None);
    }

    #[test]
    fn errors() {
        let err = parse(&event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ))
        .expect_err("must fail");
        assert_eq!(err.code(), "provider_error_overloaded_error");
        assert_eq!(
            error_message(r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#).as_deref(),
            Some("invalid x-api-key (authentication_error)")
        );
    }
}
