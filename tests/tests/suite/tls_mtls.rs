//! Mutual TLS, end to end, with certificates from `ca create-client-cert`:
//! required mode refuses a client without a certificate and one with a
//! certificate of another CA; a client certificate from the CA gets a call
//! through, and with auth on it still needs a JWT. Optional mode lets
//! certificate-less clients in but still refuses a bad certificate.

use crate::tls_common;

use std::path::Path;
use tls_common::{channel, counted, private_ca, private_ca_stack, server_info};
use tonic::Code;
use vibectl_edge::tls::{HandshakeFailure, ca};
use vibectl_tests::harness::Stack;

/// `[tls]` lines turning mutual TLS on with `dir`'s bundle.
fn mtls(dir: &Path, mode: &str) -> String {
    format!(
        "client_ca_file = \"{}\"\nclient_auth = \"{mode}\"",
        tls_common::bundle(dir).display()
    )
}

/// A call through a new connection presenting `identity`: the refusal, at
/// connect time or (TLS 1.3 verifies the client after the client's last
/// handshake message) at the first call.
async fn call(
    stack: &Stack,
    ca_dir: &Path,
    identity: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> Result<(), String> {
    let channel = channel(stack.edge_addr, &tls_common::bundle(ca_dir), identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    server_info(channel, token)
        .await
        .map(|_| ())
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

#[tokio::test]
async fn required_client_certificates() {
    let ca_dir = private_ca();
    let alice = ca::create_client_cert(ca_dir.path(), "alice", 30, false).expect("alice");
    let other_ca = private_ca();
    let mallory = ca::create_client_cert(other_ca.path(), "mallory", 30, false).expect("mallory");
    let stack = private_ca_stack(ca_dir.path(), &mtls(ca_dir.path(), "required")).await;
    let token = stack.token("alice");

    // No certificate: refused during the handshake.
    let refused = call(&stack, ca_dir.path(), None, Some(&token)).await;
    assert!(refused.is_err(), "no client certificate must be refused");
    counted(&stack, HandshakeFailure::NoClientCert, 1).await;

    // A certificate from another CA: refused.
    let identity = Some((mallory.cert.as_path(), mallory.key.as_path()));
    let refused = call(&stack, ca_dir.path(), identity, Some(&token)).await;
    assert!(refused.is_err(), "another CA's certificate must be refused");
    counted(&stack, HandshakeFailure::BadClientCert, 1).await;

    // The CA's client certificate: the call goes through…
    let identity = Some((alice.cert.as_path(), alice.key.as_path()));
    call(&stack, ca_dir.path(), identity, Some(&token))
        .await
        .expect("client certificate + JWT");
    // …and the JWT is still required: the certificate does not replace it.
    let err = call(&stack, ca_dir.path(), identity, None)
        .await
        .expect_err("no JWT");
    assert!(
        err.starts_with(&format!("{:?}", Code::Unauthenticated)),
        "{err}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificates() {
    let ca_dir = private_ca();
    let bob = ca::create_client_cert(ca_dir.path(), "bob", 30, false).expect("bob");
    let other_ca = private_ca();
    let eve = ca::create_client_cert(other_ca.path(), "eve", 30, false).expect("eve");
    let stack = private_ca_stack(ca_dir.path(), &mtls(ca_dir.path(), "optional")).await;
    let token = stack.token("bob");
    call(&stack, ca_dir.path(), None, Some(&token))
        .await
        .expect("no certificate is fine when optional");
    let identity = Some((bob.cert.as_path(), bob.key.as_path()));
    call(&stack, ca_dir.path(), identity, Some(&token))
        .await
        .expect("a valid certificate");
    let identity = Some((eve.cert.as_path(), eve.key.as_path()));
    assert!(
        call(&stack, ca_dir.path(), identity, Some(&token))
            .await
            .is_err(),
        "a certificate that is presented must verify"
    );
    counted(&stack, HandshakeFailure::BadClientCert, 1).await;
    stack.shutdown().await;
}
