//! ACME against a real ACME server (Pebble, on 127.0.0.1): the real edge
//! in ACME mode (`EdgeApp::build`, what `serve-acme` runs) in front of the real
//! core. Certificates issued through TLS-ALPN-01 and HTTP-01 verify against
//! Pebble's issuing root only; `/ready` is 503 until then; a short-lived
//! certificate is renewed and swapped in while clients keep calling; a
//! restart with the CA gone serves the cached certificate at once; the
//! plain HTTP listener answers challenges and redirects everything else.

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
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

const DOMAIN: &str = "edge.vibectl.test";
/// Issuance takes 1–3 s with Pebble (rustls-acme polls the authorization
/// after 1 s; a `badNonce` — Pebble refuses 5 % of nonces — costs a fresh
/// order, about 1.5 s).
const ISSUE_WAIT: Duration = Duration::from_secs(30);

/// The real core on 127.0.0.1:0.
struct Core {
    address: String,
    token: CancellationToken,
    task: Option<JoinHandle<Result<(), vibectl_core::CoreError>>>,
    listener: Option<vibectl_core::CoreListener>,
}

impl Core {
    async fn bind() -> Self {
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

    fn serve(&mut self, config: &Config) {
        let listener = self.listener.take().expect("not started");
        self.task = Some(tokio::spawn(vibectl_core::serve(
            listener,
            Arc::new(config.clone()),
            self.token.clone(),
        )));
    }

    async fn stop(self) {
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
async fn bind_listeners(http: bool) -> Binds {
    Binds::loopback(http).await.expect("bind")
}

fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("addr").port()
}

/// The one configuration of core and edge: `[tls.acme]` towards `pebble`.
fn config(state: &Path, core: &str, pebble: &Pebble, acme_extra: &str) -> Config {
    let text = format!(
        "[edge]\nstate_dir = \"{state}\"\ncore_address = \"{core}\"\n\
         [jwt]\nsecret_key = \"{JWT_SECRET}\"\n\
         [tls.acme]\nemail = \"ops@vibectl.test\"\ndomains = [\"{DOMAIN}\"]\n\
         directory_url = \"{url}\"\nca_file = \"{ca}\"\n{acme_extra}",
        state = state.display(),
        url = pebble.directory_url(),
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
struct Edge {
    shutdown: CancellationToken,
    server: Running,
    tls: SocketAddr,
    admin: SocketAddr,
    http: Option<SocketAddr>,
}

impl Edge {
    async fn start(listeners: Binds, config: Config) -> Self {
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

    fn status(&self) -> watch::Receiver<AcmeStatus> {
        self.server.acme_status().expect("ACME mode")
    }

    /// Waits (bounded) until `done` holds for the ACME status.
    async fn wait_for(&self, what: &str, pebble: &Pebble, done: impl FnMut(&AcmeStatus) -> bool) {
        let mut status = self.status();
        let waited = tokio::time::timeout(ISSUE_WAIT, status.wait_for(done)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "{what}: not within {ISSUE_WAIT:?}; status {:?}\nPebble log:\n{}",
            self.status().borrow(),
            pebble.log()
        );
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.server.wait())
            .await
            .expect("edge stopped in time")
            .expect("edge exited cleanly");
    }
}

/// A gRPC channel to the edge at 127.0.0.1 for [`DOMAIN`], trusting ONLY `root_pem`.
async fn channel(tls: SocketAddr, root_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name(DOMAIN);
    let endpoint = Endpoint::from_shared(format!("https://{tls}"))
        .expect("endpoint")
        .tls_config(config)
        .expect("client TLS")
        .connect_timeout(WAIT);
    tokio::time::timeout(WAIT, endpoint.connect())
        .await
        .expect("connected (or refused) in time")
}

/// `GetServerInfo` on `channel`: the server name, or the error.
async fn server_info(channel: Channel) -> Result<String, String> {
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
async fn served_leaf(tls: SocketAddr, root_pem: &str) -> String {
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
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(tls).await.expect("connect");
    let stream = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(DOMAIN).expect("name"), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake verified against Pebble's root");
    let (_, session) = stream.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    fingerprint(&session.peer_certificates().expect("certificates")[0])
}

/// `/ready` on the admin listener.
async fn ready(edge: &Edge) -> (u16, String) {
    http_get(edge.admin, "/ready").await
}

/// Polls `/ready` (every 20 ms) until it is 200, at most `bound`: it follows
/// the ACME status a moment later.
async fn wait_ready(edge: &Edge, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let (status, body) = ready(edge).await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready within {bound:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP/1.1 request with a chosen `Host`: status, headers, body.
async fn plain_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (u16, http::HeaderMap, String) {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("answered in time")
}

fn assert_private(dir: &Path) {
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

/// Issues through `challenge`, checks `/ready` before and after and a
/// gRPC call trusting only Pebble's root; returns what the plain HTTP
/// checks need.
async fn issue(challenge: &str) -> (Edge, Pebble, Core, tempfile::TempDir) {
    let http = challenge == "http-01";
    let listeners = bind_listeners(http).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: listeners.http.as_ref().map_or(0, port),
        tls_port: port(&listeners.main),
        validity: None,
    })
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut core = Core::bind().await;
    let http_listen = listeners
        .http
        .as_ref()
        .map(|l| format!("http_listen = \"{}\"\n", l.local_addr().expect("addr")))
        .unwrap_or_default();
    let config = config(
        state.path(),
        &core.address,
        &pebble,
        &format!("challenge = \"{challenge}\"\n{http_listen}"),
    );
    core.serve(&config);
    let edge = Edge::start(listeners, config).await;

    // Nothing issued yet: the self-signed fallback, and not ready.
    let (status, body) = ready(&edge).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("waiting for ACME certificate for edge.vibectl.test"),
        "{body}"
    );
    assert!(
        edge.server.resolver().expect("TLS").served().is_some(),
        "the fallback is served"
    );

    edge.wait_for("issued", &pebble, |s| s.issued >= 1).await;
    assert_private(edge.server.acme_cache_dir().expect("ACME mode"));
    wait_ready(&edge, Duration::from_secs(1)).await;

    // A client that trusts ONLY Pebble's issuing root, SNI = the domain.
    let root = pebble.issuing_root().await;
    let leaf = served_leaf(edge.tls, &root).await;
    let served = edge.status().borrow().served.clone().expect("served");
    assert_eq!(leaf, served.sha256);
    assert_eq!(
        edge.server.resolver().expect("TLS").served(),
        Some(served),
        "served() reports ACME"
    );
    let name = server_info(channel(edge.tls, &root).await.expect("TLS to the edge"))
        .await
        .expect("GetServerInfo");
    assert!(!name.is_empty());
    (edge, pebble, core, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_a_certificate_clients_verify_with_pebbles_root() {
    let (edge, pebble, core, _state) = issue("tls-alpn-01").await;
    // Validation is over: a hello offering only acme-tls/1 is refused.
    let root = pebble.issuing_root().await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(edge.tls)
        .await
        .expect("connect");
    let handshake = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(DOMAIN).expect("name"), tcp),
    )
    .await
    .expect("in time");
    assert!(
        handshake.is_err(),
        "no challenge pending: no acme-tls/1 handshake"
    );
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_and_the_plain_listener_answers_challenges_and_redirects() {
    let (edge, _pebble, core, _state) = issue("http-01").await;
    let http = edge.http.expect("plain HTTP listener");
    let tls_port = edge.tls.port();

    let (status, headers, body) = plain_http(
        http,
        "GET",
        "/.well-known/acme-challenge/no-such-token",
        &format!("{DOMAIN}:{}", http.port()),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        headers.get("location").is_none(),
        "the challenge path is never redirected"
    );

    for (method, path) in [
        (
            "GET",
            "/vibectl.llm_proxy.VibectlLLMProxy/GetServerInfo?x=1&y=2",
        ),
        ("POST", "/"),
    ] {
        let (status, headers, body) =
            plain_http(http, method, path, &format!("{DOMAIN}:{}", http.port())).await;
        assert_eq!(status, 308, "{method} {path}: {body}");
        assert_eq!(
            headers["location"],
            format!("https://{DOMAIN}:{tls_port}{path}").as_str()
        );
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_validation_keeps_the_fallback_and_ready_names_the_error() {
    let listeners = bind_listeners(false).await;
    // Pebble validates TLS-ALPN-01 on a port where nothing listens.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_port = port(&dead);
    drop(dead);
    let pebble = Pebble::start(PebbleOptions {
        http_port: 0,
        tls_port: dead_port,
        validity: None,
    })
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut core = Core::bind().await;
    let config = config(state.path(), &core.address, &pebble, "");
    core.serve(&config);
    let edge = Edge::start(listeners, config).await;
    edge.wait_for("a failed order", &pebble, |s| s.failed_orders >= 1)
        .await;
    // `/ready` follows the status a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (status, body) = ready(&edge).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("waiting for ACME certificate"), "{body}");
        if body.contains("last error: order failed") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!edge.status().borrow().serving());
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_swaps_while_clients_call_then_a_restart_serves_the_cache_without_the_ca() {
    let started = Instant::now();
    let listeners = bind_listeners(false).await;
    let validity = Duration::from_secs(45);
    let pebble = Pebble::start(PebbleOptions {
        http_port: 0,
        tls_port: port(&listeners.main),
        validity: Some(validity),
    })
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut core = Core::bind().await;
    let config = config(state.path(), &core.address, &pebble, "");
    core.serve(&config);
    let edge = Edge::start(listeners, config.clone()).await;
    edge.wait_for("issued", &pebble, |s| s.issued >= 1).await;
    let root = pebble.issuing_root().await;
    let first = served_leaf(edge.tls, &root).await;
    let issued_at = Instant::now();

    // Renewal at 2/3 of the lifetime, while one connection keeps calling
    // and new connections keep coming: not one call may fail.
    let existing = channel(edge.tls, &root).await.expect("TLS to the edge");
    let mut status = edge.status();
    let renewed = status.wait_for(|s| s.issued >= 2);
    tokio::pin!(renewed);
    let deadline = tokio::time::Instant::now() + validity + ISSUE_WAIT;
    let mut calls = 0;
    loop {
        tokio::select! {
            result = &mut renewed => { result.expect("status"); break; }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no renewal; status {:?}\nPebble log:\n{}",
                    edge.status().borrow(),
                    pebble.log()
                );
                server_info(existing.clone()).await.unwrap_or_else(|e| panic!("existing connection, call {calls}: {e}"));
                let fresh = channel(edge.tls, &root).await.unwrap_or_else(|e| panic!("new connection, call {calls}: {e:?}"));
                server_info(fresh).await.unwrap_or_else(|e| panic!("new connection, call {calls}: {e}"));
                calls += 2;
            }
        }
    }
    let renewed_after = issued_at.elapsed();
    let second = served_leaf(edge.tls, &root).await;
    assert_ne!(
        first, second,
        "the renewed certificate is served to new connections"
    );
    server_info(existing.clone())
        .await
        .expect("the existing connection still works");
    server_info(channel(edge.tls, &root).await.expect("TLS"))
        .await
        .expect("new connection");
    assert!(calls > 20, "{calls} calls");
    eprintln!(
        "renewed {renewed_after:?} after issuance ({validity:?} certificates); {calls} calls, 0 failed; {} failed orders (badNonce)",
        edge.status().borrow().failed_orders
    );
    drop(existing);
    edge.stop().await;

    // Restart with the same cache and directory URL while the CA is gone:
    // the cached certificate, at once, without asking the CA (a directory
    // check would fail and stop the start).
    drop(pebble);
    let restarted_at = Instant::now();
    let edge = Edge::start(bind_listeners(false).await, config).await;
    wait_ready(&edge, Duration::from_secs(2)).await;
    eprintln!("ready {:?} after the restart", restarted_at.elapsed());
    let status = edge.status().borrow().clone();
    assert_eq!(
        (status.deployed, status.issued, status.orders),
        (1, 0, 0),
        "{status:?}"
    );
    assert_eq!(served_leaf(edge.tls, &root).await, second);
    server_info(channel(edge.tls, &root).await.expect("TLS"))
        .await
        .expect("GetServerInfo on the cached certificate");
    edge.stop().await;
    core.stop().await;
    eprintln!("renewal + restart took {:?}", started.elapsed());
}
