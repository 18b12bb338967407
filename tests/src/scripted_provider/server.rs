//! The running fake provider: the accept loop, the request handler that
//! records each request and picks its reply from the script, and the
//! streamed body that honours the gate and the cut.

use super::{Dialect, ErrorReply, Frame, Reply, Script, StreamReply};
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

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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
    if let Some(location) = &error.location {
        builder = builder.header("location", location.as_str());
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
