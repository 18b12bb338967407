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

use crate::{
    harness::{WAIT, http1_request},
    server_process::{ServerProcess, accepting},
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::{
    path::{Path, PathBuf},
    process::Command,
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

impl PebbleOptions {
    /// Pebble's defaults but no wait before each validation (`nosleep`):
    /// for tests of other behaviour.
    pub fn without_waits() -> Self {
        Self {
            nosleep: true,
            ..Self::default()
        }
    }
}

/// A running Pebble and its DNS.
pub struct Pebble {
    // Declared first: dropped (killed) before the directory goes.
    pebble: ServerProcess,
    _dns: ServerProcess,
    dir: tempfile::TempDir,
    api_port: u16,
    management_port: u16,
    api_ca_pem: String,
}

impl Pebble {
    /// Starts `pebble-challtestsrv` and `pebble`, each on fresh ports, and
    /// waits (bounded) until each one's ports accept; a lost port race
    /// starts it again, an early exit fails with its log
    /// ([`ServerProcess::start`]).
    pub async fn start(options: PebbleOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_ca_pem = write_api_certificate(dir.path());
        let (dns, dns_ports) = ServerProcess::start(
            "pebble-challtestsrv",
            &dir.path().join("challtestsrv.log"),
            2,
            |ports| {
                let mut dns = Command::new("pebble-challtestsrv");
                dns.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                    .args(["-dns01", &format!("127.0.0.1:{}", ports[0])])
                    .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                    .args(["-management", &format!("127.0.0.1:{}", ports[1])]);
                dns
            },
            accepting,
        )
        .await;
        let dns_server = options
            .dns_server
            .map_or_else(|| format!("127.0.0.1:{}", dns_ports[0]), |a| a.to_string());
        let (pebble, ports) = ServerProcess::start(
            "pebble",
            &dir.path().join("pebble.log"),
            2,
            |ports| pebble_command(dir.path(), &options, ports, &dns_server),
            accepting,
        )
        .await;
        Self {
            pebble,
            _dns: dns,
            dir,
            api_port: ports[0],
            management_port: ports[1],
            api_ca_pem,
        }
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
        self.pebble.log()
    }
}

/// `pebble -config …` on `[api_port, management_port]` (the config file
/// written in `dir`).
fn pebble_command(dir: &Path, options: &PebbleOptions, ports: &[u16], dns_server: &str) -> Command {
    let mut pebble = serde_json::json!({
        "listenAddress": format!("127.0.0.1:{}", ports[0]),
        "managementListenAddress": format!("127.0.0.1:{}", ports[1]),
        "certificate": dir.join("api.crt"),
        "privateKey": dir.join("api.key"),
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
    let config = dir.join("pebble.json");
    std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string())
        .expect("write pebble.json");
    let mut server = Command::new("pebble");
    server
        .arg("-config")
        .arg(&config)
        .args(["-dnsserver", dns_server]);
    if options.nosleep {
        server.env("PEBBLE_VA_NOSLEEP", "1");
    }
    if let Some(percent) = options.nonce_reject {
        server.env("PEBBLE_WFE_NONCEREJECT", percent.to_string());
    }
    server
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
        http1_request(tls, "GET", &format!("localhost:{port}"), path)
            .await
            .2
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("Pebble answered in time")
}
