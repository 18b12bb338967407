//! The edge's TLS policy against `openssl s_client` and rustls clients:
//! TLS 1.0/1.1 refused, TLS 1.2 with CBC-only suites refused, TLS 1.3
//! negotiated when offered, `min_version = "1.3"` refuses TLS 1.2, and
//! every refusal is counted by reason in `HandshakeStats`.

use crate::tls_common;

use rustls::version;
use tls_common::{client_config, counted, handshake, private_ca, private_ca_stack, s_client};
use vibectl_edge::tls::HandshakeFailure;

#[tokio::test]
async fn tls10_and_tls11_clients_are_refused() {
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "").await;
    let stats = stack.edge.handshake_stats().clone();
    // SECLEVEL=0: let this openssl *offer* the old versions, so that the
    // refusal is the edge's and not the client's own policy.
    for flag in ["-tls1_1", "-tls1"] {
        let before = stats.get(HandshakeFailure::ProtocolVersion);
        let old = s_client(stack.edge_addr, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]).await;
        assert!(!old.ok && !old.handshake_done(), "{flag}: {}", old.output);
        assert_eq!(
            stats.get(HandshakeFailure::ProtocolVersion),
            before + 1,
            "{flag}: the edge saw the hello and refused the version: {}",
            old.output
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn tls12_with_only_cbc_suites_is_refused() {
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "").await;
    let stats = stack.edge.handshake_stats().clone();
    // Static-RSA CBC, and ECDHE CBC (forward secret but not AEAD).
    for suites in [
        "AES128-SHA256",
        "AES256-SHA:AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA",
    ] {
        let before = stats.get(HandshakeFailure::ProtocolVersion);
        let cbc = s_client(stack.edge_addr, &["-tls1_2", "-cipher", suites]).await;
        assert!(!cbc.ok && !cbc.handshake_done(), "{suites}: {}", cbc.output);
        assert_eq!(
            stats.get(HandshakeFailure::ProtocolVersion),
            before + 1,
            "{suites}: {}",
            cbc.output
        );
    }
    // The same client with an AEAD suite gets in.
    let gcm = s_client(
        stack.edge_addr,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    )
    .await;
    assert!(gcm.handshake_done(), "{}", gcm.output);
    assert_eq!(gcm.protocol(), Some("TLSv1.2"), "{}", gcm.output);
    stack.shutdown().await;
}

#[tokio::test]
async fn tls13_is_negotiated_when_offered() {
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "").await;
    let bundle = tls_common::bundle(ca.path());
    let ca_file = bundle.to_str().expect("utf-8");
    let default = s_client(
        stack.edge_addr,
        &["-alpn", "h2", "-CAfile", ca_file, "-verify_return_error"],
    )
    .await;
    assert!(default.ok && default.handshake_done(), "{}", default.output);
    assert_eq!(default.protocol(), Some("TLSv1.3"), "{}", default.output);
    assert!(
        default.output.contains("ALPN protocol: h2"),
        "{}",
        default.output
    );
    // A rustls client offering 1.2 and 1.3 gets 1.3.
    let both = handshake(
        stack.edge_addr,
        client_config(&bundle, &[&version::TLS12, &version::TLS13]),
    )
    .await
    .expect("handshake");
    assert_eq!(
        both.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "min_version = \"1.3\"").await;
    let stats = stack.edge.handshake_stats().clone();
    let tls12 = s_client(stack.edge_addr, &["-tls1_2"]).await;
    assert!(!tls12.ok && !tls12.handshake_done(), "{}", tls12.output);
    assert_eq!(stats.get(HandshakeFailure::ProtocolVersion), 1);
    let bundle = tls_common::bundle(ca.path());
    assert!(
        handshake(stack.edge_addr, client_config(&bundle, &[&version::TLS12]))
            .await
            .is_err()
    );
    let tls13 = s_client(stack.edge_addr, &["-tls1_3"]).await;
    assert_eq!(tls13.protocol(), Some("TLSv1.3"), "{}", tls13.output);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped_and_counted() {
    use tokio::io::AsyncReadExt;
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "handshake_timeout = \"200ms\"").await;
    let mut silent = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    // The edge closes the connection once the timeout passes.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(vibectl_tests::harness::WAIT, silent.read(&mut buf))
        .await
        .expect("closed by the edge in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    counted(&stack, HandshakeFailure::Timeout, 1).await;
    stack.shutdown().await;
}
