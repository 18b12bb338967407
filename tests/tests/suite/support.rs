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
    ExecuteRequest, ExecuteResponse, StreamChunk, vibectl_llm_proxy_client::VibectlLlmProxyClient,
};
use vibectl_tests::{
    fake_openai::FakeOpenAi,
    harness::{Stack, authed, execute_request},
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

/// Config text: `extra` first, then the `echo` model and `gpt-4o-mini`
/// (0.15 and 0.6 USD per million tokens) from an `openai` provider at
/// `fake`, its key in a file in `dir`, `provider_extra` in its table.
pub fn openai_toml(extra: &str, fake: &FakeOpenAi, dir: &Path, provider_extra: &str) -> String {
    format!(
        r#"{extra}
[providers.echo]
kind = "echo"

[providers.openai]
kind = "openai"
base_url = "{base}"
api_key_file = "{key}"
{provider_extra}

[[models]]
id = "echo"
provider = "echo"

[[models]]
id = "gpt-4o-mini"
provider = "openai"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
"#,
        base = fake.base_url(),
        key = key_file(dir, "sk-test-0123456789abcdef"),
    )
}

/// A stack (edge and core) configured by [`openai_toml`] with `extra`,
/// and the directory holding the key file (keep it while the stack runs).
pub async fn stack_with_openai(fake: &FakeOpenAi, extra: &str) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = openai_toml(extra, fake, dir.path(), "");
    (Stack::builder().config(&toml).start().await, dir)
}

/// `StreamExecute` of `text` for `model` through `stack`'s edge as `sub`,
/// opened (status OK) within [`WAIT`].
pub async fn open_stream(
    stack: &Stack,
    sub: &str,
    model: Option<&str>,
    text: &str,
) -> tonic::Streaming<StreamChunk> {
    let request = authed(execute_request(model, text), &stack.token(sub));
    answer(stack.client().await.stream_execute(request)).await
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

pub use crate::answers::{
    answer, assert_cost, assert_names, complete_of, error_of, failure, kinds, metrics_of, success,
    texts,
};
