//! Helpers of the `tls_*` tests: a private CA made by the edge's own `ca`
//! code, a stack serving its server certificate, real TLS clients (rustls,
//! tonic, `openssl s_client`) and what they saw. Every wait is bounded by
//! [`WAIT`].

use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion, crypto::ring, version};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vibectl_edge::tls::{HandshakeFailure, ca, inspect};
use vibectl_proto::{
    GetServerInfoRequest, GetServerInfoResponse, vibectl_llm_proxy_client::VibectlLlmProxyClient,
};
use vibectl_tests::harness::{Stack, WAIT, authed};

/// A private CA (root → intermediate) with a server certificate for
/// `localhost` and `127.0.0.1`, made with the edge's `ca` module.
pub fn private_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    ca::init(dir.path(), ca::Validity::default(), false).expect("ca init");
    ca::create_server_cert(dir.path(), &hosts(), 30, false).expect("server cert");
    dir
}

/// The names of every test server certificate.
pub fn hosts() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

/// The CA bundle of a CA directory.
pub fn bundle(dir: &Path) -> PathBuf {
    dir.join(ca::files::BUNDLE)
}

/// A stack (in-process core and edge, auth on) serving `dir`'s server
/// certificate through `[tls.private_ca]` (what `serve-ca --ca-dir` sets),
/// with `extra` TOML under `[tls]`; clients trust `dir`'s bundle.
pub async fn private_ca_stack(dir: &Path, tls_extra: &str) -> Stack {
    let toml = format!(
        "[tls]\n{tls_extra}\n[tls.private_ca]\ndir = \"{}\"\n",
        dir.display()
    );
    Stack::builder()
        .config(&toml)
        .trust(&bundle(dir))
        .start()
        .await
}

/// Roots from a PEM file.
pub fn roots(pem_file: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pem_file).expect("bundle") {
        roots.add(ca.expect("ca")).expect("add");
    }
    roots
}

/// A rustls client config trusting `pem_file`, offering `versions` and h2.
pub fn client_config(
    pem_file: &Path,
    versions: &[&'static SupportedProtocolVersion],
) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots(pem_file))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A TLS handshake with `addr` for `localhost`.
pub async fn handshake(
    addr: SocketAddr,
    config: ClientConfig,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
}

/// The SHA-256 fingerprint of the leaf a new handshake presents.
pub async fn served_fingerprint(addr: SocketAddr, trust: &Path) -> String {
    let stream = handshake(addr, client_config(trust, &[&version::TLS13]))
        .await
        .expect("handshake");
    let leaf = stream.get_ref().1.peer_certificates().expect("certs")[0].clone();
    inspect::fingerprint(&leaf)
}

/// A tonic channel to `addr` trusting `bundle`, presenting `identity`
/// (certificate chain and key files) when given.
pub async fn channel(
    addr: SocketAddr,
    bundle: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read_to_string(bundle).expect("bundle");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        let cert = std::fs::read_to_string(cert).expect("client cert");
        let key = std::fs::read_to_string(key).expect("client key");
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    connect(addr, tls).await
}

/// A tonic channel to `addr` with `tls`, connected (or refused) within
/// [`WAIT`].
pub async fn connect(
    addr: SocketAddr,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS")
        .connect_timeout(WAIT);
    tokio::time::timeout(WAIT, endpoint.connect())
        .await
        .expect("connected (or refused) in time")
}

/// `GetServerInfo` on `channel`, with `token` when given.
pub async fn server_info(
    channel: Channel,
    token: Option<&str>,
) -> Result<GetServerInfoResponse, tonic::Status> {
    let mut client = VibectlLlmProxyClient::new(channel);
    let request = match token {
        Some(token) => authed(GetServerInfoRequest {}, token),
        None => tonic::Request::new(GetServerInfoRequest {}),
    };
    tokio::time::timeout(WAIT, client.get_server_info(request))
        .await
        .expect("answered in time")
        .map(tonic::Response::into_inner)
}

/// What `openssl s_client` did: whether it exited 0, and all its output.
#[derive(Debug)]
pub struct SClient {
    /// Exit status 0.
    pub ok: bool,
    /// stdout and stderr.
    pub output: String,
}

impl SClient {
    /// The protocol the handshake negotiated (`TLSv1.3`, …), if one
    /// completed: from s_client's `New, TLSv1.3, Cipher is …` line
    /// (`New, (NONE), Cipher is (NONE)` when it failed).
    pub fn protocol(&self) -> Option<&str> {
        self.output.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("New, ")?;
            let (protocol, cipher) = rest.split_once(", Cipher is ")?;
            (protocol != "(NONE)" && cipher != "(NONE)").then_some(protocol)
        })
    }

    /// True when a handshake completed (a protocol and cipher were agreed).
    pub fn handshake_done(&self) -> bool {
        self.protocol().is_some()
    }
}

/// Runs `openssl s_client -connect addr … args`, stdin closed, bounded.
pub async fn s_client(addr: SocketAddr, args: &[&str]) -> SClient {
    let mut command = tokio::process::Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("openssl s_client finished in time")
        .expect("openssl runs (install the openssl package)");
    SClient {
        ok: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Waits (bounded) until the edge counted `n` failed handshakes of
/// `reason`: the server's side of a refusal the client may only see as a
/// reset (the count lands just after the alert is sent).
pub async fn counted(stack: &Stack, reason: HandshakeFailure, n: u64) {
    let stats = stack.edge.handshake_stats().clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.get(reason) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{reason} never counted: {:?}",
            stats.snapshot()
        );
        tokio::task::yield_now().await;
    }
}
