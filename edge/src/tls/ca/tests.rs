use super::*;

fn now() -> i64 {
    inspect::now_unix()
}

/// Verifies `server.crt` for `name` trusting only `ca-bundle.crt`, as rustls
/// clients (tonic, vibectl's grpc) do.
fn verify_with_bundle(dir: &Path, name: &str) -> Result<(), rustls::Error> {
    crate::tls::client_check::verify_chain(
        &dir.join(files::BUNDLE),
        &dir.join(files::SERVER_CRT),
        name,
    )
}

#[test]
fn init_then_server_chain_verifies_with_the_bundle_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let report = init(&dir, Validity::default(), false).expect("init");
    assert_eq!(report.outcome, Outcome::Created);
    assert_eq!(report.root_sha256.len(), 95);
    assert_ne!(report.root_sha256, report.intermediate_sha256);
    assert_eq!(report.root_key, Some(dir.join(files::ROOT_KEY)));
    let hosts = ["proxy.example.com".to_owned(), "127.0.0.1".to_owned()];
    let leaf = create_server_cert(&dir, &hosts, 90, false).expect("server");
    assert_eq!(leaf.outcome, Outcome::Created);
    assert_eq!(leaf.info.sans, ["proxy.example.com", "127.0.0.1"]);
    verify_with_bundle(&dir, "proxy.example.com").expect("name verifies");
    verify_with_bundle(&dir, "127.0.0.1").expect("IP verifies");
    assert!(verify_with_bundle(&dir, "other.example.com").is_err());
    // The server sends leaf + intermediate; the root stays out of the chain.
    let chain = inspect::chain_ders(&store::read(&leaf.cert).expect("read")).expect("chain");
    assert_eq!(chain.len(), 2);
}

#[test]
fn init_on_a_complete_ca_keeps_it_even_without_the_root_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = init(tmp.path(), Validity::default(), false).expect("init");
    let root = std::fs::read(tmp.path().join(files::ROOT_CRT)).expect("read");
    let again = init(tmp.path(), Validity::default(), false).expect("again");
    assert_eq!(again.outcome, Outcome::Kept);
    assert_eq!(again.root_sha256, first.root_sha256);
    assert_eq!(
        std::fs::read(tmp.path().join(files::ROOT_CRT)).expect("read"),
        root
    );
    // The root key moved offline: still complete.
    std::fs::remove_file(tmp.path().join(files::ROOT_KEY)).expect("rm");
    let offline = init(tmp.path(), Validity::default(), false).expect("offline root");
    assert_eq!(offline.outcome, Outcome::Kept);
    assert_eq!(offline.root_key, None);
}

#[test]
fn a_partial_ca_is_an_error_and_force_replaces_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = init(tmp.path(), Validity::default(), false).expect("init");
    create_server_cert(tmp.path(), &["localhost".into()], 30, false).expect("server");
    std::fs::remove_file(tmp.path().join(files::INTERMEDIATE_KEY)).expect("rm");
    let err = init(tmp.path(), Validity::default(), false).expect_err("partial");
    let msg = err.to_string();
    assert!(
        msg.contains(files::INTERMEDIATE_KEY) && msg.contains("--force"),
        "{msg}"
    );
    let forced = init(tmp.path(), Validity::default(), true).expect("forced");
    assert_eq!(forced.outcome, Outcome::Replaced);
    assert_ne!(forced.root_sha256, first.root_sha256);
    assert_eq!(forced.orphaned, [tmp.path().join(files::SERVER_CRT)]);
}

#[test]
fn create_before_init_says_what_to_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = create_server_cert(tmp.path(), &["a.example".into()], 1, false).expect_err("no CA");
    let msg = err.to_string();
    assert!(msg.contains("vibectl-edge ca init --dir"), "{msg}");
    let err = create_client_cert(tmp.path(), "alice", 1, false).expect_err("no CA");
    assert!(err.to_string().contains("ca init"), "{err}");
}

