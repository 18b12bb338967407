//! Listeners are bound before anything is written: `serve` and `serve-acme`
//! on a port that is taken fail with the address named, and leave the
//! state directory as it was (no certificates, no JWT secret, no ACME
//! cache). Run through the CLI as the binary does (`Cli::try_parse_from` →
//! `cli::run`).

use clap::Parser;
use std::{path::Path, time::Duration};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;
use vibectl_edge::cli::{self, Cli};

/// Runs `vibectl-edge ARGS…` with `state` as the state directory and no
/// JWT secret anywhere (one would be generated); returns its error.
async fn run_error(state: &Path, args: &[&str]) -> String {
    let mut argv = vec!["vibectl-edge"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let mut config = Config::default();
    config.edge.state_dir = Some(state.to_owned());
    let shutdown = CancellationToken::new();
    let run = cli::run(parsed.command, config, shutdown.clone());
    let result = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| {
            shutdown.cancel();
            panic!("{argv:?} started instead of failing")
        });
    result.map_or_else(|e| format!("{e:#}"), |()| panic!("{argv:?} succeeded"))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_taken_port_fails_the_start_before_any_file_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let cases: [&[&str]; 4] = [
        &["serve", "--listen", &port, "--admin-listen", "127.0.0.1:0"],
        &["serve", "--listen", "127.0.0.1:0", "--admin-listen", &port],
        &[
            "serve-acme",
            "--listen",
            &port,
            "--admin-listen",
            "127.0.0.1:0",
            "--email",
            "ops@example.com",
            "--domain",
            "proxy.example.com",
        ],
        &[
            "serve-acme",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--http-listen",
            &port,
            "--challenge",
            "http-01",
            "--email",
            "ops@example.com",
            "--domain",
            "proxy.example.com",
        ],
    ];
    for args in cases {
        let state = tempfile::tempdir().expect("tempdir");
        let error = run_error(state.path(), args).await;
        assert!(
            error.contains(&format!("cannot listen on {port}")),
            "{args:?}: {error}"
        );
        assert_eq!(
            entries(state.path()),
            Vec::<String>::new(),
            "{args:?} wrote files before binding"
        );
    }
}
