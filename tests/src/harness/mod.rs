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
//! Most end-to-end tests (limits, metrics, quotas, tokens, TLS, hardening)
//! reuse it: [`StackBuilder::config`] takes any TOML (it is the one file
//! both processes read), [`Stack::admin_addr`] serves `/live`, `/ready` and
//! (with `[metrics]`) `/metrics`, [`Stack::edge`] is the running [`Edge`].
//!
//! [`StackBuilder`] starts a [`Stack`]; the helpers for calls through it
//! (bearer metadata, requests, reading a stream) are in `calls`, the
//! tokens the stacks accept in `tokens`.

mod builder;
mod calls;
mod tokens;

pub use builder::StackBuilder;
pub use calls::{authed, execute_request, next_chunk};
pub use tokens::{ISSUER, JWT_SECRET, claims, mint};

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use vibectl_config::Config;
use vibectl_edge::{
    Edge,
    app::Running,
    tls::{CertResolver, RotationStatus},
};
use vibectl_proto::vibectl_llm_proxy_client::VibectlLlmProxyClient;

pub use crate::http1::{http_get, http1_request};

pub use crate::WAIT;

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
    /// The edge's admin listener (`/live`, `/ready`, `/metrics`).
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

/// Logs to the test output (`RUST_LOG` picks the level; default warn).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