#[test]
fn server_cert_is_kept_when_the_same_refused_when_different_replaced_with_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(tmp.path(), Validity::default(), false).expect("init");
    let hosts = ["b.example".to_owned(), "A.example".to_owned()];
    let first = create_server_cert(tmp.path(), &hosts, 90, false).expect("first");
    // Same names in another order and case: an init container re-run.
    let same = ["a.example".to_owned(), "b.example".to_owned()];
    let kept = create_server_cert(tmp.path(), &same, 90, false).expect("kept");
    assert_eq!(kept.outcome, Outcome::Kept);
    assert_eq!(kept.info.sha256, first.info.sha256);
    let other = ["c.example".to_owned()];
    let err = create_server_cert(tmp.path(), &other, 90, false).expect_err("different");
    let msg = err.to_string();
    assert!(
        msg.contains("--force") && msg.contains("c.example"),
        "{msg}"
    );
    let replaced = create_server_cert(tmp.path(), &other, 90, true).expect("forced");
    assert_eq!(replaced.outcome, Outcome::Replaced);
    assert_ne!(replaced.info.sha256, first.info.sha256);
    verify_with_bundle(tmp.path(), "c.example").expect("verifies");
}

#[test]
fn client_certs_refuse_overwrite_and_bad_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(tmp.path(), Validity::default(), false).expect("init");
    let alice = create_client_cert(tmp.path(), "alice", 90, false).expect("alice");
    assert_eq!(alice.info.common_name.as_deref(), Some("alice"));
    let err = create_client_cert(tmp.path(), "alice", 90, false).expect_err("exists");
    assert!(err.to_string().contains("--force"), "{err}");
    create_client_cert(tmp.path(), "alice", 90, true).expect("forced");
    for bad in ["../evil", ".hidden", "", "a b"] {
        assert!(
            create_client_cert(tmp.path(), bad, 90, false).is_err(),
            "{bad}"
        );
    }
    assert!(!tmp.path().join("evil.crt").exists());
}

#[test]
fn status_lists_every_certificate_and_expiring_filters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(tmp.path(), Validity::default(), false).expect("init");
    create_server_cert(tmp.path(), &["localhost".into()], 10, false).expect("server");
    create_client_cert(tmp.path(), "bob", 90, false).expect("client");
    let all = status(tmp.path()).expect("status");
    let names: Vec<_> = all
        .iter()
        .map(|(p, _)| {
            p.strip_prefix(tmp.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "clients/bob.crt",
            "intermediate-ca.crt",
            "root-ca.crt",
            "server.crt"
        ]
    );
    let soon = expiring(tmp.path(), 30, now()).expect("expiring");
    assert_eq!(soon.len(), 1);
    assert!(soon[0].0.ends_with(files::SERVER_CRT));
    assert!(expiring(tmp.path(), 5, now()).expect("expiring").is_empty());
    assert_eq!(expiring(tmp.path(), 100, now()).expect("expiring").len(), 2);
}

#[test]
fn bundle_holds_root_then_intermediate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(bundle(tmp.path()).is_err());
    let report = init(tmp.path(), Validity::default(), false).expect("init");
    let pem = bundle(tmp.path()).expect("bundle");
    let ders = inspect::chain_ders(&pem).expect("certs");
    assert_eq!(ders.len(), 2);
    assert_eq!(inspect::fingerprint(&ders[0]), report.root_sha256);
    assert_eq!(inspect::fingerprint(&ders[1]), report.intermediate_sha256);
}

#[test]
fn a_swapped_intermediate_key_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init(tmp.path(), Validity::default(), false).expect("init");
    std::fs::copy(
        tmp.path().join(files::ROOT_KEY),
        tmp.path().join(files::INTERMEDIATE_KEY),
    )
    .expect("copy");
    let err = create_server_cert(tmp.path(), &["a.example".into()], 1, false).expect_err("bad key");
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn check_free_refuses_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let there = tmp.path().join("there");
    std::fs::write(&there, "x").expect("write");
    let absent = tmp.path().join("absent");
    check_free(&[&absent], false).expect("free");
    let err = check_free(&[&absent, &there], false).expect_err("exists");
    assert!(err.to_string().contains("--force"), "{err}");
    check_free(&[&absent, &there], true).expect("forced");
}
