//! The `vibectl-edge` binary as an operator runs it: exit 64 with the key
//! and file on a bad configuration, `init-config`, `generate-token`,
//! `generate-certs`.

use crate::binary::{edge, mode};
use vibectl_config::{Config, Secret};
use vibectl_edge::auth::TokenVerifier;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_config_exits_64_naming_key_and_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("broken.toml");
    std::fs::write(&file, "[edge]\nlisten_on = \"0.0.0.0:1\"\n").expect("write");
    let out = edge(tmp.path())
        .args(["--config", file.to_str().expect("utf-8"), "serve"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("broken.toml") && stderr.contains("listen_on"),
        "{stderr}"
    );
}

#[test]
fn init_config_writes_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("vibectl-proxy.toml");
    let arg = file.to_str().expect("utf-8");
    let out = edge(tmp.path())
        .args(["init-config", "--output", arg])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    Config::from_toml(&std::fs::read_to_string(&file).expect("read"), &file).expect("parses");
    let again = edge(tmp.path())
        .args(["init-config", "--output", arg])
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = edge(tmp.path())
        .args(["init-config", "--output", arg, "--force"])
        .output()
        .expect("run");
    assert!(forced.status.success());
}

#[test]
fn generate_token_to_stdout_or_to_a_private_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = edge(tmp.path())
        .args(["generate-token", "dev-user", "--expires-in", "12h"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    // The secret was generated and saved under the state dir; it verifies.
    let saved = std::fs::read_to_string(tmp.path().join("jwt-secret")).expect("saved secret");
    let config = Config::default();
    let verifier = TokenVerifier::new(&Secret::new(saved.trim()), &config.jwt);
    let claims = verifier.verify(&token).expect("valid");
    assert_eq!(claims.sub, "dev-user");
    assert!((claims.exp - claims.iat.expect("iat") - 12 * 3600).abs() <= 1);
    assert!(
        !text(&out.stderr).contains(saved.trim()),
        "the secret is never logged"
    );

    let file = tmp.path().join("dev.jwt");
    let out = edge(tmp.path())
        .args([
            "generate-token",
            "dev-user",
            "--output",
            file.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "no token on stdout with --output");
    let mode = mode(&file);
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).expect("read");
    assert!(verifier.verify(token.trim()).is_ok());
}

#[test]
fn generate_certs_prints_paths_and_fingerprint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = edge(tmp.path())
        .args(["generate-certs", "--hostname", "proxy.example.com"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let bundle = tmp.path().join("certs/ca-bundle.crt");
    assert!(bundle.exists());
    assert!(stdout.contains(bundle.to_str().expect("utf-8")), "{stdout}");
    assert!(stdout.contains("SHA-256 fingerprint:"), "{stdout}");
}

#[test]
fn bad_expires_in_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = edge(tmp.path())
        .args(["generate-token", "x", "--expires-in", "soon"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("30d"), "{}", text(&out.stderr));
}

#[test]
fn serve_flags_override_the_file() {
    use clap::Parser;
    use vibectl_edge::cli::{Cli, Command};
    let cli = Cli::try_parse_from([
        "vibectl-edge",
        "serve",
        "--listen",
        "127.0.0.1:1443",
        "--admin-listen",
        "127.0.0.1:1095",
        "--core",
        "unix:/run/core.sock",
        "--hostname",
        "a.example",
        "--hostname",
        "b.example",
    ])
    .expect("parses");
    let Command::Serve(args) = cli.command else {
        panic!("serve");
    };
    let mut config = Config::default();
    args.apply(&mut config);
    assert_eq!(config.edge.listen.to_string(), "127.0.0.1:1443");
    assert_eq!(config.edge.admin_listen.to_string(), "127.0.0.1:1095");
    assert_eq!(config.edge.core_address, "unix:/run/core.sock");
    assert_eq!(config.edge.hostnames, ["a.example", "b.example"]);
}
