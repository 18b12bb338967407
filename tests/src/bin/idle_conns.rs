//! `idle_conns`: opens N TLS 1.3 + HTTP/2 connections to the edge, makes one
//! `GetServerInfo` call on each (so the edge's first-request timeout does
//! not close them: a client that called once and keeps its connection),
//! then leaves them all idle and reads the watched process's RSS. Prints
//! JSON: connections opened and still open, the time it took, and the RSS.
//!
//! ```text
//! idle_conns --target 127.0.0.1:PORT --ca-file ca.crt --token-file bench.jwt \
//!            --connections 10000 --watch-pid PID --hold-for 1s
//! ```

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::{net::TcpStream, sync::Semaphore, time::Instant};
use tokio_rustls::TlsConnector;

/// Many idle TLS connections to one edge.
#[derive(Debug, Parser)]
#[command(name = "idle_conns")]
struct Args {
    /// `HOST:PORT` of the edge's TLS listener.
    #[arg(long)]
    target: String,
    /// CA bundle to verify the edge with.
    #[arg(long)]
    ca_file: PathBuf,
    /// JWT sent as `authorization: Bearer …`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// The process whose RSS is read once every connection is idle.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// How long to keep them all open after the reading.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    hold_for: Duration,
    /// Bound on the whole opening phase.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    timeout: Duration,
}

/// An open connection: dropping the sender and aborting the driver closes it.
struct Open {
    _sender: h2::client::SendRequest<Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

/// The VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn open_one(
    addr: &str,
    tls: &TlsConnector,
    name: &ServerName<'static>,
    token: Option<&str>,
) -> anyhow::Result<Open> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(name.clone(), tcp).await?;
    let (sender, conn) = h2::client::handshake(stream).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut ready = sender.clone().ready().await?;
    let mut req = http::Request::post(format!(
        "https://{addr}/vibectl.llm_proxy.VibectlLLMProxy/GetServerInfo"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let (response, mut body_tx) = ready.send_request(req.body(())?, false)?;
    // An empty GetServerInfoRequest: uncompressed, zero length.
    body_tx.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)?;
    let response = response.await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?;
    let grpc = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    anyhow::ensure!(grpc == "0", "grpc-status {grpc}");
    Ok(Open {
        _sender: sender,
        driver,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca_file).context("reading --ca-file")? {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = TlsConnector::from(Arc::new(cfg));
    let host = args.target.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    let name = ServerName::try_from(host.to_owned()).context("--target host")?;
    let token = match &args.token_file {
        Some(f) => Some(std::fs::read_to_string(f)?.trim().to_owned()),
        None => None,
    };
    let rss_before = args.watch_pid.and_then(rss_kib);
    let limit = Arc::new(Semaphore::new(args.parallel.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (limit, tls, name, token) = (limit.clone(), tls.clone(), name.clone(), token.clone());
        let addr = args.target.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            open_one(&addr, &tls, &name, token.as_deref()).await
        });
    }
    let mut open = Vec::with_capacity(args.connections);
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let deadline = Instant::now() + args.timeout;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(Ok(conn)))) => open.push(conn),
            Ok(Some(Ok(Err(e)))) => *errors.entry(format!("{e:#}")).or_default() += 1,
            Ok(Some(Err(e))) => *errors.entry(format!("task: {e}")).or_default() += 1,
            Ok(None) => break,
            Err(_) => {
                *errors.entry("timed out opening".into()).or_default() += tasks.len() as u64;
                tasks.abort_all();
                break;
            }
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    // Let the edge settle (buffers of the one call released) before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still_open = open.iter().filter(|c| !c.driver.is_finished()).count();
    let rss_after = args.watch_pid.and_then(rss_kib);
    let out = json!({
        "requested": args.connections,
        "opened": open.len(),
        "still_open": still_open,
        "errors": errors,
        "open_s": open_s,
        "rss_before_kib": rss_before,
        "rss_kib": rss_after,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    tokio::time::sleep(args.hold_for).await;
    for conn in open {
        conn.driver.abort();
    }
    Ok(())
}
