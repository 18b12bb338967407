//! A real ACME server for tests: Debian's `pebble` with `pebble-challtestsrv`
//! as its DNS (every name resolves to 127.0.0.1), every listener on
//! 127.0.0.1, Pebble's HTTPS certificate made with rcgen in a temporary
//! directory. Pebble validates HTTP-01 on the `http_port` and TLS-ALPN-01
//! on the `tls_port` it is given: the edge's listeners, bound by the test
//! first. By default Pebble runs with its own defaults: a random 0–15 s
//! wait before each validation and 5 % of nonces refused (`badNonce`), as
//! a real CA may; `nosleep` skips the waits (`PEBBLE_VA_NOSLEEP=1`) for
//! tests of other behaviour. [`Pebble::orders_added`] counts the orders
//! from Pebble's own log. Both processes are killed when the [`Pebble`] is
//! dropped.
//!
//! ```ignore
//! let pebble = Pebble::start(PebbleOptions { http_port, tls_port, validity: None }).await;
//! // serve-acme --directory-url {pebble.directory_url()} --acme-ca-file {pebble.api_ca_file()}
//! let root = pebble.issuing_root().await; // trust this to verify issued certificates
//! ```

use crate::harness::WAIT;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

/// What Pebble is told.
#[derive(Debug, Clone, Copy, Default)]
pub struct PebbleOptions {
    /// Where Pebble connects for HTTP-01 (the edge's plain HTTP port).
    pub http_port: u16,
    /// Where Pebble connects for TLS-ALPN-01 (the edge's TLS port).
    pub tls_port: u16,
    /// Lifetime of issued certificates (`certificateValidityPeriod`);
    /// `None`: Pebble's default (about 5 years).
    pub validity: Option<Duration>,
    /// Skip the random 0–15 s wait before each validation
    /// (`PEBBLE_VA_NOSLEEP=1`); `false` keeps Pebble's default.
    pub nosleep: bool,
    /// Percentage of nonces refused (`PEBBLE_WFE_NONCEREJECT`); `None`:
    /// Pebble's default, 5 %.
    pub nonce_reject: Option<u8>,
    /// Resolve names through this DNS server (`-dnsserver`) instead of
    /// `pebble-challtestsrv` (which resolves every name to 127.0.0.1).
    pub dns_server: Option<std::net::SocketAddr>,
    /// Names Pebble refuses to order (`domainBlocklist`: new-order answers
    /// `rejectedIdentifier`).
    pub domain_blocklist: &'static [&'static str],
}

/// A running Pebble and its DNS.
pub struct Pebble {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    api_port: u16,
    management_port: u16,
    api_ca_pem: String,
}

impl Pebble {
    /// Starts `pebble-challtestsrv` and `pebble` and waits (bounded by
    /// [`WAIT`]) until Pebble's API and management ports accept.
    pub async fn start(options: PebbleOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_ca_pem = write_api_certificate(dir.path());
        let [api_port, management_port, dns_port, dns_management_port] = free_ports();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{api_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("api.crt"),
            "privateKey": dir.path().join("api.key"),
            "httpPort": options.http_port,
            "tlsPort": options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if !options.domain_blocklist.is_empty() {
            pebble["domainBlocklist"] = options.domain_blocklist.into();
        }
        if let Some(validity) = options.validity {
            pebble["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config = dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string())
            .expect("write pebble.json");
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management_port}")])
            .stdout(log_file(dir.path(), "challtestsrv.log"))
            .stderr(log_file(dir.path(), "challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian package `pebble`; scripts/test installs it)");
        let mut children = vec![dns];
        let dns_server = options
            .dns_server
            .map_or_else(|| format!("127.0.0.1:{dns_port}"), |a| a.to_string());
        let mut server = Command::new("pebble");
        server
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &dns_server]);
        if options.nosleep {
            server.env("PEBBLE_VA_NOSLEEP", "1");
        }
        if let Some(percent) = options.nonce_reject {
            server.env("PEBBLE_WFE_NONCEREJECT", percent.to_string());
        }
        let server = server
            .stdout(log_file(dir.path(), "pebble.log"))
            .stderr(log_file(dir.path(), "pebble.err"))
            .spawn();
        match server {
            Ok(child) => children.push(child),
            Err(error) => panic!("pebble (Debian package `pebble`): {error}"),
        }
        let pebble = Self {
            dir,
            children,
            api_port,
            management_port,
            api_ca_pem,
        };
        for port in [api_port, management_port, dns_management_port] {
            pebble.wait_port(port).await;
        }
        pebble
    }

    /// `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.api_port)
    }

    /// Pebble's ACME API address.
    pub fn api_address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// Pebble's own HTTPS certificate and key (for a proxy in front of it).
    pub fn api_certificate_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("api.crt"),
            self.dir.path().join("api.key"),
        )
    }

    /// An HTTPS client trusting Pebble's API certificate.
    pub fn api_client(
        &self,
    ) -> hyper_util::client::legacy::Client<PebbleConnector, http_body_util::Full<bytes::Bytes>>
    {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_config(&self.api_ca_pem))
            .https_only()
            .enable_http1()
            .build();
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector)
    }

    /// The CA of Pebble's own HTTPS certificate (`--acme-ca-file`).
    pub fn api_ca_file(&self) -> PathBuf {
        self.dir.path().join("api-ca.crt")
    }

    /// The root that issues Pebble's certificates (new at every start), as
    /// PEM, from the management port.
    pub async fn issuing_root(&self) -> String {
        let pem = https_get(&self.api_ca_pem, self.management_port, "/roots/0").await;
        assert!(pem.contains("BEGIN CERTIFICATE"), "not a root: {pem}");
        pem
    }

    /// Orders Pebble created, from its own log ("Added order … to the db").
    pub fn orders_added(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// Pebble's log (for failure messages).
    pub fn log(&self) -> String {
        ["pebble.log", "pebble.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_port(&self, port: u16) {
        // Many Pebbles starting at once on a busy machine take a while.
        let deadline = tokio::time::Instant::now() + 3 * WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Pebble port {port} never opened; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Four ports that were free a moment ago (Pebble binds them itself).
fn free_ports() -> [u16; 4] {
    let listeners: Vec<_> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();
    [port(0), port(1), port(2), port(3)]
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"))
}

/// A CA and a `localhost`/`127.0.0.1` certificate for Pebble's HTTPS API
/// (`api.crt`, `api.key`, `api-ca.crt`); returns the CA's PEM.
fn write_api_certificate(dir: &Path) -> String {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble API test CA");
    let ca = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf");
    std::fs::write(dir.join("api.crt"), leaf.pem()).expect("write");
    std::fs::write(dir.join("api.key"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("api-ca.crt"), ca.pem()).expect("write");
    ca.pem()
}

/// The connector of [`Pebble::api_client`].
pub type PebbleConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A TLS client trusting only `ca_pem`.
fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `GET https://127.0.0.1:port/path` trusting `ca_pem`: the body.
async fn https_get(ca_pem: &str, port: u16, path: &str) -> String {
    let config = client_config(ca_pem);
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS to Pebble");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let request = http::Request::get(path)
            .header("host", format!("localhost:{port}"))
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("Pebble answered in time")
}
