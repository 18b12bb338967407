//! `testssl.sh` (Debian package `testssl.sh`, command `testssl`; scripts/test
//! installs it) against the edge on 127.0.0.1: protocols, cipher
//! categories, forward secrecy and vulnerabilities, with JSON output. No
//! finding may be MEDIUM, HIGH or CRITICAL. The summary lines land in
//! `target/testssl-summary.txt`. Bounded to 3 minutes (about 1 here).
//!
//! Set `VIBECTL_SKIP_TESTSSL=1` to skip it where testssl cannot be installed.

use crate::tls_common;

use serde_json::Value;
use std::{path::PathBuf, process::Stdio, time::Duration};
use tls_common::{private_ca, private_ca_stack};

const TESTSSL_TIMEOUT: Duration = Duration::from_secs(180);
const BAD: [&str; 3] = ["MEDIUM", "HIGH", "CRITICAL"];

fn summary_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            tests
                .parent()
                .map_or(tests.clone(), |root| root.join("target"))
        });
    target.join("testssl-summary.txt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_medium_or_worse() {
    if std::env::var_os("VIBECTL_SKIP_TESTSSL").is_some() {
        eprintln!("VIBECTL_SKIP_TESTSSL is set: not running testssl");
        return;
    }
    let ca = private_ca();
    let stack = private_ca_stack(ca.path(), "").await;
    let out = tempfile::tempdir().expect("tempdir");
    let json = out.path().join("testssl.json");
    let mut command = tokio::process::Command::new("testssl");
    command
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--fast",
            "--sneaky",
            "--nodns",
            "none",
            "--openssl-timeout",
            "5",
            "--connect-timeout",
            "5",
            "--protocols",
            "--std",
            "--fs",
            "--vulnerable",
            "--jsonfile",
        ])
        .arg(&json)
        .arg(stack.edge_addr.to_string())
        .current_dir(out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let run = tokio::time::timeout(TESTSSL_TIMEOUT, command.output())
        .await
        .expect("testssl finished within 3 minutes")
        .expect(
            "testssl runs (scripts/test installs the Debian package testssl.sh; \
             VIBECTL_SKIP_TESTSSL=1 skips this test)",
        );
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no JSON ({e}); its output:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    });
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl JSON");
    let field = |f: &Value, key: &str| f[key].as_str().unwrap_or("").to_owned();

    let mut summary = vec![format!(
        "testssl {} against vibectl-edge on {} ({} findings, {:.0?}):",
        "--protocols --std --fs --vulnerable --fast",
        stack.edge_addr,
        findings.len(),
        elapsed
    )];
    for f in &findings {
        let severity = field(f, "severity");
        if severity == "DEBUG" {
            continue;
        }
        summary.push(format!(
            "{:<28} {:<8} {}",
            field(f, "id"),
            severity,
            field(f, "finding")
        ));
    }
    let summary = summary.join("\n") + "\n";
    let path = summary_path();
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&path, &summary).expect("write the summary");
    eprintln!("{summary}(written to {})", path.display());

    let bad: Vec<_> = findings
        .iter()
        .filter(|f| BAD.contains(&field(f, "severity").as_str()))
        .map(|f| {
            format!(
                "{} {}: {}",
                field(f, "severity"),
                field(f, "id"),
                field(f, "finding")
            )
        })
        .collect();
    assert!(bad.is_empty(), "testssl findings:\n{}", bad.join("\n"));
    // It really tested the edge: TLS 1.3 offered, TLS 1.1 and 1.0 not.
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| field(f, "id") == id)
            .map(|f| field(f, "finding"))
            .unwrap_or_else(|| panic!("no `{id}` finding in:\n{summary}"))
    };
    assert!(finding("TLS1_3").contains("offered"), "{summary}");
    assert!(finding("TLS1_1").contains("not offered"), "{summary}");
    assert!(finding("TLS1").contains("not offered"), "{summary}");
    stack.shutdown().await;
}
