//! The end-to-end harness: the real core (`vibectl_core::serve`) and the
//! real edge, assembled by its one composition root
//! (`vibectl_edge::app::EdgeApp::build`, what every `serve*` command runs)
//! in-process, every listener bound on 127.0.0.1:0 *before* anything starts
//! (no port races), real TLS with certificates the edge's own self-signed
//! code makes at test time in a temporary directory, a known JWT secret, and tonic
//! clients that verify the CA chain for `localhost`. Every wait is bounded
//! by [`WAIT`]; [`Stack::shutdown`] stops each part and asserts that every
//! task exited cleanly.
//!
//! ```ignore
//! let stack = Stack::builder().config(EXTRA_TOML).start().await; // ready (/ready is 200)
//! let mut client = stack.client().await;                          // TLS, CA-verified
//! let reply = client.get_server_info(authed(GetServerInfoRequest {}, &stack.token("alice"))).await?;
//! stack.shutdown().await;                                         // every task exited Ok
//! ```
//!
//! Later tests (rate limits, metrics, ACME) reuse it: [`StackBuilder::config`]
//! takes any TOML (it is the one file both processes read), [`Stack::admin_addr`]
//! is where `/metrics` will be, [`Stack::edge`] is the running [`Edge`].

use serde_json::{Value, json};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use vibectl_config::{Config, Secret, SelfSignedTls};
use vibectl_edge::{
    Edge,
    app::{Binds, EdgeApp, Running},
    auth::SecretEnv,
    tls::{CertResolver, RotationStatus},
};
use vibectl_proto::{ExecuteRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient};

pub use crate::http1::{http_get, http1_request};

pub use crate::WAIT;

/// The next chunk of `stream` within [`WAIT`]; panics on a timeout, the
/// end of the stream or a status.
pub async fn next_chunk(
    stream: &mut tonic::Streaming<vibectl_proto::StreamChunk>,
) -> vibectl_proto::StreamChunk {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
        .expect("stream not ended")
        .expect("chunk, not a status")
}
/// The HS256 secret of every stack.
pub const JWT_SECRET: &str = "e2e-test-secret-5c1f0b7e9a3d4c2b8e6f0a1b";
/// The issuer the stacks check (the default, `vibectl-server`).
pub const ISSUER: &str = "vibectl-server";

/// Builds a [`Stack`].
#[derive(Debug, Default)]
pub struct StackBuilder {
    toml: String,
    insecure: bool,
    core_listen: Option<String>,
    external_core: Option<String>,
    trust: Option<PathBuf>,
    watch_config: bool,
}

impl StackBuilder {
    /// Extra configuration (TOML) read by both the core and the edge. The
    /// harness then sets the core address, state dir, certificate dir and
    /// JWT secret itself.
    pub fn config(mut self, toml: &str) -> Self {
        self.toml = toml.to_owned();
        self
    }

    /// Serve plaintext h2c (`serve-insecure`) instead of TLS.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Where the in-process core listens (default `127.0.0.1:0`; a
    /// `unix:/path` socket works too).
    pub fn core_listen(mut self, listen: &str) -> Self {
        self.core_listen = Some(listen.to_owned());
        self
    }

    /// The CA bundle clients trust when the config names `[tls.files]`
    /// (self-signed stacks trust their own `ca-bundle.crt`).
    pub fn trust(mut self, ca_bundle: &std::path::Path) -> Self {
        self.trust = Some(ca_bundle.to_owned());
        self
    }

    /// Write the configuration to [`Stack::config_path`] and let the edge
    /// watch it (hot reload of `[limits]`, as `serve --config FILE` does).
    pub fn watch_config(mut self) -> Self {
        self.watch_config = true;
        self
    }

    /// Start no core; point the edge at `address` (another server, or a
    /// dead port).
    pub fn external_core(mut self, address: &str) -> Self {
        self.external_core = Some(address.to_owned());
        self
    }

