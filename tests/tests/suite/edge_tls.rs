//! The edge's TLS policy, seen from real TLS clients: ALPN `h2`, TLS 1.2
//! minimum (1.3 only on request), AEAD suites with forward secrecy,
//! operator files mode, a handshake failure that harms no one, and a
//! certificate swap that keeps live connections.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vibectl_proto::GetServerInfoRequest;
use vibectl_proto::vibectl_llm_proxy_client::VibectlLlmProxyClient;
use vibectl_tests::harness::{Stack, WAIT, authed};

use crate::tls_common::{self, client_config};

/// Handshakes with the edge using `versions` and `alpn`.
async fn handshake(
    stack: &Stack,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let bundle = stack.ca_bundle.as_ref().expect("TLS stack");
    let mut config = client_config(bundle, versions);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls_common::handshake(stack.edge_addr, config).await
}

async fn call_ok(stack: &Stack, client: &mut VibectlLlmProxyClient<tonic::transport::Channel>) {
    tokio::time::timeout(
        WAIT,
        client.get_server_info(authed(GetServerInfoRequest {}, &stack.token("t"))),
    )
    .await
    .expect("in time")
    .expect("OK");
}

#[tokio::test]
async fn tls13_and_tls12_negotiate_h2_with_aead_forward_secret_suites() {
    let stack = Stack::start().await;
    let tls13 = handshake(&stack, &[&version::TLS13], &[b"h2"])
        .await
        .expect("TLS 1.3");
    let (_, session) = tls13.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    let suite = |session: &rustls::ClientConnection| {
        format!(
            "{:?}",
            session.negotiated_cipher_suite().expect("suite").suite()
        )
    };
    // The edge's preference wins over the client's: ring's client offers
    // AES-256-GCM first, the edge picks AES-128-GCM (SHA-256: cheaper
    // handshakes where the CPU hashes SHA-256 in hardware).
    assert_eq!(
        format!(
            "{:?}",
            rustls::crypto::ring::default_provider().cipher_suites[0].suite()
        ),
        "TLS13_AES_256_GCM_SHA384"
    );
    assert_eq!(suite(session), "TLS13_AES_128_GCM_SHA256");
    let tls12 = handshake(&stack, &[&version::TLS12], &[b"h2"])
        .await
        .expect("TLS 1.2");
    let tls12 = suite(tls12.get_ref().1);
    assert_eq!(tls12, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    stack.shutdown().await;
}

#[tokio::test]
async fn min_version_13_refuses_a_tls12_client() {
    let stack = Stack::builder()
        .config("[tls]\nmin_version = \"1.3\"\n")
        .start()
        .await;
    assert!(
        handshake(&stack, &[&version::TLS12], &[b"h2"])
            .await
            .is_err()
    );
    assert!(
        handshake(&stack, &[&version::TLS13], &[b"h2"])
            .await
            .is_ok()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_client_without_h2_is_refused_and_garbage_harms_no_one() {
    let stack = Stack::start().await;
    assert!(
        handshake(&stack, &[&version::TLS13], &[b"http/1.1"])
            .await
            .is_err()
    );
    // Plain bytes instead of a ClientHello: the edge drops that connection…
    let mut junk = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, junk.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        read.is_err() || buf.len() < 64,
        "no HTTP answer on the TLS port"
    );
    // …and serves the next client as usual.
    let mut client = stack.client().await;
    call_ok(&stack, &mut client).await;
    stack.shutdown().await;
}

/// A CA and a `localhost` leaf made with rcgen here (not by the edge).
fn operator_certs(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    (
        write("chain.pem", format!("{}{}", leaf.pem(), ca.pem())),
        write("leaf.key", leaf_key.serialize_pem()),
        write("ca.pem", ca.pem()),
    )
}

#[tokio::test]
async fn files_mode_serves_the_operator_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, key, ca) = operator_certs(dir.path());
    let toml = format!(
        "[tls.files]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        chain.display(),
        key.display()
    );
    let stack = Stack::builder().config(&toml).trust(&ca).start().await;
    let mut client = stack.client().await;
    call_ok(&stack, &mut client).await;
    stack.shutdown().await;
}

#[tokio::test]
async fn certificate_swap_keeps_live_connections() {
    let stack = Stack::start().await;
    let old_ca = std::fs::read_to_string(stack.ca_bundle.as_ref().expect("tls")).expect("ca");
    let mut live = stack.client().await;
    call_ok(&stack, &mut live).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, key, new_ca) = operator_certs(dir.path());
    let new_key = vibectl_edge::tls::files::load(&chain, &key).expect("new key");
    stack.cert_resolver.as_ref().expect("tls").swap(new_key);

    // The connection made before the swap keeps working…
    call_ok(&stack, &mut live).await;
    // …new handshakes get the new certificate.
    let new_ca = std::fs::read_to_string(new_ca).expect("ca");
    let channel = stack
        .try_channel(Some(&new_ca))
        .await
        .expect("trusts the new CA");
    call_ok(&stack, &mut VibectlLlmProxyClient::new(channel)).await;
    assert!(
        stack.try_channel(Some(&old_ca)).await.is_err(),
        "old CA no longer matches"
    );
    drop(live);
    stack.shutdown().await;
}
