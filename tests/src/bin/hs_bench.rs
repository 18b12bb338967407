//! `hs_bench`: rustls' own TLS 1.3 server handshake rate on this machine,
//! in memory, with the edge's own `ServerConfig` (its ring provider, suites,
//! ALPN and session cache) and the certificate chain its self-signed mode
//! serves (ECDSA P-256 leaf, then the CA). No socket, no runtime, no HTTP/2:
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
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    client::Resumption,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    sign::CertifiedKey,
};
use serde_json::json;
use std::{
    io::Cursor,
    sync::Arc,
    time::{Duration, Instant},
};
use vibectl_edge::tls::{CertResolver, crypto_provider, server_config};

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

/// The self-signed mode's shape: a CA, and a P-256 leaf for `localhost`
/// it signs; the chain is served leaf first.
fn chain() -> anyhow::Result<(CertifiedKey, CertificateDer<'static>)> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "hs_bench CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let signer = crypto_provider()
        .key_provider
        .load_private_key(key)
        .context("the leaf key")?;
    let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    Ok((CertifiedKey::new(chain, signer), ca_cert.der().clone()))
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
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire)?;
        }
        let t = Instant::now();
        let mut rd = Cursor::new(&wire[..]);
        while (rd.position() as usize) < wire.len() {
            s.read_tls(&mut rd)?;
            s.process_new_packets()?;
        }
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back)?;
        }
        server_time += t.elapsed();
        let mut rd = Cursor::new(&back[..]);
        while (rd.position() as usize) < back.len() {
            c.read_tls(&mut rd)?;
            c.process_new_packets()?;
        }
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
    let (key, ca) = chain()?;
    let server = Arc::new(server_config(
        &vibectl_config::TlsConfig::default(),
        Arc::new(CertResolver::new(key)),
    )?);
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
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