    /// Starts the core (unless external), then the edge and its admin
    /// listener, and waits until `/ready` is 200 (unless the core is external).
    pub async fn start(self) -> Stack {
        init_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("harness.toml");
        std::fs::write(&config_path, &self.toml).expect("write harness.toml");
        let mut config = Config::from_toml(&self.toml, &config_path)
            .unwrap_or_else(|e| panic!("harness config: {e}"));
        config.edge.state_dir = Some(dir.path().to_owned());
        config.jwt.secret_key = Some(Secret::new(JWT_SECRET));
        if config.tls.files.is_none() {
            config.tls.self_signed = Some(SelfSignedTls {
                dir: Some(dir.path().join("certs")),
                ..SelfSignedTls::default()
            });
        }
        let core_listener = match &self.external_core {
            Some(address) => {
                config.edge.core_address = address.clone();
                None
            }
            None => {
                let listen = self.core_listen.as_deref().unwrap_or("127.0.0.1:0");
                let listener = vibectl_core::CoreListener::bind(listen)
                    .await
                    .expect("bind core");
                config.edge.core_address = listener.local_addr_string();
                Some(listener)
            }
        };
        let config = Arc::new(config);
        let core = core_listener.map(|listener| {
            let token = CancellationToken::new();
            let handle = tokio::spawn(vibectl_core::serve(listener, config.clone(), token.clone()));
            Task { token, handle }
        });
        let binds = Binds::loopback(false).await.expect("bind edge");
        // The secret is the configuration's (`jwt.secret_key`), whatever
        // the environment of the test process says.
        let mut app = EdgeApp::new(Config::clone(&config))
            .secret_env(SecretEnv::default())
            .watch_config(self.watch_config);
        if self.insecure {
            app = app.plaintext();
        }
        let edge_token = CancellationToken::new();
        let running = app
            .build(binds, edge_token.clone())
            .await
            .unwrap_or_else(|e| panic!("the edge did not start: {e}"));
        let ca_bundle = match (running.self_signed(), self.trust, self.insecure) {
            (_, _, true) => None,
            (Some(made), _, false) => Some(made.ca_bundle_path.clone()),
            (None, Some(trust), false) => Some(trust),
            (None, None, false) => {
                panic!("[tls.files] stacks need StackBuilder::trust(ca_bundle)")
            }
        };
        let stack = Stack {
            core_address: config.edge.core_address.clone(),
            config,
            edge: running.edge().clone(),
            edge_addr: running.main_addr(),
            admin_addr: running.admin_addr(),
            ca_bundle,
            cert_resolver: running.resolver().cloned(),
            edge_token,
            core,
            running: Some(running),
            config_path,
            dir,
        };
        if self.external_core.is_none() {
            stack.wait_ready().await;
        }
        stack
    }
}

/// A running core + edge. Drop it to abandon the tasks, or call
/// [`Stack::shutdown`] to stop them and check they exited.
pub struct Stack {
    /// The temporary directory: certificates, JWT secret, anything else.
    pub dir: tempfile::TempDir,
    /// The configuration both processes run with.
    pub config: Arc<Config>,
    /// The running edge.
    pub edge: Edge,
    /// The edge's TLS (or h2c) listener.
    pub edge_addr: SocketAddr,
    /// The edge's admin listener (`/live`, `/ready`).
    pub admin_addr: SocketAddr,
    /// Where the edge sends requests: `127.0.0.1:PORT` or `unix:/path`.
    pub core_address: String,
    /// The CA bundle clients trust (TLS stacks only).
    pub ca_bundle: Option<PathBuf>,
    /// The edge's certificate resolver (TLS stacks only): swap certificates
    /// while it runs.
    pub cert_resolver: Option<Arc<CertResolver>>,
    /// The configuration file (the builder's TOML), watched by the edge
    /// with [`StackBuilder::watch_config`].
    pub config_path: PathBuf,
    edge_token: CancellationToken,
    core: Option<Task<vibectl_core::CoreError>>,
    running: Option<Running>,
}

impl Stack {
    /// A builder (TLS, in-process core, default config).
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// The default stack: TLS, in-process core, echo model.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A gRPC channel to the edge: TLS verifying the CA bundle for
    /// `localhost`, or h2c for an insecure stack.
    pub async fn channel(&self) -> Channel {
        let ca = self
            .ca_bundle
            .as_ref()
            .map(|bundle| std::fs::read_to_string(bundle).expect("CA bundle"));
        self.try_channel(ca.as_deref())
            .await
            .expect("connected to the edge")
    }

