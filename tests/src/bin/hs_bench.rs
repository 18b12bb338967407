//! `hs_bench`: rustls' own TLS 1.3 server handshake rate on this machine,
//! in memory, with the edge's own `ServerConfig` (its ring provider, suites,
//! ALPN and session cache) and the certificate chain its self-signed mode
//! serves (ECDSA P-256 leaf, then the CA), made by the edge's own
//! `generate-certs` code in a temporary directory. No socket, no runtime, no HTTP/2:
//! the figure the edge's handshakes per core-second are divided by, measured
//! beside them instead of taken from a report made on another CPU with
//! another crypto library.
//!
//! Only the server's calls are timed (`read_tls`, `process_new_packets`,
//! `write_tls`), as rustls' own benchmark does; the client's work is not.
//! Prints JSON: handshakes per second of server time, full and resumed.
//!
//! ```text
//! hs_bench --duration 2s
//! ```

use anyhow::Context;
use clap::Parser;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    client::Resumption,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
    sign::CertifiedKey,
};
use serde_json::json;
use std::{
    io::Cursor,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use vibectl_edge::tls::{CertResolver, crypto_provider, files, server_config};

/// In-memory TLS 1.3 server handshakes with the edge's configuration.
#[derive(Debug, Parser)]
#[command(name = "hs_bench")]
struct Args {
    /// How long to run each kind (full, resumed).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    duration: Duration,
    /// Offer only this TLS 1.3 suite (e.g. `TLS13_AES_128_GCM_SHA256`);
    /// by default the client offers ring's usual list and the edge picks.
    #[arg(long)]
    suite: Option<String>,
}

/// The self-signed mode's certificates, made in `dir` by the edge's own
/// code (`generate-certs`): the key and chain it serves, and the CA bundle
/// a client trusts.
fn self_signed(dir: &Path) -> anyhow::Result<(CertifiedKey, RootCertStore)> {
    let toml = format!("[tls.self_signed]\ndir = {:?}\n", dir.display().to_string());
    let config = vibectl_config::Config::from_toml(&toml, Path::new("hs_bench"))?;
    let made = vibectl_edge::cli::generate_certs(&config, &[], false)?;
    let key = files::load(&made.cert_path, &made.key_path)?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&made.ca_bundle_path)? {
        roots.add(ca?)?;
    }
    Ok((key, roots))
}

/// Everything `from` has to send.
fn drain(from: &mut Connection) -> anyhow::Result<Vec<u8>> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire)?;
    }
    Ok(wire)
}

/// `wire` read and processed by `to`.
fn feed(to: &mut Connection, wire: &[u8]) -> anyhow::Result<()> {
    let mut rd = Cursor::new(wire);
    while (rd.position() as usize) < wire.len() {
        to.read_tls(&mut rd)?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// One handshake; returns the server's time in it and the server's side.
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> anyhow::Result<(Duration, Connection)> {
    let name = ServerName::try_from("localhost")?;
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name)?);
    let start = Instant::now();
    let mut s = Connection::Server(ServerConnection::new(server.clone())?);
    let mut server_time = start.elapsed();
    // The client's flights are untimed, the server's reads of them timed.
    loop {
        let wire = drain(&mut c)?;
        let t = Instant::now();
        feed(&mut s, &wire)?;
        let back = drain(&mut s)?;
        server_time += t.elapsed();
        feed(&mut c, &back)?;
        if !s.is_handshaking() && !c.is_handshaking() && !s.wants_write() && !c.wants_write() {
            break;
        }
    }
    Ok((server_time, s))
}

/// Runs handshakes for `duration` with `client`, which resumes or not;
/// fails when a handshake's kind is not the one wanted.
fn rate(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    resume: bool,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    handshake(server, client)?; // a session to resume, caches warm
    let (mut n, mut server_time, wall) = (0u64, Duration::ZERO, Instant::now());
    while wall.elapsed() < duration {
        let (took, s) = handshake(server, client)?;
        let resumed = s.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        anyhow::ensure!(
            resumed == resume,
            "handshake {n}: resumed {resumed}, wanted {resume}"
        );
        server_time += took;
        n += 1;
    }
    Ok(json!({
        "handshakes": n,
        "server_us_each": server_time.as_secs_f64() * 1e6 / n as f64,
        "per_second": n as f64 / server_time.as_secs_f64(),
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (key, roots) = self_signed(dir.path())?;
    let server = Arc::new(server_config(
        &vibectl_config::TlsConfig::default(),
        Arc::new(CertResolver::new(key)),
    )?);
    let mut provider = crypto_provider();
    if let Some(name) = &args.suite {
        provider
            .cipher_suites
            .retain(|s| format!("{:?}", s.suite()) == *name);
        anyhow::ensure!(!provider.cipher_suites.is_empty(), "no suite {name}");
    }
    let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let resuming = Arc::new(client.clone());
    client.resumption = Resumption::disabled();
    let client = Arc::new(client);
    let (_, s) = handshake(&server, &client)?;
    let suite = s.negotiated_cipher_suite().context("no suite agreed")?;
    let group = s
        .negotiated_key_exchange_group()
        .context("no group agreed")?;
    let full = rate(&server, &client, false, args.duration)?;
    let resumed = rate(&server, &resuming, true, args.duration)?;
    println!(
        "{}",
        json!({
            "certificate": "ECDSA P-256 leaf + CA (the self-signed mode's chain)",
            "provider": "ring (the edge's suites)",
            "suite": format!("{:?}", suite.suite()),
            "group": format!("{:?}", group.name()),
            // Handshakes done in all (scripts/bench's check of a run).
            "ok": full["handshakes"].as_u64().unwrap_or(0) + resumed["handshakes"].as_u64().unwrap_or(0),
            "full": full,
            "resumed": resumed,
        })
    );
    Ok(())
}
