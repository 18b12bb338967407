//! What the ACME tests share: the real core, the real edge in ACME mode
//! (`EdgeApp::build`, what `serve-acme` runs) on 127.0.0.1:0 towards a real
//! Pebble, clients that trust only Pebble's issuing root, `/ready`.

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use vibectl_config::Config;
use vibectl_edge::{
    app::{Binds, EdgeApp, Running},
    tls::{acme::AcmeStatus, inspect::fingerprint},
};
use vibectl_proto::{GetServerInfoRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient};
use vibectl_tests::{
    harness::{JWT_SECRET, WAIT, authed, claims, http_get, init_logs, mint},
    pebble::{Pebble, PebbleOptions},
};

pub(crate) const DOMAIN: &str = "edge.vibectl.test";
/// Bound on one issuance: Pebble with its defaults waits a random 0–15 s
/// before each validation.
pub(crate) const ISSUE_WAIT: Duration = Duration::from_secs(60);

/// The real core on 127.0.0.1:0.
pub(crate) struct Core {
    pub(crate) address: String,
    token: CancellationToken,
    task: Option<JoinHandle<Result<(), vibectl_core::CoreError>>>,
    listener: Option<vibectl_core::CoreListener>,
}

impl Core {
    pub(crate) async fn bind() -> Self {
        let listener = vibectl_core::CoreListener::bind("127.0.0.1:0")
            .await
            .expect("bind core");
        Self {
            address: listener.local_addr_string(),
            token: CancellationToken::new(),
            task: None,
            listener: Some(listener),
        }
    }

    pub(crate) fn serve(&mut self, config: &Config) {
        let listener = self.listener.take().expect("not started");
        self.task = Some(tokio::spawn(vibectl_core::serve(
            listener,
            Arc::new(config.clone()),
            self.token.clone(),
        )));
    }

    pub(crate) async fn stop(self) {
        self.token.cancel();
        if let Some(task) = self.task {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("core stopped in time")
                .expect("core task")
                .expect("core exited cleanly");
        }
    }
}

/// Listeners on 127.0.0.1:0: TLS, admin, and plain HTTP if asked.
pub(crate) async fn bind_listeners(http: bool) -> Binds {
    Binds::loopback(http).await.expect("bind")
}

/// Listeners on 127.0.0.1:0 (plain HTTP too when `http`) and a Pebble
/// that validates on them: `options` with the ports filled in.
pub(crate) async fn listeners_and_pebble(http: bool, options: PebbleOptions) -> (Binds, Pebble) {
    let listeners = bind_listeners(http).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: listeners.http.as_ref().map_or(0, port),
        tls_port: port(&listeners.main),
        ..options
    })
    .await;
    (listeners, pebble)
}

/// `[tls.acme]` lines for `challenge`, with `http_listen` when the
/// listeners have a plain HTTP one.
pub(crate) fn challenge_config(challenge: &str, listeners: &Binds) -> String {
    let http_listen = listeners
        .http
        .as_ref()
        .map(|l| format!("http_listen = \"{}\"\n", l.local_addr().expect("addr")))
        .unwrap_or_default();
    format!("challenge = \"{challenge}\"\n{http_listen}")
}

pub(crate) fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("addr").port()
}

/// The one configuration of core and edge: `[tls.acme]` towards `pebble`.
pub(crate) fn config(state: &Path, core: &str, pebble: &Pebble, acme_extra: &str) -> Config {
    config_with_directory(state, core, pebble, &pebble.directory_url(), acme_extra)
}

/// [`config`] with another directory URL (a proxy in front of Pebble).
pub(crate) fn config_with_directory(
    state: &Path,
    core: &str,
    pebble: &Pebble,
    url: &str,
    acme_extra: &str,
) -> Config {
    config_for_domains(state, core, pebble, url, &[DOMAIN], acme_extra)
}

/// [`config_with_directory`] for other certificate names.
pub(crate) fn config_for_domains(
    state: &Path,
    core: &str,
    pebble: &Pebble,
    url: &str,
    domains: &[&str],
    acme_extra: &str,
) -> Config {
    let text = format!(
        "[edge]\nstate_dir = \"{state}\"\ncore_address = \"{core}\"\n\
         [jwt]\nsecret_key = \"{JWT_SECRET}\"\n\
         [tls.acme]\nemail = \"ops@vibectl.test\"\ndomains = {domains:?}\n\
         directory_url = \"{url}\"\nca_file = \"{ca}\"\n{acme_extra}",
        state = state.display(),
        ca = pebble.api_ca_file().display(),
    );
    // Kept beside the state: the restart needs it after Pebble is gone.
    let ca = state.join("pebble-api-ca.crt");
    if !ca.exists() {
        std::fs::copy(pebble.api_ca_file(), &ca).expect("copy Pebble's API CA");
    }
    let text = text.replace(
        &pebble.api_ca_file().display().to_string(),
        &ca.display().to_string(),
    );
    let file = state.join("acme.toml");
    std::fs::write(&file, &text).expect("write the config");
    Config::from_toml(&text, &file).expect("valid config")
}

/// A running ACME-mode edge.
pub(crate) struct Edge {
    pub(crate) shutdown: CancellationToken,
    pub(crate) server: Running,
    pub(crate) tls: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) http: Option<SocketAddr>,
}

