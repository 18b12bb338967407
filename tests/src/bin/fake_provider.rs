//! `fake_provider`: a standalone OpenAI-compatible Chat Completions server
//! for benchmarks. Every `POST …/chat/completions` gets the documented
//! `chat.completion.chunk` SSE stream: a role delta, one content delta, then
//! the stream is held open for `--hold` (or until the client hangs up), then
//! the finish chunk, the usage chunk (when `stream_options.include_usage`)
//! and `data: [DONE]`. It is what keeps 1,000 streams open through the core
//! and the edge while `scripts/bench` measures the edge's memory.
//!
//! ```text
//! fake_provider --listen 127.0.0.1:0 --hold 60s --exit-after 10m --addr-file addr
//! # prints and writes `http://127.0.0.1:PORT/v1`: the core's base_url
//! ```
//!
//! A prompt containing `hold:DURATION` (e.g. `hold:15s`) is held for that
//! long instead of `--hold`.
//!
//! With `--tokens N` it paces like a model server instead (the time-to-
//! first-token benchmark): nothing for `--first-token`, then the role delta
//! and the first of N one-word content deltas, the rest `--token-gap`
//! apart, then the finish and usage chunks and `data: [DONE]` at once, and
//! `--end-gap` later the end of the chunked body (a separate segment, as
//! Python servers send it: a client that drops the body at `[DONE]` loses
//! its keep-alive connection).
//!
//! Paced calls whose prompt carries `[call N]` are timed: the wall-clock
//! instant the request arrived and the one its first token left, served as
//! JSON at `GET …/_timings` (see `vibectl_tests::call_timing`).
//! `ttft` subtracts them from its own instants, so the provider's own wait
//! (a tokio timer, rounded up to its next millisecond tick) drops out of the
//! measured legs instead of adding up to 1 ms of noise to each call.
//!
//! Unlike `vibectl_tests::fake_openai` (scripted replies, a global gate,
//! every request recorded for assertions), each stream here is held for its
//! own time and nothing is recorded, so its memory stays flat however many
//! calls it serves. HTTP/1.1 only, as reqwest speaks to a plain `http://`
//! base URL. Binds loopback by default; exits by itself after
//! `--exit-after`, or at SIGINT/SIGTERM.

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use vibectl_tests::call_timing::{self, CallTiming, Timings, now_ns};

/// A fake OpenAI-compatible provider that holds every stream open.
#[derive(Debug, Parser)]
#[command(name = "fake_provider")]
struct Args {
    /// Address to listen on (loopback only is sensible).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How long each stream stays open after its first content chunk.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    hold: Duration,
    /// The text of the one content chunk sent before holding.
    #[arg(long, default_value = "held")]
    text: String,
    /// Exit after this long whatever happens (a bound for scripts).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    exit_after: Duration,
    /// Held streams: send a one-character content chunk this often while
    /// holding (0: silent), so that held streams carry traffic.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    trickle: Duration,
    /// Pace like a model server: stream this many content tokens (0: hold).
    #[arg(long, default_value_t = 0)]
    tokens: u32,
    /// Paced mode: the wait before the first token.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
    first_token: Duration,
    /// Paced mode: the wait between two tokens.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15ms")]
    token_gap: Duration,
    /// Paced mode: the wait between `data: [DONE]` and the body's end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1ms")]
    end_gap: Duration,
    /// Also write the base URL (`http://ADDR/v1`) to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
}

/// Counters printed at exit.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    completed: AtomicU64,
    /// Timed paced calls by their `[call N]` (see the module doc).
    timings: std::sync::Mutex<Timings>,
}

/// The most timed calls kept (the oldest are dropped beyond it).
const MAX_TIMINGS: usize = 100_000;

