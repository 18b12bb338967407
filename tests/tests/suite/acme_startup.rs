//! `vibectl-edge serve-acme` refuses impossible setups at start, with an
//! error naming the flag (and its `[tls.acme]` key) — parsed and run as the
//! binary does (`Cli::try_parse_from` → `cli::run`), no CA needed.

use clap::Parser;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;
use vibectl_edge::cli::{self, Cli};

/// Runs `vibectl-edge serve-acme ARGS…` (loopback listeners on free ports,
/// a temporary state dir) and returns its error.
async fn serve_acme_error(args: &[&str]) -> String {
    let state = tempfile::tempdir().expect("tempdir");
    let mut argv = vec![
        "vibectl-edge",
        "serve-acme",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let mut config = Config::default();
    config.edge.state_dir = Some(state.path().to_owned());
    config.jwt.secret_key = Some(vibectl_config::Secret::new(
        "startup-test-secret-0123456789abcdef",
    ));
    let shutdown = CancellationToken::new();
    let run = cli::run(parsed.command, config, shutdown.clone());
    let result = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| {
            shutdown.cancel();
            panic!("{argv:?} started instead of failing")
        });
    match result {
        Ok(()) => panic!("{argv:?} succeeded"),
        Err(error) => format!("{error:#}"),
    }
}

const OK: [&str; 4] = [
    "--email",
    "ops@example.com",
    "--domain",
    "proxy.example.com",
];

#[tokio::test]
async fn each_impossible_setup_names_its_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--email", "ops@example.com"],
            "--domain (tls.acme.domains): needs at least one domain",
        ),
        (
            &["--domain", "proxy.example.com"],
            "--email (tls.acme.email): is required",
        ),
        (
            &["--email", "ops", "--domain", "proxy.example.com"],
            "--email (tls.acme.email): is not an e-mail address",
        ),
        (
            &["--email", "ops@example.com", "--domain", "*.example.com"],
            "--domain (tls.acme.domains): wildcard names (*.example.com) can only be proven with challenge = \"dns-01\"",
        ),
        (
            &["--email", "ops@example.com", "--domain", "10.0.0.1"],
            "--domain (tls.acme.domains): must be DNS names",
        ),
        (
            &[OK[0], OK[1], OK[2], OK[3], "--challenge", "http-01"],
            "--http-listen (tls.acme.http_listen): is required with the http-01 challenge",
        ),
        (
            &[
                OK[0],
                OK[1],
                OK[2],
                OK[3],
                "--staging",
                "--directory-url",
                "https://ca.example/dir",
            ],
            "--staging (tls.acme.staging): conflicts with tls.acme.directory_url",
        ),
        (
            &[
                OK[0],
                OK[1],
                OK[2],
                OK[3],
                "--directory-url",
                "http://ca.example/dir",
            ],
            "--directory-url (tls.acme.directory_url): must be an https:// URL",
        ),
        (
            &[
                OK[0],
                OK[1],
                OK[2],
                OK[3],
                "--ephemeral-cache",
                "--cache-dir",
                "/tmp/x",
            ],
            "--ephemeral-cache (tls.acme.ephemeral_cache): conflicts with tls.acme.cache_dir",
        ),
        (
            &[
                OK[0],
                OK[1],
                OK[2],
                OK[3],
                "--cache-dir",
                "/nonexistent-parent-7f3a/acme",
            ],
            "ACME cache directory /nonexistent-parent-7f3a/acme: its parent /nonexistent-parent-7f3a does not exist",
        ),
    ];
    for (args, want) in cases {
        let err = serve_acme_error(args).await;
        assert!(err.contains(want), "{args:?}:\n  got  {err}\n  want {want}");
    }
}

#[tokio::test]
async fn a_directory_url_that_does_not_answer_stops_the_start() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "https://127.0.0.1:{}/dir",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let started = Instant::now();
    let err = serve_acme_error(&[OK[0], OK[1], OK[2], OK[3], "--directory-url", &url]).await;
    assert!(
        err.starts_with(&format!("ACME directory URL {url} did not answer:")),
        "{err}"
    );
    assert!(
        err.contains("3 tries") && err.contains("--directory-url"),
        "{err}"
    );
    // Bounded: 3 tries with pauses of 0.5 s and 1.5 s (refused at once here).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[tokio::test]
async fn serve_with_an_acme_table_in_the_file_runs_acme() {
    let state = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "https://127.0.0.1:{}/dir",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let file = state.path().join("edge.toml");
    let text = format!(
        "[edge]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [tls.acme]\nemail = \"ops@example.com\"\ndomains = [\"proxy.example.com\"]\ndirectory_url = \"{url}\"\n",
        state.path().display()
    );
    let config = Config::from_toml(&text, &file).expect("valid");
    let parsed = Cli::try_parse_from(["vibectl-edge", "serve"]).expect("args");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        cli::run(parsed.command, config, CancellationToken::new()),
    )
    .await
    .expect("failed in time")
    .expect_err("no CA");
    assert!(
        err.to_string()
            .contains(&format!("ACME directory URL {url} did not answer")),
        "{err}"
    );
}

#[test]
fn challenge_values_and_every_flag_are_offered() {
    let bad = Cli::try_parse_from(["vibectl-edge", "serve-acme", "--challenge", "dns-01"])
        .expect_err("dns-01 is not offered");
    assert!(bad.to_string().contains("tls-alpn-01"), "{bad}");
    let help = Cli::try_parse_from(["vibectl-edge", "serve-acme", "--help"])
        .expect_err("help")
        .to_string();
    for flag in [
        "--email",
        "--domain",
        "--directory-url",
        "--staging",
        "--challenge",
        "--acme-ca-file",
        "--cache-dir",
        "--ephemeral-cache",
        "--http-listen",
        "--https-port",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve-acme --help");
    }
}