    /// A channel to the edge trusting `ca_pem` (TLS, name `localhost`), or
    /// h2c with `None`; the connection error if there is one.
    pub async fn try_channel(
        &self,
        ca_pem: Option<&str>,
    ) -> Result<Channel, tonic::transport::Error> {
        let endpoint = match ca_pem {
            Some(ca) => {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("localhost");
                Endpoint::from_shared(format!("https://{}", self.edge_addr))
                    .expect("endpoint")
                    .tls_config(tls)
                    .expect("client TLS")
            }
            None => Endpoint::from_shared(format!("http://{}", self.edge_addr)).expect("endpoint"),
        };
        tokio::time::timeout(WAIT, endpoint.connect_timeout(WAIT).connect())
            .await
            .expect("connected (or refused) in time")
    }

    /// A client of the proxy service on a new channel.
    pub async fn client(&self) -> VibectlLlmProxyClient<Channel> {
        VibectlLlmProxyClient::new(self.channel().await)
    }

    /// A valid token (one hour) for `sub`, signed with [`JWT_SECRET`].
    pub fn token(&self, sub: &str) -> String {
        mint(JWT_SECRET, &claims(sub, 3600))
    }

    /// Stops the core and waits (bounded) until its task exited cleanly.
    pub async fn stop_core(&mut self) {
        if let Some(core) = self.core.take() {
            core.stop("core").await;
        }
    }

    /// Tells the edge to shut down (stop accepting, GOAWAY, drain) without
    /// waiting; [`Stack::stop_edge`] waits.
    pub fn begin_edge_shutdown(&self) {
        self.edge_token.cancel();
    }

    /// Shuts the edge down and waits (bounded) until its listener, admin
    /// and every connection task exited cleanly.
    pub async fn stop_edge(&mut self) {
        if let Some(running) = self.running.take() {
            self.edge_token.cancel();
            tokio::time::timeout(WAIT, running.wait())
                .await
                .unwrap_or_else(|_| panic!("edge did not exit within {WAIT:?}"))
                .unwrap_or_else(|e| panic!("edge exited with an error: {e:?}"));
        }
    }

    /// What the edge's certificate rotation did (files and private-CA
    /// stacks, whose certificate files the edge watches).
    pub fn rotation(&self) -> Option<watch::Receiver<RotationStatus>> {
        self.running.as_ref().and_then(Running::rotation_status)
    }

    /// Stops the edge, then the core, asserting each exited cleanly.
    pub async fn shutdown(mut self) {
        self.stop_edge().await;
        self.stop_core().await;
    }

    /// `GET http://<admin>/<path>`: status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin_addr, path).await
    }

    /// Polls `/ready` until it is 200 (every 20 ms, at most [`WAIT`]).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.admin_get("/ready").await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never ready: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A spawned server task and the token that stops it.
struct Task<E> {
    token: CancellationToken,
    handle: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug + Send + 'static> Task<E> {
    async fn stop(self, what: &str) {
        self.token.cancel();
        let result = tokio::time::timeout(WAIT, self.handle)
            .await
            .unwrap_or_else(|_| panic!("{what} did not exit within {WAIT:?}"));
        let result = result.unwrap_or_else(|e| panic!("{what} task panicked: {e}"));
        result.unwrap_or_else(|e| panic!("{what} exited with an error: {e:?}"));
    }
}

/// A `tonic::Request` carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("metadata value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// An `ExecuteRequest` for `model` (None: the default) with one user fragment.
pub fn execute_request(model: Option<&str>, text: &str) -> ExecuteRequest {
    ExecuteRequest {
        system_fragments: vec!["You are terse.".to_owned()],
        user_fragments: vec![text.to_owned()],
        model_name: model.map(str::to_owned),
        response_model_schema: None,
        request_id: String::new(),
    }
}

/// Claims as vibectl-server makes them: `sub`, `iss`, `iat`, `exp` (now +
/// `expires_in_secs`, negative for an expired token) and a unique `jti`.
pub fn claims(sub: &str, expires_in_secs: i64) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).expect("i64");
    let jti = format!("jti-{now}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    json!({"sub": sub, "iss": ISSUER, "iat": now, "exp": now + expires_in_secs, "jti": jti})
}

/// Signs `claims` with HS256 and `secret` (independently of the edge's own
/// minting code).
pub fn mint(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Logs to the test output (`RUST_LOG` picks the level; default warn).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
