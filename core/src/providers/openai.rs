//! The OpenAI Chat Completions wire format (also spoken by vLLM, llama.cpp,
//! Ollama's `/v1`, …): `POST {base_url}/chat/completions` with
//! `stream: true` and `stream_options.include_usage`, answered by SSE
//! `chat.completion.chunk`s, a final usage chunk and `data: [DONE]`.

use super::{
    ProviderError, ProviderRequest, Usage,
    format::{Parsed, saturate, wire_format},
};
use eventsource_stream::Event;
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Value, json};
use vibectl_config::Secret;

/// The OpenAI Chat Completions format.
#[derive(Debug)]
pub(super) struct OpenAi;

wire_format!(
    OpenAi,
    base_url: "https://api.openai.com/v1",
    path: "/chat/completions"
);

/// The request body: system fragments as one `system` message, user
/// fragments as one `user` message; a schema becomes a strict
/// `json_schema` response format.
fn body(req: &ProviderRequest) -> Value {
    let mut messages = Vec::new();
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system_prompt()}));
    }
    messages.push(json!({"role": "user", "content": req.user_prompt()}));
    let mut body = json!({
        "model": req.model.upstream_model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(schema) = &req.schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema, "strict": true},
        });
    }
    if let Some(max) = req.model.max_output_tokens {
        body["max_completion_tokens"] = json!(max);
    }
    body
}

/// `Authorization: Bearer KEY` (marked sensitive so it is never logged).
fn authorize(rb: reqwest::RequestBuilder, key: &Secret) -> reqwest::RequestBuilder {
    match reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
        Ok(mut value) => {
            value.set_sensitive(true);
            rb.header(reqwest::header::AUTHORIZATION, value)
        }
        // A key with control characters cannot be sent; the 401 says so.
        Err(_) => rb,
    }
}

/// One SSE event: a `chat.completion.chunk`, or `[DONE]`.
fn parse(event: &Event) -> Result<Parsed, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Parsed {
            done: true,
            ..Parsed::default()
        });
    }
    if data.is_empty() {
        return Ok(Parsed::default());
    }
    match serde_json::from_str::<Chunk>(data) {
        Ok(chunk) if chunk.error.is_none() => Ok(chunk.into()),
        // An error event, or a shape the typed reading does not take
        // (a field of another JSON type): the lenient reading decides.
        _ => parse_value(data),
    }
}

/// The fields of a `chat.completion.chunk` the proxy reads. Everything
/// else in the event is skipped as it is parsed, not built into a `Value`
/// tree (a map per object, a string per key and value) as [`parse_value`]
/// does.
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<ChunkUsage>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl Chunk {
    /// The same fields of a `Value`; one of another JSON type is absent.
    fn of(v: &Value) -> Self {
        let delta = &v["choices"][0]["delta"];
        let text = |key: &str| delta[key].as_str().map(str::to_owned);
        Self {
            choices: Some(vec![Choice {
                delta: Some(Delta {
                    content: text("content"),
                    refusal: text("refusal"),
                }),
            }]),
            usage: v
                .get("usage")
                .filter(|u| u.is_object())
                .map(|u| ChunkUsage {
                    prompt_tokens: u["prompt_tokens"].as_u64(),
                    completion_tokens: u["completion_tokens"].as_u64(),
                }),
            error: None,
        }
    }
}

impl From<Chunk> for Parsed {
    fn from(chunk: Chunk) -> Self {
        let delta = chunk
            .choices
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.delta);
        Parsed {
            text: delta.and_then(|d| d.content.or(d.refusal)),
            usage: chunk.usage.map(|u| Usage {
                input_tokens: u.prompt_tokens.map(saturate),
                output_tokens: u.completion_tokens.map(saturate),
            }),
            done: false,
        }
    }
}

/// The lenient reading of a chunk, through a `Value`: any JSON type in any
/// field, and the error events.
fn parse_value(data: &str) -> Result<Parsed, ProviderError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| ProviderError::BadResponse(format!("a stream event is not JSON: {e}")))?;
    if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
        return Err(ProviderError::Upstream {
            kind: error_kind(error),
            message: error_text(error),
        });
    }
    Ok(Chunk::of(&v).into())
}

/// The message of an error body `{"error":{"message","type","code"}}`.
fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let error = v.get("error")?;
    let mut message = error_text(error);
    let extra: Vec<String> = ["type", "code"]
        .iter()
        .filter_map(|k| error[*k].as_str().map(|s| format!("{k} {s}")))
        .collect();
    if !extra.is_empty() {
        message = format!("{message} ({})", extra.join(", "));
    }
    Some(message)
}

fn error_text(error: &Value) -> String {
    error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .unwrap_or("no message")
        .to_owned()
}

fn error_kind(error: &Value) -> String {
    error["type"]
        .as_str()
        .or_else(|| error["code"].as_str())
        .unwrap_or("error")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event {
            data: data.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn content_usage_and_done() {
        let p = parse(&event(r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)).expect("parse");
        assert_eq!(p.text.as_deref(), Some(""));
        let p = parse(&event(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#)).expect("parse");
        assert_eq!(p.text.as_deref(), Some("Hi"));
        assert!(p.usage.is_none());
        let p = parse(&event(
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
        ))
        .expect("parse");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: Some(9),
                output_tokens: Some(3)
            })
        );
        assert!(parse(&event("[DONE]")).expect("done").done);
    }

    /// The typed reading gives what the lenient one gives, on the events
    /// it takes; the others (a field of another JSON type) still parse.
    #[test]
    fn typed_and_lenient_readings_agree() {
        let typed = [
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"caf\u00e9 \"q\""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"refusal":"no"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}}}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":99999999999}}"#,
            r#"{"usage":{}}"#,
            r#"{}"#,
        ];
        for data in typed {
            let chunk: Chunk = serde_json::from_str(data).expect(data);
            let lenient = parse_value(data).expect(data);
            assert_eq!(Parsed::from(chunk), lenient, "{data}");
        }
        for (data, text) in [
            (
                r#"{"choices":[{"delta":{"content":["a"],"refusal":"r"}}]}"#,
                Some("r"),
            ),
            (r#"{"choices":"none","usage":{"prompt_tokens":1.5}}"#, None),
            (r#""just a string""#, None),
        ] {
            assert!(serde_json::from_str::<Chunk>(data).is_err(), "{data}");
            let p = parse(&event(data)).expect(data);
            assert_eq!(p.text.as_deref(), text, "{data}");
        }
        let p = parse(&event(
            r#"{"choices":"none","usage":{"prompt_tokens":1.5}}"#,
        ))
        .expect("lenient");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: None,
                output_tokens: None
            })
        );
    }

    #[test]
    fn errors() {
        let body = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("Incorrect API key provided (type invalid_request_error, code invalid_api_key)")
        );
        assert_eq!(error_message("<html>"), None);
        assert!(matches!(
            parse(&event("{not json")),
            Err(ProviderError::BadResponse(_))
        ));
        let err = parse(&event(
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
        ))
        .expect_err("must fail");
        assert_eq!(err.code(), "provider_error_server_error");
    }
}