impl Edge {
    pub(crate) async fn start(listeners: Binds, config: Config) -> Self {
        init_logs();
        let shutdown = CancellationToken::new();
        let server = EdgeApp::new(config)
            .build(listeners, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("serve-acme did not start: {e}"));
        Self {
            shutdown,
            tls: server.main_addr(),
            admin: server.admin_addr(),
            http: server.http_addr(),
            server,
        }
    }

    pub(crate) fn status(&self) -> watch::Receiver<AcmeStatus> {
        self.server.acme_status().expect("ACME mode")
    }

    /// Waits (bounded) until `done` holds for the ACME status.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        pebble: &Pebble,
        done: impl FnMut(&AcmeStatus) -> bool,
    ) {
        let mut status = self.status();
        let waited = tokio::time::timeout(ISSUE_WAIT, status.wait_for(done)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "{what}: not within {ISSUE_WAIT:?}; status {:?}\nPebble log:\n{}",
            self.status().borrow(),
            pebble.log()
        );
    }

    /// Waits (bounded) until a certificate is issued.
    pub(crate) async fn wait_issued(&self, pebble: &Pebble) {
        self.wait_for("issued", pebble, |s| s.issued >= 1).await;
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.server.wait())
            .await
            .expect("edge stopped in time")
            .expect("edge exited cleanly");
    }
}

/// What `serve-acme` says when it refuses to start with `config`.
pub(crate) async fn refused_start(listeners: Binds, config: Config) -> String {
    let shutdown = CancellationToken::new();
    let result = EdgeApp::new(config)
        .build(listeners, shutdown.clone())
        .await;
    shutdown.cancel();
    match result {
        Ok(_) => panic!("started"),
        Err(error) => error.to_string(),
    }
}

/// The real core, then the ACME edge for `config_for_domains(…, url,
/// domains, acme_extra)`; the state directory lives as long as the guard.
pub(crate) async fn start_edge(
    listeners: Binds,
    pebble: &Pebble,
    url: &str,
    domains: &[&str],
    acme_extra: &str,
) -> (Edge, Core, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let mut core = Core::bind().await;
    let config = config_for_domains(
        state.path(),
        &core.address,
        pebble,
        url,
        domains,
        acme_extra,
    );
    core.serve(&config);
    (Edge::start(listeners, config).await, core, state)
}

/// A gRPC channel to the edge at 127.0.0.1 for [`DOMAIN`], trusting ONLY `root_pem`.
pub(crate) async fn channel(
    tls: SocketAddr,
    root_pem: &str,
) -> Result<Channel, tonic::transport::Error> {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name(DOMAIN);
    crate::tls_common::connect(tls, config).await
}

/// `GetServerInfo` on `channel`: the server name, or the error.
pub(crate) async fn server_info(channel: Channel) -> Result<String, String> {
    let token = mint(JWT_SECRET, &claims("acme-test", 3600));
    let mut client = VibectlLlmProxyClient::new(channel);
    let call = client.get_server_info(authed(GetServerInfoRequest {}, &token));
    match tokio::time::timeout(WAIT, call).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().server_name),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    }
}

/// SHA-256 of the leaf a TLS client (ALPN h2, SNI [`DOMAIN`], verifying
/// against `root_pem`) receives.
pub(crate) async fn served_leaf(tls: SocketAddr, root_pem: &str) -> String {
    try_served_leaf(tls, root_pem)
        .await
        .expect("handshake verified against Pebble's root")
}

/// A TLS client config that trusts only `root_pem` (Pebble's issuing root)
/// and offers the one ALPN protocol `alpn`.
pub(crate) fn pebble_client_config(root_pem: &str, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// [`served_leaf`], or the handshake's error.
pub(crate) async fn try_served_leaf(tls: SocketAddr, root_pem: &str) -> Result<String, String> {
    let config = pebble_client_config(root_pem, b"h2");
    let tcp = tokio::net::TcpStream::connect(tls)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(DOMAIN).expect("name"), tcp),
    )
    .await
    .expect("handshake in time")
    .map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    Ok(fingerprint(
        &session.peer_certificates().expect("certificates")[0],
    ))
}

/// `/ready` on the admin listener.
pub(crate) async fn ready(edge: &Edge) -> (u16, String) {
    http_get(edge.admin, "/ready").await
}

/// Polls `/ready` (every 20 ms) until it is 200, at most `bound`: it follows
/// the ACME status a moment later.
pub(crate) async fn wait_ready(edge: &Edge, bound: Duration) {
    poll_ready(edge, bound, "be ready", |status, _| status == 200).await;
}

/// Polls `/ready` (every 20 ms) until its body contains `text`, at most
/// `bound`: `/ready` follows the ACME status a moment later. Returns the
/// last status code and body.
pub(crate) async fn ready_saying(edge: &Edge, text: &str, bound: Duration) -> (u16, String) {
    poll_ready(edge, bound, &format!("say {text:?}"), |_, body| {
        body.contains(text)
    })
    .await
}

/// Polls `/ready` until `done(status, body)`, failing after `bound` with
/// what it waited for and the last body.
async fn poll_ready(
    edge: &Edge,
    bound: Duration,
    what: &str,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let (status, body) = ready(edge).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready did not {what} within {bound:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("cached_cert_"))
            && files
                .iter()
                .any(|f| f.to_string_lossy().contains("cached_account_")),
        "{files:?}"
    );
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
