//! The private CA (`vibectl-edge ca …`, served by `serve-ca`): its chain
//! verifies with the bundle alone (`openssl verify`, as operators check it),
//! and a tonic client that trusts only the bundle calls `GetServerInfo`
//! through an edge serving the CA's server certificate.

use crate::tls_common;

use std::process::Command;
use tls_common::{bundle, private_ca, private_ca_stack, served_fingerprint, server_info};
use vibectl_edge::tls::{ca, inspect};

fn openssl_verify(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .args(args)
        .output()
        .expect("openssl runs (install the openssl package)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_chain_verifies_with_only_the_bundle() {
    let dir = private_ca();
    let alice = ca::create_client_cert(dir.path(), "alice", 30, false).expect("client");
    let ca_file = bundle(dir.path());
    let server = dir.path().join(ca::files::SERVER_CRT);
    let (ok, out) = openssl_verify(&[
        "-CAfile".as_ref(),
        ca_file.as_os_str(),
        "-purpose".as_ref(),
        "sslserver".as_ref(),
        server.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl_verify(&[
        "-CAfile".as_ref(),
        ca_file.as_os_str(),
        "-purpose".as_ref(),
        "sslclient".as_ref(),
        alice.cert.as_os_str(),
    ]);
    assert!(ok, "{out}");
    // Trusting only the root, with the intermediate the server sends.
    let root = dir.path().join(ca::files::ROOT_CRT);
    let intermediate = dir.path().join(ca::files::INTERMEDIATE_CRT);
    let (ok, out) = openssl_verify(&[
        "-CAfile".as_ref(),
        root.as_os_str(),
        "-untrusted".as_ref(),
        intermediate.as_os_str(),
        server.as_os_str(),
    ]);
    assert!(ok, "{out}");
    // Another CA's bundle does not vouch for it.
    let other = private_ca();
    let (ok, out) = openssl_verify(&[
        "-CAfile".as_ref(),
        bundle(other.path()).as_os_str(),
        server.as_os_str(),
    ]);
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn a_client_trusting_only_the_bundle_calls_through_the_private_ca() {
    let dir = private_ca();
    let stack = private_ca_stack(dir.path(), "").await;
    let channel = tls_common::channel(stack.edge_addr, &bundle(dir.path()), None)
        .await
        .expect("TLS verified with the bundle alone");
    let info = server_info(channel, Some(&stack.token("alice")))
        .await
        .expect("GetServerInfo");
    assert!(!info.server_version.is_empty());
    // What the edge serves is the CA's server.crt, and it says so.
    let pem = std::fs::read_to_string(dir.path().join(ca::files::SERVER_CRT)).expect("read");
    let leaf = inspect::describe_pem(&pem).expect("leaf");
    assert_eq!(
        served_fingerprint(stack.edge_addr, &bundle(dir.path())).await,
        leaf.sha256
    );
    let served = stack
        .cert_resolver
        .as_ref()
        .expect("tls")
        .served()
        .expect("served");
    assert_eq!(served.sha256, leaf.sha256);
    assert_eq!(served.not_after_unix, leaf.not_after);
    assert!(
        served.subject.contains("CN=localhost"),
        "{}",
        served.subject
    );
    stack.shutdown().await;
}
