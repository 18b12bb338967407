//! `vibectl-edge serve-ca` as deployed: the built binary serves a private
//! CA's `server.crt`, logs the served fingerprint, and when `ca
//! create-server-cert --force` replaces the files, swaps the new
//! certificate in for new handshakes (logged, with the new fingerprint);
//! a broken file is refused and the previous certificate keeps serving.
//! Waits are on the binary's own JSON log lines, each bounded.

use rustls::{ClientConfig, RootCertStore, crypto::ring};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::Value;
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::mpsc,
};
use vibectl_edge::tls::inspect;

const WAIT: Duration = Duration::from_secs(15);

fn edge(state: &Path) -> Command {
    let mut cmd = crate::binary::edge(state);
    cmd.env(
        "VIBECTL_JWT_SECRET",
        "ca-serve-test-secret-0123456789abcdef",
    );
    cmd
}

fn ca(state: &Path, args: &[&str]) {
    let out = edge(state).arg("ca").args(args).output().expect("run");
    assert!(
        out.status.success(),
        "ca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fingerprint of the leaf a new TLS handshake presents.
async fn served(addr: &str, bundle: &Path) -> Result<String, std::io::Error> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(bundle).expect("bundle") {
        roots.add(ca.expect("ca")).expect("add");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")?;
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    Ok(inspect::fingerprint(&leaf))
}

fn leaf_fingerprint(dir: &Path) -> String {
    let pem = std::fs::read_to_string(dir.join("server.crt")).expect("read");
    inspect::describe_pem(&pem).expect("leaf").sha256
}

/// The next log line (JSON) whose message contains `message`.
async fn log_line(logs: &mut mpsc::UnboundedReceiver<Value>, message: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = logs.recv().await {
            if line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message))
            {
                return line;
            }
        }
        panic!("the edge exited before logging `{message}`");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{message}` log line within {WAIT:?}"))
}

#[tokio::test]
async fn serve_ca_serves_the_chain_and_rotates_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    ca(tmp.path(), &["init", "--dir", d]);
    ca(
        tmp.path(),
        &["create-server-cert", "--dir", d, "localhost", "127.0.0.1"],
    );
    let bundle = dir.join("ca-bundle.crt");
    let first = leaf_fingerprint(&dir);

    let mut child = tokio::process::Command::from(edge(tmp.path()))
        .args(["--log-format", "json", "serve-ca", "--ca-dir", d])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        // No core: TLS is all this test looks at.
        .args(["--core", "127.0.0.1:9"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve-ca");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut logs) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Value>(&line) {
                Ok(json) => {
                    let _ = tx.send(json);
                }
                Err(_) => eprintln!("edge: {line}"),
            }
        }
    });

    let serving = log_line(&mut logs, "TLS: serving certificate").await;
    assert_eq!(serving["fields"]["sha256"], first.as_str(), "{serving}");
    assert!(serving["fields"]["not_after"].is_string(), "{serving}");
    let listening = log_line(&mut logs, "edge listening").await;
    let addr = listening["fields"]["local"]
        .as_str()
        .expect("address")
        .to_owned();
    assert_eq!(served(&addr, &bundle).await.expect("handshake"), first);

    // Re-issue the server certificate the way an operator does.
    ca(
        tmp.path(),
        &[
            "create-server-cert",
            "--dir",
            d,
            "--force",
            "localhost",
            "127.0.0.1",
        ],
    );
    let second = leaf_fingerprint(&dir);
    assert_ne!(second, first);
    let swapped = log_line(&mut logs, "swapped in the new certificate").await;
    assert_eq!(swapped["level"], "INFO", "{swapped}");
    assert_eq!(swapped["fields"]["sha256"], second.as_str(), "{swapped}");
    assert_eq!(served(&addr, &bundle).await.expect("handshake"), second);

    // A broken certificate file: refused, the second keeps serving.
    std::fs::write(dir.join("server.crt"), "garbage\n").expect("write");
    let refused = log_line(&mut logs, "refusing the new certificate").await;
    assert_eq!(refused["level"], "WARN", "{refused}");
    let reason = refused["fields"]["reason"].as_str().expect("reason");
    assert!(reason.contains("server.crt"), "{refused}");
    assert_eq!(
        refused["fields"]["still_serving_sha256"],
        second.as_str(),
        "{refused}"
    );
    assert_eq!(served(&addr, &bundle).await.expect("handshake"), second);

    // SIGTERM: a clean exit.
    let pid = child.id().expect("pid").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_ca_without_a_server_certificate_says_what_to_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    let d = dir.to_str().expect("utf-8");
    ca(tmp.path(), &["init", "--dir", d]);
    let out = edge(tmp.path())
        .args(["serve-ca", "--ca-dir", d, "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("vibectl-edge ca create-server-cert --dir {d}")),
        "{err}"
    );
}