impl Stats {
    fn timings(&self) -> std::sync::MutexGuard<'_, Timings> {
        self.timings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    let base_url = format!("http://{}/v1", listener.local_addr()?);
    if let Some(path) = &args.addr_file {
        // Written whole, then renamed: a reader never sees half a URL.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{base_url}\n"))?;
        std::fs::rename(&tmp, path)?;
    }
    println!("fake_provider listening {base_url} hold={:?}", args.hold);
    let stats = Arc::new(Stats::default());
    let args = Arc::new(args);
    let serve = accept_loop(listener, args.clone(), stats.clone());
    tokio::select! {
        () = serve => {}
        () = tokio::time::sleep(args.exit_after) => eprintln!("fake_provider: --exit-after reached"),
        () = shutdown_signal() => {}
    }
    println!(
        "fake_provider: {} requests, {} streams completed",
        stats.requests.load(Ordering::Relaxed),
        stats.completed.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn accept_loop(listener: TcpListener, args: Arc<Args>, stats: Arc<Stats>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE and friends: back off a moment, never spin.
                eprintln!("fake_provider: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let args = args.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(args.clone(), stats.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    args: Arc<Args>,
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let received_ns = now_ns();
    let path = req.uri().path().to_owned();
    if path.ends_with(call_timing::PATH) {
        let body = serde_json::to_string(&*stats.timings()).unwrap_or_default();
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(Full::new(Bytes::from(body))))
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response")));
    }
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !path.ends_with("/chat/completions") {
        return Ok(error(StatusCode::NOT_FOUND, &format!("no route {path}")));
    }
    let request: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if request["stream"] != json!(true) {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "fake_provider only streams: send \"stream\": true",
        ));
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let model = request["model"]
        .as_str()
        .unwrap_or("gpt-4o-mini")
        .to_owned();
    let usage = request["stream_options"]["include_usage"] == json!(true);
    let chunk = move |choices: Value, with_usage: Option<Value>| {
        let mut c = json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": choices,
        });
        if usage {
            c["usage"] = with_usage.unwrap_or(Value::Null);
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let delta = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    if args.tokens > 0 && hold_override(&request).is_none() {
        let id = call_id(&request);
        if let Some(id) = id {
            let mut timings = stats.timings();
            if timings.len() >= MAX_TIMINGS {
                timings.pop_first();
            }
            timings.insert(
                id,
                CallTiming {
                    received_ns,
                    first_sent_ns: None,
                },
            );
        }
        return Ok(sse(paced(&args, stats, id, &chunk, &delta)));
    }
    let mut head = chunk(
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        None,
    )
    .to_vec();
    head.extend_from_slice(&chunk(
        delta(json!({"content": args.text}), Value::Null),
        None,
    ));
    let mut tail = chunk(delta(json!({}), json!("stop")), None).to_vec();
    if usage {
        let u = json!({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11});
        tail.extend_from_slice(&chunk(json!([]), Some(u)));
    }
    tail.extend_from_slice(b"data: [DONE]\n\n");

    // Head now, then the tail after `hold`. A client that hangs up drops
    // the body, and with it the pending sleep: nothing lingers.
    let hold = hold_override(&request).unwrap_or(args.hold);
    let head = futures::stream::once(async move { Bytes::from(head) });
    let trickle = args.trickle;
    let ticks = if trickle.is_zero() {
        0
    } else {
        u32::try_from(hold.as_nanos() / trickle.as_nanos()).unwrap_or(u32::MAX)
    };
    let hold = hold.saturating_sub(trickle.saturating_mul(ticks));
    let tick = chunk(delta(json!({"content": "."}), Value::Null), None);
    let ticking = futures::stream::iter(0..ticks).then(move |_| {
        let tick = tick.clone();
        async move {
            tokio::time::sleep(trickle).await;
            tick
        }
    });
    let tail = futures::stream::once(async move {
        tokio::time::sleep(hold).await;
        stats.completed.fetch_add(1, Ordering::Relaxed);
        Bytes::from(tail)
    });
    Ok(sse(head.chain(ticking).chain(tail).boxed()))
}

/// The paced stream of `--tokens`: see the module documentation.
fn paced(
    args: &Args,
    stats: Arc<Stats>,
    id: Option<u64>,
    chunk: &dyn Fn(Value, Option<Value>) -> Bytes,
    delta: &dyn Fn(Value, Value) -> Value,
) -> futures::stream::BoxStream<'static, Bytes> {
    let n = args.tokens;
    let mut first = chunk(
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        None,
    )
    .to_vec();
    let words: Vec<Bytes> = (0..n)
        .map(|i| {
            chunk(
                delta(json!({"content": format!(" tok{i}")}), Value::Null),
                None,
            )
        })
        .collect();
    first.extend_from_slice(&words[0]);
    let mut tail = chunk(delta(json!({}), json!("stop")), None).to_vec();
    let u = json!({"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n});
    tail.extend_from_slice(&chunk(json!([]), Some(u)));
    tail.extend_from_slice(b"data: [DONE]\n\n");
    let (first_wait, gap) = (args.first_token, args.token_gap);
    let mut frames: Vec<(Duration, Bytes)> = vec![(first_wait, Bytes::from(first))];
    frames.extend(words.into_iter().skip(1).map(|w| (gap, w)));
    frames.push((Duration::ZERO, Bytes::from(tail)));
    // Empty: hyper writes nothing for it; the body's end follows it.
    frames.push((args.end_gap, Bytes::new()));
    let last = frames.len() - 2;
    futures::stream::iter(frames.into_iter().enumerate())
        .then(move |(i, (wait, bytes))| {
            let stats = stats.clone();
            async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                if i == 0
                    && let Some(id) = id
                    && let Some(t) = stats.timings().get_mut(&id)
                {
                    t.first_sent_ns = Some(now_ns());
                }
                if i == last {
                    stats.completed.fetch_add(1, Ordering::Relaxed);
                }
                bytes
            }
        })
        .boxed()
}

/// A `text/event-stream` response of `body`.
fn sse(body: futures::stream::BoxStream<'static, Bytes>) -> Response<Body> {
    let body = body.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed_unsync(StreamBody::new(body)))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// `[call N]` in any message of the request: the call's id for timing.
fn call_id(request: &Value) -> Option<u64> {
    let messages = request["messages"].as_array()?;
    messages
        .iter()
        .find_map(|m| call_timing::id_in(m["content"].as_str()?))
}

/// `hold:DURATION` in any message of the request, e.g. `hold:15s`.
fn hold_override(request: &Value) -> Option<Duration> {
    let messages = request["messages"].as_array()?;
    messages.iter().find_map(|m| {
        let content = m["content"].as_str()?;
        let (_, rest) = content.split_once("hold:")?;
        let word = rest.split_whitespace().next()?;
        humantime::parse_duration(word).ok()
    })
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
