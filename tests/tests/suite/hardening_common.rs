//! Shared by the hardening tests: silent TLS clients (an attacker's), a
//! victim client measured beside an attack, raw HTTP/2 requests.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{io::AsyncReadExt, net::TcpStream};
use tokio_rustls::{TlsConnector, client::TlsStream};
use vibectl_proto::llm_proxy::{
    GetServerInfoRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient,
};
use vibectl_tests::harness::authed;

/// A rustls client trusting `ca_bundle`, ALPN `h2`.
pub fn tls_client(ca_bundle: &Path) -> TlsConnector {
    vibectl_edge::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_bundle).expect("CA bundle");
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// The attacker's own address in tests that need one apart from the
/// victim's 127.0.0.1 (the edge limits new connections per address): the
/// whole of 127.0.0.0/8 reaches the loopback listener.
pub const ATTACKER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `addr` from `from` (any port).
pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// A TLS connection from [`ATTACKER`] that completed its handshake and
/// will send nothing (no HTTP/2 preface); `None` when the edge refused or
/// closed it first.
pub async fn silent_tls(addr: SocketAddr, tls: &TlsConnector) -> Option<TlsStream<TcpStream>> {
    let tcp = connect_from(addr, ATTACKER).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp))
        .await
        .ok()?
        .ok()
}

/// Waits (at most `within`) until the edge closes `stream`; whether it did.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> bool {
    let mut buf = [0u8; 512];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// New clients of the edge at `addr` over TLS (trusting `ca_pem`, name
/// `localhost`), for a victim or an attacker.
#[derive(Clone)]
pub struct EdgeClients(tonic::transport::Endpoint);

impl EdgeClients {
    /// Clients of the edge at `addr` trusting `ca_pem`.
    pub fn tls(addr: SocketAddr, ca_pem: &str) -> Self {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
            .connect_timeout(Duration::from_secs(5));
        Self(endpoint)
    }

    /// Clients of the h2c (`insecure`) edge at `addr`.
    pub fn h2c(addr: SocketAddr) -> Self {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5));
        Self(endpoint)
    }

    /// A client on a new connection (`None`: refused or timed out).
    pub async fn connect(&self) -> Option<VibectlLlmProxyClient<tonic::transport::Channel>> {
        let connect = self.0.connect();
        let channel = tokio::time::timeout(Duration::from_secs(10), connect).await;
        channel.ok()?.ok().map(VibectlLlmProxyClient::new)
    }
}

/// The attacker's own runtime (2 threads), as it would have its own
/// machine: its client work does not queue the victim's tasks (it still
/// shares the CPU). Tasks spawned there connect there.
pub fn attacker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("attacker runtime")
}

/// What a victim client saw.
#[derive(Debug, Default)]
pub struct VictimReport {
    /// Calls made.
    pub calls: u32,
    /// Calls that succeeded.
    pub ok: u32,
    /// Latencies of the successful calls.
    pub latencies: Vec<Duration>,
    /// The first few errors.
    pub errors: Vec<String>,
}

impl VictimReport {
    /// Successful share, 0..=1.
    pub fn success_rate(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        f64::from(self.ok) / f64::from(self.calls)
    }

    /// Prints the `victim:` line of `scripts/reliability` for `attack`:
    /// success, p99 and its ratio to `baseline`'s (the same client without
    /// the attack, just before it).
    pub fn print(&self, attack: &str, baseline: &VictimReport) {
        eprintln!(
            "victim: {attack}: {}/{} ok ({:.1} %), p99 {:.1} ms (baseline {:.1} ms, ratio {:.2})",
            self.ok,
            self.calls,
            self.success_rate() * 100.0,
            self.p99().as_secs_f64() * 1e3,
            baseline.p99().as_secs_f64() * 1e3,
            self.p99().as_secs_f64() / baseline.p99().as_secs_f64().max(1e-6)
        );
    }

    /// Asserts what a user would notice: >= 99 % of at least `min_calls`
    /// calls succeeded.
    pub fn assert_served(&self, min_calls: u32) {
        assert!(
            self.success_rate() >= 0.99,
            "victim success {:.3} over {} calls: {:?}",
            self.success_rate(),
            self.calls,
            self.errors
        );
        assert!(
            self.calls >= min_calls,
            "the victim made only {} calls",
            self.calls
        );
    }

    /// The 99th percentile latency.
    pub fn p99(&self) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(l.len().saturating_mul(99) / 100)
            .copied()
            .unwrap_or_default()
    }
}

/// Calls a victim makes at least (for `run` and at most 30 s more), so that
/// its success rate means something on a slow, shared machine.
const MIN_CALLS: u32 = 10;

/// The fastest a victim calls: one call per this interval (50 a second,
/// a new connection every few calls: 10 connections a second). A person's
/// client, even a busy NAT of them, is that or slower; back to back, a
/// release build's victim would open hundreds of connections a second and
/// be refused by its own address's accept rate, which measures the
/// defence against the victim instead of the attack.
const VICTIM_PACE: Duration = Duration::from_millis(20);

/// A legitimate client: `GetServerInfo` calls at most one per
/// [`VICTIM_PACE`] for `run` (and until it made [`MIN_CALLS`], at most 30 s
/// more), on a new connection every `calls_per_connection` calls (a new
/// channel is what an attack on accept hurts first). Each call is bounded
/// by 5 s.
pub async fn victim(
    connect: impl AsyncFn() -> Option<VibectlLlmProxyClient<tonic::transport::Channel>>,
    token: &str,
    run: Duration,
    calls_per_connection: u32,
) -> VictimReport {
    let mut report = VictimReport::default();
    let end = Instant::now() + run;
    let last = end + Duration::from_secs(30);
    let mut client = None;
    let mut pace = tokio::time::interval(VICTIM_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end || (report.calls < MIN_CALLS && Instant::now() < last) {
        pace.tick().await;
        if report.calls % calls_per_connection == 0 {
            client = None;
        }
        report.calls += 1;
        let started = Instant::now();
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else {
            if report.errors.len() < 5 {
                report.errors.push("connect failed".into());
            }
            continue;
        };
        let call = c.get_server_info(authed(GetServerInfoRequest {}, token));
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(_)) => {
                report.ok += 1;
                report.latencies.push(started.elapsed());
            }
            Ok(Err(status)) => {
                client = None;
                if report.errors.len() < 5 {
                    report.errors.push(status.to_string());
                }
            }
            Err(_) => {
                client = None;
                if report.errors.len() < 5 {
                    report.errors.push("timed out".into());
                }
            }
        }
    }
    report
}

/// Runs `attack` with a victim of `clients` (token `token`) calling beside
/// it for `run` (a new connection every 5 calls), after a baseline of the
/// same victim alone; prints the `victim:` line for `name` and asserts the
/// victim was served (>= 99 %). Returns what the attack returned.
pub async fn beside<T>(
    name: &str,
    clients: &EdgeClients,
    token: &str,
    run: Duration,
    attack: impl std::future::Future<Output = T>,
) -> (T, VictimReport) {
    let connect = async || clients.connect().await;
    let baseline = victim(&connect, token, run, 5).await;
    let (out, report) = tokio::join!(attack, victim(&connect, token, run, 5));
    report.print(name, &baseline);
    report.assert_served(5);
    (out, report)
}
