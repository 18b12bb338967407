//! Shared by the core's tests (`core_*`, `providers_*`, `limits_core`,
//! `metrics_core`): runs the real `vibectl_core::serve` in-process on
//! 127.0.0.1:0 (or a Unix socket) and talks to it with the generated tonic
//! client over h2c. Every wait is bounded by [`WAIT`].

use futures::StreamExt;
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use vibectl_config::Config;
use vibectl_core::{CoreError, CoreListener};
use vibectl_proto::{
    ExecuteError, ExecuteRequest, ExecuteResponse, ExecuteSuccess, ExecutionMetrics, StreamChunk,
    StreamComplete, execute_response, stream_chunk::ChunkType,
    vibectl_llm_proxy_client::VibectlLlmProxyClient,
};

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A surely unset variable, for providers that must have no key.
pub const UNSET_KEY_ENV: &str = "VIBECTL_TEST_SURELY_UNSET_API_KEY";

/// A core served in-process, and a client connected to it.
pub struct Core {
    /// `127.0.0.1:PORT` or `unix:/path`.
    pub address: String,
    /// The gRPC channel (h2c).
    pub channel: Channel,
    /// Where `/metrics` listens, when started with metrics.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), CoreError>>,
}

impl Core {
    /// Binds `listen` (e.g. `127.0.0.1:0`), serves `config` and connects.
    pub async fn start_on(listen: &str, config: Config) -> Self {
        Self::start_inner(listen, config, false).await
    }

    /// Serves `config` on 127.0.0.1:0 with `/metrics` on another
    /// 127.0.0.1:0 listener ([`Core::metrics_addr`]).
    pub async fn start_with_metrics(config: Config) -> Self {
        Self::start_inner("127.0.0.1:0", config, true).await
    }

    async fn start_inner(listen: &str, config: Config, metrics: bool) -> Self {
        // Logs go to the test's captured output (shown when it fails).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vibectl_core=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let listener = CoreListener::bind(listen).await.expect("bind");
        let address = listener.local_addr_string();
        let metrics_listener = if metrics {
            Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind metrics"),
            )
        } else {
            None
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("metrics addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(vibectl_core::serve_with_metrics(
            listener,
            metrics_listener,
            Arc::new(config),
            shutdown.clone(),
        ));
        let channel = match address.strip_prefix("unix:") {
            Some(path) => unix_channel(path).await,
            None => tokio::time::timeout(
                WAIT,
                Endpoint::from_shared(format!("http://{address}"))
                    .expect("endpoint")
                    .connect(),
            )
            .await
            .expect("connect in time")
            .expect("connect"),
        };
        Self {
            address,
            channel,
            metrics_addr,
            shutdown,
            task,
        }
    }

    /// Serves `config` on 127.0.0.1:0.
    pub async fn start(config: Config) -> Self {
        Self::start_on("127.0.0.1:0", config).await
    }

    /// A new client on the shared channel.
    pub fn client(&self) -> VibectlLlmProxyClient<Channel> {
        VibectlLlmProxyClient::new(self.channel.clone())
    }

    /// A client over a plain hyper HTTP/2 client (TCP only). Unlike a tonic
    /// `Channel`, it does not enforce a `grpc-timeout` itself, so a test
    /// sees the status the core sends, as the edge would.
    pub fn raw_client(&self) -> VibectlLlmProxyClient<RawChannel> {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        let origin: http::Uri = format!("http://{}", self.address).parse().expect("origin");
        VibectlLlmProxyClient::with_origin(http, origin)
    }

    /// `GET /metrics` (the Prometheus text), bounded.
    pub async fn scrape(&self) -> String {
        let addr = self.metrics_addr.expect("started with metrics");
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{addr}/metrics").parse().expect("uri");
        let response = tokio::time::timeout(WAIT, http.get(uri))
            .await
            .expect("metrics answered in time")
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let body =
            tokio::time::timeout(WAIT, http_body_util::BodyExt::collect(response.into_body()))
                .await
                .expect("metrics body in time")
                .expect("metrics body")
                .to_bytes();
        String::from_utf8(body.to_vec()).expect("UTF-8 metrics")
    }

    /// Unary `Execute`, bounded.
    pub async fn execute(&self, request: ExecuteRequest) -> ExecuteResponse {
        tokio::time::timeout(WAIT, self.client().execute(request))
            .await
            .expect("Execute answered in time")
            .expect("Execute status OK")
            .into_inner()
    }

    /// `StreamExecute` opened (status OK), bounded: the stream of chunks.
    pub async fn open_stream(
        &self,
        request: impl tonic::IntoRequest<ExecuteRequest>,
    ) -> tonic::Streaming<StreamChunk> {
        tokio::time::timeout(WAIT, self.client().stream_execute(request))
            .await
            .expect("StreamExecute answered in time")
            .expect("StreamExecute status OK")
            .into_inner()
    }

    /// `StreamExecute`, every chunk until the stream ends, bounded.
    pub async fn stream(&self, request: ExecuteRequest) -> Vec<StreamChunk> {
        let chunks = self
            .open_stream(request)
            .await
            .map(|c| c.expect("chunk, not a status"));
        tokio::time::timeout(WAIT, chunks.collect::<Vec<_>>())
            .await
            .expect("stream ended in time")
    }

    /// Starts the shutdown (what SIGTERM does in the binary) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// True once `serve` has returned.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Cancels the server, waits for its drain and checks it ended cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve returned in time after shutdown");
        ended
            .expect("serve task did not panic")
            .expect("serve returned Ok");
    }
}

/// The transport of [`Core::raw_client`].
pub type RawChannel = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// The value of the Prometheus sample `name{labels…}` whose labels include
/// every pair of `labels` (the first such line), if any.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let found: Vec<(&str, &str)> = rest
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((k, v.trim_end_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|l| found.contains(l))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// Sets `name: value` metadata on a request (what the edge adds).
pub fn with_header<T>(
    mut request: tonic::Request<T>,
    name: &'static str,
    value: &str,
) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert(name, value.parse().expect("metadata value"));
    request
}

async fn unix_channel(path: &str) -> Channel {
    let path = path.to_owned();
    let connector = tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tokio::time::timeout(
        WAIT,
        Endpoint::from_static("http://core.invalid").connect_with_connector(connector),
    )
    .await
    .expect("connect in time")
    .expect("connect over the unix socket")
}

/// Parses a test configuration.
pub fn config(toml: &str) -> Config {
    let mut cfg = Config::from_toml(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
    // No usage ledger in the state dir of whoever runs the tests, unless
    // the test configures one (`[ledger] sqlite_path` in a temp dir).
    if !toml.contains("[ledger]") {
        cfg.ledger.enabled = false;
    }
    cfg
}

/// Writes `key` to a file in `dir` and returns its path, for `api_key_file`
/// (not an environment variable: tests run in parallel in one process).
pub fn key_file(dir: &Path, key: &str) -> String {
    let path = dir.join("api-key");
    std::fs::write(&path, format!("{key}\n")).expect("write key file");
    path.display().to_string()
}

/// A request for `model` with these fragments.
pub fn request(model: Option<&str>, system: &[&str], user: &[&str], id: &str) -> ExecuteRequest {
    ExecuteRequest {
        system_fragments: system.iter().map(|s| (*s).to_owned()).collect(),
        user_fragments: user.iter().map(|s| (*s).to_owned()).collect(),
        model_name: model.map(str::to_owned),
        response_model_schema: None,
        request_id: id.to_owned(),
    }
}

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
