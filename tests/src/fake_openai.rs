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
//! The scripting, recording, gate and close detection live in [`common`]
//! and are shared with [`crate::fake_anthropic`].

pub use common::{Fake, FakeServer, RecordedRequest, Script};

use common::{Dialect, ErrorReply, Frame, StreamReply};
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

/// The server machinery shared by the fake providers: scripting, request
/// recording, the gate, cutting a stream, and noticing the client hang up.
pub mod common {
    use bytes::Bytes;
    use http::{HeaderMap, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
    use hyper::body::{Frame as BodyFrame, Incoming};
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use std::{
        convert::Infallible,
        net::SocketAddr,
        sync::{Arc, Mutex, PoisonError},
        time::Duration,
    };
    use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
    use tokio_util::sync::CancellationToken;

    type Body = BoxBody<Bytes, std::io::Error>;

    /// One streamed answer.
    #[derive(Debug, Clone, Default)]
    pub struct StreamReply {
        /// The text deltas, in order.
        pub chunks: Vec<String>,
        /// Reported prompt tokens.
        pub input_tokens: u32,
        /// Reported completion tokens.
        pub output_tokens: u32,
        /// End the response after this many text chunks, without the
        /// stream's end marker (`[DONE]`, `message_stop`), and close the
        /// connection.
        pub cut_after: Option<usize>,
        /// With `cut_after`: abort the connection instead (no HTTP chunked
        /// terminator either, the client sees a broken body). What was sent
        /// before is flushed first (deterministic on a current-thread
        /// runtime, as `#[tokio::test]` uses).
        pub abort: bool,
        /// Hold the stream after the first text chunk until `release_gate()`.
        pub gated: bool,
        /// After the text chunks, send this in-stream error `(type, message)`
        /// instead of the normal end.
        pub error_event: Option<(String, String)>,
    }

    /// One HTTP error answer.
    #[derive(Debug, Clone, Default)]
    pub struct ErrorReply {
        /// HTTP status.
        pub status: u16,
        /// The error message.
        pub message: String,
        /// The error `type` (default: the provider's for this status).
        pub kind: Option<String>,
        /// The error `code` (OpenAI only; default: the provider's).
        pub code: Option<String>,
        /// A `retry-after` header value.
        pub retry_after: Option<String>,
    }

    /// One answer.
    #[derive(Debug, Clone)]
    pub enum Reply {
        /// 200 with an SSE stream.
        Stream(StreamReply),
        /// An HTTP error with the provider's error body.
        Error(ErrorReply),
    }

    /// What the fake answers: one [`Reply`] per request in order; the last
    /// one answers every later request. Builder methods after `text`/`error`
    /// change the last reply.
    #[derive(Debug, Clone)]
    pub struct Script {
        replies: Vec<Reply>,
    }

    impl Script {
        /// A stream of these text deltas; usage defaults to 10 prompt tokens
        /// and one completion token per delta.
        pub fn text<I: IntoIterator<Item = S>, S: Into<String>>(chunks: I) -> Self {
            let chunks: Vec<String> = chunks.into_iter().map(Into::into).collect();
            let output_tokens = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
            Self {
                replies: vec![Reply::Stream(StreamReply {
                    chunks,
                    input_tokens: 10,
                    output_tokens,
                    ..StreamReply::default()
                })],
            }
        }

        /// An HTTP error with the provider's error body around `message`.
        pub fn error(status: u16, message: impl Into<String>) -> Self {
            Self {
                replies: vec![Reply::Error(ErrorReply {
                    status,
                    message: message.into(),
                    ..ErrorReply::default()
                })],
            }
        }

        /// This script's replies, then `next`'s.
        pub fn then(mut self, next: Script) -> Self {
            self.replies.extend(next.replies);
            self
        }

        fn with_last_stream(mut self, f: impl FnOnce(&mut StreamReply)) -> Self {
            if let Some(Reply::Stream(s)) = self.replies.last_mut() {
                f(s);
            }
            self
        }

        fn with_last_error(mut self, f: impl FnOnce(&mut ErrorReply)) -> Self {
            if let Some(Reply::Error(e)) = self.replies.last_mut() {
                f(e);
            }
            self
        }

        /// The usage the stream reports.
        pub fn usage(self, input_tokens: u32, output_tokens: u32) -> Self {
            self.with_last_stream(|s| {
                s.input_tokens = input_tokens;
                s.output_tokens = output_tokens;
            })
        }

        /// Hold the stream after its first text chunk until `release_gate()`.
        pub fn gated(self) -> Self {
            self.with_last_stream(|s| s.gated = true)
        }

        /// End the stream after `n` text chunks without its end marker and
        /// close the connection.
        pub fn cut_after(self, n: usize) -> Self {
            self.with_last_stream(|s| s.cut_after = Some(n))
        }

        /// Abort the connection after `n` text chunks (a broken HTTP body).
        pub fn abort_after(self, n: usize) -> Self {
            self.with_last_stream(|s| {
                s.cut_after = Some(n);
                s.abort = true;
            })
        }

        /// End the stream with an in-stream error event instead.
        pub fn error_event(self, kind: &str, message: &str) -> Self {
            self.with_last_stream(|s| s.error_event = Some((kind.to_owned(), message.to_owned())))
        }

        /// The error body's `type`.
        pub fn error_type(self, kind: &str) -> Self {
            self.with_last_error(|e| e.kind = Some(kind.to_owned()))
        }

        /// The error body's `code` (OpenAI).
        pub fn error_code(self, code: &str) -> Self {
            self.with_last_error(|e| e.code = Some(code.to_owned()))
        }

        /// A `retry-after` header on the error.
        pub fn retry_after(self, value: &str) -> Self {
            self.with_last_error(|e| e.retry_after = Some(value.to_owned()))
        }
    }

    /// One request the fake received.
    #[derive(Debug, Clone)]
    pub struct RecordedRequest {
        /// `POST`, …
        pub method: String,
        /// The path, e.g. `/v1/chat/completions`.
        pub path: String,
        /// Every header as received.
        pub headers: HeaderMap,
        /// The body as JSON (`Null` if it was not JSON).
        pub body: Value,
    }

    impl RecordedRequest {
        /// A header's value as text.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
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

    /// A fake provider speaking `D`'s wire format. Dereferences to
    /// [`FakeServer`]; stops when dropped.
    pub struct Fake<D>(FakeServer, std::marker::PhantomData<D>);

    impl<D: Dialect + Default> Fake<D> {
        /// Binds 127.0.0.1:0 and serves `script` (one reply per request, the
        /// last reply repeating).
        pub async fn start(script: Script) -> Self {
            Self(
                FakeServer::start(Box::new(D::default()), script).await,
                std::marker::PhantomData,
            )
        }

        /// `http://127.0.0.1:PORT/v1`: what `base_url` should be.
        pub fn base_url(&self) -> String {
            format!("{}/v1", self.0.origin())
        }
    }

    impl<D> std::ops::Deref for Fake<D> {
        type Target = FakeServer;
        fn deref(&self) -> &FakeServer {
            &self.0
        }
    }

    /// A provider's wire format.
    pub trait Dialect: Send + Sync + 'static {
        /// Requests to a path ending so are answered; others get a 404.
        fn path_suffix(&self) -> &'static str;
        /// The SSE frames of a streamed reply to `request` (its JSON body).
        fn stream_frames(&self, reply: &StreamReply, request: &Value) -> Vec<Frame>;
        /// The JSON error body.
        fn error_body(&self, error: &ErrorReply) -> String;
    }

    struct State {
        dialect: Box<dyn Dialect>,
        replies: Vec<Reply>,
        served: Mutex<usize>,
        requests: Mutex<Vec<RecordedRequest>>,
        received: watch::Sender<usize>,
        gate: watch::Sender<bool>,
        closed: watch::Sender<usize>,
        stop: CancellationToken,
    }

    /// A running fake provider; stops (closing every connection) when dropped.
    pub struct FakeServer {
        addr: SocketAddr,
        state: Arc<State>,
        task: JoinHandle<()>,
    }

    impl FakeServer {
        /// Binds 127.0.0.1:0 and starts serving.
        pub async fn start(dialect: Box<dyn Dialect>, script: Script) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("local addr");
            let state = Arc::new(State {
                dialect,
                replies: script.replies,
                served: Mutex::new(0),
                requests: Mutex::new(Vec::new()),
                received: watch::Sender::new(0),
                gate: watch::Sender::new(false),
                closed: watch::Sender::new(0),
                stop: CancellationToken::new(),
            });
            let task = tokio::spawn(accept_loop(listener, state.clone()));
            Self { addr, state, task }
        }

        /// `http://127.0.0.1:PORT`.
        pub fn origin(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// Every request received so far, in order.
        pub fn requests(&self) -> Vec<RecordedRequest> {
            self.state
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// Waits until at least `n` requests were received; false if that
        /// did not happen within `timeout`.
        pub async fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
            let mut rx = self.state.received.subscribe();
            tokio::time::timeout(timeout, rx.wait_for(|seen| *seen >= n))
                .await
                .is_ok_and(|r| r.is_ok())
        }

        /// Lets gated streams go on (now and from now on).
        pub fn release_gate(&self) {
            self.state.gate.send_replace(true);
        }

        /// How many streams the client closed (connection or body dropped)
        /// before the fake had sent them completely.
        pub fn closed_count(&self) -> usize {
            *self.state.closed.borrow()
        }

        /// Waits until the client closed at least one stream early; false if
        /// that did not happen within `timeout`.
        pub async fn wait_closed(&self, timeout: Duration) -> bool {
            let mut rx = self.state.closed.subscribe();
            tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.state.stop.cancel();
            self.task.abort();
        }
    }

    async fn accept_loop(listener: TcpListener, state: Arc<State>) {
        // Connection tasks live in this set: aborting the loop closes them.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let state = state.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        state: Arc<State>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RecordedRequest {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
                body: json.clone(),
            });
        state.received.send_modify(|n| *n += 1);
        if !parts.uri.path().ends_with(state.dialect.path_suffix()) {
            let error = ErrorReply {
                status: 404,
                message: format!("no route {}", parts.uri.path()),
                ..ErrorReply::default()
            };
            return Ok(error_response(&state, &error));
        }
        let reply = {
            let mut served = state.served.lock().unwrap_or_else(PoisonError::into_inner);
            let index = (*served).min(state.replies.len().saturating_sub(1));
            *served += 1;
            state.replies.get(index).cloned()
        };
        Ok(match reply {
            None => error_response(
                &state,
                &ErrorReply {
                    status: 500,
                    message: "empty script".into(),
                    ..ErrorReply::default()
                },
            ),
            Some(Reply::Error(error)) => error_response(&state, &error),
            Some(Reply::Stream(reply)) => stream_response(&state, &reply, &json),
        })
    }

    fn error_response(state: &State, error: &ErrorReply) -> Response<Body> {
        let body = state.dialect.error_body(error);
        let mut builder = Response::builder()
            .status(StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("content-type", "application/json");
        if let Some(retry_after) = &error.retry_after {
            builder = builder.header("retry-after", retry_after.as_str());
        }
        builder
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid response")
    }

    fn stream_response(state: &Arc<State>, reply: &StreamReply, request: &Value) -> Response<Body> {
        let frames = state.dialect.stream_frames(reply, request);
        // Capacity 1: the producer learns when hyper has taken each frame.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(produce(state.clone(), reply.clone(), frames, tx));
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut builder = Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache");
        if reply.cut_after.is_some() {
            builder = builder.header("connection", "close");
        }
        builder.body(BodyExt::boxed(body)).expect("valid response")
    }

    type Sender = tokio::sync::mpsc::Sender<Result<BodyFrame<Bytes>, std::io::Error>>;

    /// Feeds the frames into the response body, honouring the gate and the
    /// cut; notes a client that hangs up before the end.
    async fn produce(state: Arc<State>, reply: StreamReply, frames: Vec<Frame>, tx: Sender) {
        let mut texts = 0;
        let mut gate = state.gate.subscribe();
        for frame in frames {
            // Cut right after the n-th text delta (before the first for 0).
            if reply.cut_after == Some(texts) && (texts > 0 || frame.is_text) {
                if reply.abort {
                    // Once hyper has taken the last frame it flushes it (its
                    // next poll of the body is Pending); then an error frame
                    // makes it abort the connection mid-body.
                    tokio::select! {
                        _ = tx.reserve() => {}
                        _ = state.stop.cancelled() => return,
                    }
                    let _ = tx
                        .send(Err(std::io::Error::other("aborted by the script")))
                        .await;
                }
                // Else dropping `tx` ends the body early; `connection: close`.
                return;
            }
            let sent = tokio::select! {
                sent = tx.send(Ok(BodyFrame::data(Bytes::from(frame.bytes)))) => sent.is_ok(),
                _ = state.stop.cancelled() => return,
            };
            if !sent {
                state.closed.send_modify(|n| *n += 1);
                return;
            }
            if frame.is_text {
                texts += 1;
                if reply.gated && texts == 1 {
                    tokio::select! {
                        _ = gate.wait_for(|open| *open) => {}
                        _ = tx.closed() => {
                            state.closed.send_modify(|n| *n += 1);
                            return;
                        }
                        _ = state.stop.cancelled() => return,
                    }
                }
            }
        }
    }
}
