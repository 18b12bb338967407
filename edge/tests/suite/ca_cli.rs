//! `vibectl-edge ca …` as an operator (or an init container) runs it: the
//! built binary, a temporary directory, no configuration file.

use crate::binary::{edge, mode};
use std::{
    path::Path,
    process::{Command, Output},
};

fn run(state: &Path, args: &[&str]) -> Output {
    edge(state).args(args).output().expect("run vibectl-edge")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `AB:CD:…` fingerprint on the line starting with `label`.
fn fingerprint_after(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
}

#[test]
fn init_twice_keeps_the_ca_and_prints_what_to_publish() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    let first = run(tmp.path(), &["ca", "init", "--dir", d]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(text.contains("created a new CA"), "{text}");
    assert!(text.contains(&format!("{d}/ca-bundle.crt")), "{text}");
    assert!(text.contains("move it offline"), "{text}");
    let root = fingerprint_after(&text, "root CA SHA-256:");
    assert_eq!(root.len(), 95, "{root}");
    fingerprint_after(&text, "intermediate CA SHA-256:");
    // Modes: directory 0700, keys 0600.
    assert_eq!(mode(&dir), 0o700);
    for key in ["root-ca.key", "intermediate-ca.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&dir.join("ca-bundle.crt")), 0o644);
    let bundle = std::fs::read(dir.join("ca-bundle.crt")).expect("bundle");

    // An init container runs again after a pod restart: a no-op, exit 0.
    let second = run(tmp.path(), &["ca", "init", "--dir", d]);
    assert!(second.status.success(), "{}", stderr(&second));
    let text = stdout(&second);
    assert!(
        text.contains("already exists") && text.contains("kept it"),
        "{text}"
    );
    assert_eq!(fingerprint_after(&text, "root CA SHA-256:"), root);
    assert_eq!(
        std::fs::read(dir.join("ca-bundle.crt")).expect("bundle"),
        bundle
    );

    // The fingerprint is the one openssl computes from the root.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.join("root-ca.crt"))
        .output()
        .expect("openssl");
    assert!(stdout(&out).contains(&root), "{}", stdout(&out));

    // `bundle` prints the bundle (the image has no `cat`).
    let printed = run(tmp.path(), &["ca", "bundle", "--dir", d]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert_eq!(printed.stdout, bundle);
}

#[test]
fn a_partial_ca_is_an_error_and_force_replaces_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    assert!(
        run(tmp.path(), &["ca", "init", "--dir", d])
            .status
            .success()
    );
    std::fs::remove_file(dir.join("intermediate-ca.crt")).expect("rm");
    let partial = run(tmp.path(), &["ca", "init", "--dir", d]);
    assert!(!partial.status.success());
    let err = stderr(&partial);
    assert!(
        err.contains("incomplete CA")
            && err.contains("intermediate-ca.crt")
            && err.contains("--force"),
        "{err}"
    );
    let forced = run(tmp.path(), &["ca", "init", "--dir", d, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stdout(&forced).contains("REPLACED"), "{}", stdout(&forced));
}

#[test]
fn create_without_init_says_what_to_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("ca");
    let d = d.to_str().expect("utf-8");
    for args in [
        vec!["ca", "create-server-cert", "--dir", d, "localhost"],
        vec!["ca", "create-client-cert", "--dir", d, "alice"],
        vec!["ca", "bundle", "--dir", d],
    ] {
        let out = run(tmp.path(), &args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("vibectl-edge ca init --dir {d}")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn server_and_client_certs_respect_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    assert!(
        run(tmp.path(), &["ca", "init", "--dir", d])
            .status
            .success()
    );
    let server = |extra: &[&str]| {
        let mut args = vec!["ca", "create-server-cert", "--dir", d];
        args.extend_from_slice(extra);
        run(tmp.path(), &args)
    };
    let first = server(&["proxy.example.com", "10.0.0.7"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("names:               proxy.example.com, 10.0.0.7"));
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    let cert = std::fs::read(dir.join("server.crt")).expect("cert");
    // The same names again (an init container re-run): kept, exit 0.
    let again = server(&["10.0.0.7", "PROXY.example.com"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("kept the existing"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read(dir.join("server.crt")).expect("cert"), cert);
    // Other names: refused without --force, nothing written.
    let other = server(&["other.example.com"]);
    assert!(!other.status.success());
    assert!(stderr(&other).contains("--force"), "{}", stderr(&other));
    assert_eq!(std::fs::read(dir.join("server.crt")).expect("cert"), cert);
    let forced = server(&["other.example.com", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(std::fs::read(dir.join("server.crt")).expect("cert"), cert);
    // The whole chain verifies with the bundle alone.
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca-bundle.crt"))
        .arg(dir.join("server.crt"))
        .output()
        .expect("openssl");
    assert!(verify.status.success(), "{}", stderr(&verify));

    let client = |extra: &[&str]| {
        let mut args = vec!["ca", "create-client-cert", "--dir", d, "alice"];
        args.extend_from_slice(extra);
        run(tmp.path(), &args)
    };
    let alice = client(&[]);
    assert!(alice.status.success(), "{}", stderr(&alice));
    assert_eq!(mode(&dir.join("clients")), 0o700);
    assert_eq!(mode(&dir.join("clients/alice.key")), 0o600);
    let again = client(&[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert!(client(&["--force"]).status.success());
    let bad = run(
        tmp.path(),
        &["ca", "create-client-cert", "--dir", d, "../evil"],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("../evil"), "{}", stderr(&bad));
}

#[test]
fn status_table_and_check_expiry_exit_codes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    assert!(
        run(tmp.path(), &["ca", "init", "--dir", d])
            .status
            .success()
    );
    let s = run(
        tmp.path(),
        &[
            "ca",
            "create-server-cert",
            "--dir",
            d,
            "--days",
            "10",
            "localhost",
        ],
    );
    assert!(s.status.success(), "{}", stderr(&s));
    assert!(
        run(tmp.path(), &["ca", "create-client-cert", "--dir", d, "bob"])
            .status
            .success()
    );

    let status = run(tmp.path(), &["ca", "status", "--dir", d]);
    assert!(status.status.success(), "{}", stderr(&status));
    let table = stdout(&status);
    let header = table.lines().next().expect("header");
    for column in [
        "FILE",
        "SUBJECT",
        "ISSUER",
        "SANS",
        "NOT AFTER",
        "DAYS LEFT",
    ] {
        assert!(header.contains(column), "{table}");
    }
    for (file, subject) in [
        ("root-ca.crt", "vibectl LLM proxy root CA"),
        ("intermediate-ca.crt", "vibectl LLM proxy intermediate CA"),
        ("server.crt", "localhost"),
        ("clients/bob.crt", "bob"),
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("no row for {file}:\n{table}"));
        assert!(row.contains(subject), "{row}");
    }
    assert!(
        table.contains("SERIAL") && table.contains("SHA-256"),
        "{table}"
    );
    // Every certificate's fingerprint is listed.
    assert_eq!(
        table
            .lines()
            .filter(|l| l.matches(':').count() >= 31)
            .count(),
        4,
        "{table}"
    );

    // The server certificate expires within 30 days: exit non-zero, listed.
    let soon = run(
        tmp.path(),
        &["ca", "check-expiry", "--dir", d, "--days", "30"],
    );
    assert!(!soon.status.success());
    assert!(stdout(&soon).contains("server.crt"), "{}", stdout(&soon));
    assert!(!stdout(&soon).contains("root-ca.crt"), "{}", stdout(&soon));
    assert!(
        stderr(&soon).contains("1 certificate(s)"),
        "{}",
        stderr(&soon)
    );
    // Nothing within 5 days: exit 0.
    let fine = run(
        tmp.path(),
        &["ca", "check-expiry", "--dir", d, "--days", "5"],
    );
    assert!(fine.status.success(), "{}", stderr(&fine));
    assert!(stdout(&fine).starts_with("OK"), "{}", stdout(&fine));
    // No CA at all: an error, not "OK".
    let none = run(
        tmp.path(),
        &["ca", "check-expiry", "--dir", "/nonexistent/ca"],
    );
    assert!(!none.status.success());
}
