use super::*;
use std::os::unix::fs::PermissionsExt;

/// Verifies `server.crt` against `ca-bundle.crt` for `name`, as a client would.
fn verify(made: &SelfSigned, name: &str) -> Result<(), rustls::Error> {
    crate::tls::client_check::verify_chain(&made.ca_bundle_path, &made.cert_path, name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

#[test]
fn first_run_generates_a_verifiable_chain_with_private_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let made = ensure(&dir, &["proxy.example.com".into()], 365, false).expect("ensure");
    assert!(made.ca_generated && made.leaf_generated);
    for name in ["localhost", "127.0.0.1", "::1", "proxy.example.com"] {
        verify(&made, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&made, "other.example.com").is_err());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&made.ca_key_path), 0o600);
    assert_eq!(mode(&made.key_path), 0o600);
    assert_eq!(
        made.ca_fingerprint.len(),
        32 * 3 - 1,
        "{}",
        made.ca_fingerprint
    );
    let ca = std::fs::read(&made.ca_cert_path).expect("ca");
    assert_eq!(std::fs::read(&made.ca_bundle_path).expect("bundle"), ca);
}

#[test]
fn second_run_reuses_ca_and_leaf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = ensure(tmp.path(), &[], 365, false).expect("first");
    let ca = std::fs::read(&first.ca_cert_path).expect("ca");
    let leaf = std::fs::read(&first.cert_path).expect("leaf");
    let second = ensure(tmp.path(), &[], 365, false).expect("second");
    assert!(!second.ca_generated && !second.leaf_generated);
    assert_eq!(std::fs::read(&second.ca_cert_path).expect("ca"), ca);
    assert_eq!(std::fs::read(&second.cert_path).expect("leaf"), leaf);
    assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
}

#[test]
fn changed_hostnames_reissue_the_leaf_under_the_same_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = ensure(tmp.path(), &["a.example".into()], 365, false).expect("first");
    let ca = std::fs::read(&first.ca_cert_path).expect("ca");
    let leaf = std::fs::read(&first.cert_path).expect("leaf");
    let second = ensure(tmp.path(), &["b.example".into()], 365, false).expect("second");
    assert!(!second.ca_generated && second.leaf_generated);
    assert_eq!(
        std::fs::read(&second.ca_cert_path).expect("ca"),
        ca,
        "same CA"
    );
    assert_ne!(
        std::fs::read(&second.cert_path).expect("leaf"),
        leaf,
        "new leaf"
    );
    // Clients holding the old bundle trust the new leaf.
    verify(&second, "b.example").expect("new name verifies against the old CA");
    assert!(verify(&second, "a.example").is_err());
    // Order and case of names do not matter.
    let third = ensure(
        tmp.path(),
        &["B.EXAMPLE".into(), "localhost".into()],
        365,
        false,
    )
    .expect("third");
    assert!(!third.leaf_generated);
}

#[test]
fn leaf_expiring_within_thirty_days_is_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = ensure(tmp.path(), &[], 10, false).expect("first");
    assert!(first.leaf_generated);
    let second = ensure(tmp.path(), &[], 365, false).expect("second");
    assert!(second.leaf_generated && !second.ca_generated);
    let third = ensure(tmp.path(), &[], 365, false).expect("third");
    assert!(!third.leaf_generated);
}

#[test]
fn force_regenerates_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = ensure(tmp.path(), &[], 365, false).expect("first");
    let second = ensure(tmp.path(), &[], 365, true).expect("forced");
    assert!(second.ca_generated && second.leaf_generated);
    assert_ne!(first.ca_fingerprint, second.ca_fingerprint);
    verify(&second, "localhost").expect("verifies");
}

#[test]
fn bad_hostname_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = ensure(tmp.path(), &["bad host\u{e9}".into()], 365, false).expect_err("bad");
    assert!(err.to_string().contains("bad host"), "{err}");
}
