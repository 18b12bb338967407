//! ACME set-ups that cannot work stop the start with an error naming the
//! cause, before anything is ordered: a directory URL that is not an ACME
//! directory (Pebble answering 404), and a CA whose HTTPS certificate the
//! configured `ca_file` does not vouch for. (A directory that does not
//! answer at all: `acme_startup`; a validation the CA fails:
//! `acme_pebble::a_failing_validation_keeps_the_fallback_and_ready_names_the_error`.)

use super::acme_common::{Core, config_with_directory, listeners_and_pebble, refused_start};
use vibectl_tests::pebble::PebbleOptions;

/// The start's error for `directory_url`, with `ca_file` replaced if given.
async fn start_error(url_suffix: &str, other_ca: bool) -> String {
    let (listeners, pebble) = listeners_and_pebble(false, PebbleOptions::without_waits()).await;
    let state = tempfile::tempdir().expect("tempdir");
    let core = Core::bind().await;
    let url = format!("{}{url_suffix}", pebble.directory_url());
    let mut config = config_with_directory(state.path(), &core.address, &pebble, &url, "");
    if other_ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let file = state.path().join("other-ca.pem");
        std::fs::write(&file, ca.pem()).expect("write");
        config.tls.acme.as_mut().expect("acme").ca_file = Some(file);
    }
    let error = refused_start(listeners, config).await;
    assert_eq!(pebble.orders_added(), 0, "nothing ordered");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_an_acme_directory_is_refused_naming_it() {
    let error = start_error("-not-here", false).await;
    assert!(
        error.contains("/dir-not-here") && error.contains("not an ACME directory"),
        "{error}"
    );
    assert!(error.contains("404"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_root_that_does_not_match_is_refused_naming_the_certificate_problem() {
    let error = start_error("", true).await;
    assert!(
        error.contains("did not answer") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(
        error.contains("--acme-ca-file"),
        "names the setting: {error}"
    );
}
