//! Start-up checks of ACME mode, without a CA: every impossible setup is
//! refused with an error that names what to fix.

use super::*;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// `[tls.acme]` with a state dir in `tmp` and a directory URL on a port
/// where nothing listens.
fn config(tmp: &Path, extra: &str) -> Config {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let text = format!(
        "[edge]\nstate_dir = \"{}\"\n[tls.acme]\nemail = \"ops@example.com\"\n\
         domains = [\"proxy.example.com\"]\ndirectory_url = \"https://127.0.0.1:{port}/dir\"\n{extra}",
        tmp.display()
    );
    Config::from_toml(&text, Path::new("acme-test.toml")).expect("valid config")
}

fn quick() -> ProbePolicy {
    ProbePolicy {
        timeout: Duration::from_secs(2),
        pauses: vec![Duration::from_millis(50), Duration::from_millis(50)],
    }
}

async fn start_err(config: &Config) -> String {
    let shutdown = CancellationToken::new();
    let result = start(config, &quick(), None, shutdown.clone()).await;
    shutdown.cancel();
    match result {
        Ok(_) => panic!("started"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_directory_url_that_does_not_answer_is_refused_after_retries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path(), "");
    let err = start_err(&config).await;
    assert!(
        err.starts_with("ACME directory URL https://127.0.0.1:") && err.contains("did not answer"),
        "{err}"
    );
    assert!(err.contains("3 tries"), "{err}");
    // The cache was prepared (0700) before the CA was asked.
    let mode = std::fs::metadata(tmp.path().join("acme"))
        .expect("cache dir")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
}

#[tokio::test]
async fn a_cache_dir_without_parent_or_uncreatable_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no/such/acme");
    let err = start_err(&config(
        tmp.path(),
        &format!("cache_dir = \"{}\"\n", missing.display()),
    ))
    .await;
    assert!(
        err.contains("ACME cache directory") && err.contains("parent"),
        "{err}"
    );
    assert!(err.contains("--ephemeral-cache"), "{err}");
    assert!(!missing.exists(), "nothing created");
    // Not creatable even as root: under /proc.
    let err = start_err(&config(
        tmp.path(),
        "cache_dir = \"/proc/vibectl-acme-test\"\n",
    ))
    .await;
    assert!(
        err.contains("ACME cache directory /proc/vibectl-acme-test"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("ca.pem");
    std::fs::write(&file, "not a certificate").expect("write");
    let err = start_err(&config(
        tmp.path(),
        &format!("ca_file = \"{}\"\n", file.display()),
    ))
    .await;
    assert!(
        err.contains("--acme-ca-file") && err.contains("no PEM certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_alpn_01_with_required_client_certificates_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = config(tmp.path(), "");
    config.tls.client_ca_file = Some(tmp.path().join("clients.pem"));
    let err = start_err(&config).await;
    assert!(
        err.starts_with("tls.client_auth:") && err.contains("http-01"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ephemeral_cache_is_not_in_the_state_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path(), "ephemeral_cache = true\n");
    // No CA: the directory check fails, and the temporary cache goes with it.
    let err = start_err(&config).await;
    assert!(err.contains("did not answer"), "{err}");
    assert!(
        !tmp.path().join("acme").exists(),
        "the state dir holds no cache"
    );
}
