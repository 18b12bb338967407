//! Certificate rotation under load: clients keep calling over a connection
//! made before the rotation and over a new connection per call while the
//! server certificate files are replaced (atomically, as `ca
//! create-server-cert --force` does); no call fails, and new handshakes
//! present the new certificate. Files replaced with a broken pair (the key
//! of another certificate; garbage) are refused and the previous
//! certificate keeps serving.

use crate::tls_common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use tls_common::{bundle, channel, hosts, private_ca, private_ca_stack, served_fingerprint};
use tokio::sync::watch;
use vibectl_edge::tls::{RotationStatus, WatchedPair, ca, store};
use vibectl_proto::{GetServerInfoRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient};
use vibectl_tests::harness::{WAIT, authed};

/// Successes and failures of one load loop.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: u64,
    failed: u64,
}

/// Calls `GetServerInfo` until `stop`, over one channel (`fresh = false`)
/// or a new connection per call (`fresh = true`), publishing its tally.
fn load(
    addr: std::net::SocketAddr,
    trust: std::path::PathBuf,
    token: String,
    fresh: bool,
    stop: Arc<AtomicBool>,
) -> (watch::Receiver<Tally>, tokio::task::JoinHandle<Vec<String>>) {
    let (tx, rx) = watch::channel(Tally::default());
    let task = tokio::spawn(async move {
        let mut errors = Vec::new();
        let mut shared: Option<tonic::transport::Channel> = None;
        while !stop.load(Ordering::Acquire) {
            let result = async {
                let channel = match (&shared, fresh) {
                    (Some(channel), false) => channel.clone(),
                    _ => {
                        let channel = channel(addr, &trust, None)
                            .await
                            .map_err(|e| format!("connect: {e:?}"))?;
                        if !fresh {
                            shared = Some(channel.clone());
                        }
                        channel
                    }
                };
                let mut client = VibectlLlmProxyClient::new(channel);
                tokio::time::timeout(
                    WAIT,
                    client.get_server_info(authed(GetServerInfoRequest {}, &token)),
                )
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|status| format!("{status:?}"))
            }
            .await;
            tx.send_modify(|tally| match &result {
                Ok(_) => tally.ok += 1,
                Err(_) => tally.failed += 1,
            });
            if let Err(error) = result {
                errors.push(error);
            }
        }
        errors
    });
    (rx, task)
}

/// Waits (bounded) until `tally` counted `more` successes beyond now.
async fn progress(tally: &mut watch::Receiver<Tally>, more: u64, what: &str) {
    let target = tally.borrow().ok + more;
    tokio::time::timeout(WAIT, tally.wait_for(|t| t.ok >= target))
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {WAIT:?}"))
        .expect("load task alive");
}

async fn rotation_reaches(
    status: &mut watch::Receiver<RotationStatus>,
    what: &str,
    done: impl FnMut(&RotationStatus) -> bool,
) -> RotationStatus {
    tokio::time::timeout(WAIT, status.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
        .expect("rotation alive")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_failed_call() {
    let dir = private_ca();
    let trust = bundle(dir.path());
    // The edge watches the pair it serves, as `serve-ca` does (file events
    // only: no periodic re-check).
    let stack = private_ca_stack(dir.path(), "reload_interval = \"0s\"").await;
    let resolver = stack.cert_resolver.clone().expect("tls");
    let pair = WatchedPair {
        cert_file: dir.path().join(ca::files::SERVER_CRT),
        key_file: dir.path().join(ca::files::SERVER_KEY),
    };
    let mut status = stack
        .rotation()
        .expect("the edge rotates private-CA certificates");
    rotation_reaches(&mut status, "initial check", |s| s.checks >= 1).await;
    let first = served_fingerprint(stack.edge_addr, &trust).await;

    let stop = Arc::new(AtomicBool::new(false));
    let token = stack.token("load");
    let (mut kept, kept_task) = load(
        stack.edge_addr,
        trust.clone(),
        token.clone(),
        false,
        stop.clone(),
    );
    let (mut fresh, fresh_task) = load(stack.edge_addr, trust.clone(), token, true, stop.clone());
    progress(&mut kept, 5, "existing connection before rotation").await;
    progress(&mut fresh, 5, "new connections before rotation").await;

    // 1. Re-issue: key, then certificate, each renamed into place.
    let reissued = ca::create_server_cert(dir.path(), &hosts(), 30, true).expect("re-issue");
    assert_ne!(reissued.info.sha256, first);
    let s = rotation_reaches(&mut status, "swap", |s| s.swaps == 1).await;
    assert_eq!(
        s.refusals, 0,
        "a rotation between two renames is not refused"
    );
    assert_eq!(
        served_fingerprint(stack.edge_addr, &trust).await,
        reissued.info.sha256,
        "new handshakes present the new certificate"
    );
    assert_eq!(
        resolver.served().expect("served").sha256,
        reissued.info.sha256
    );
    progress(&mut kept, 5, "existing connection after rotation").await;
    progress(&mut fresh, 5, "new connections after rotation").await;

    // 2. A pair that does not belong together: the key of another certificate.
    let other = private_ca();
    let other_key = store::read(&other.path().join(ca::files::SERVER_KEY)).expect("read");
    let good_key = store::read(&pair.key_file).expect("read");
    store::write_key(&pair.key_file, &other_key).expect("write");
    let s = rotation_reaches(&mut status, "refuse the mismatched key", |s| {
        s.refusals == 1
    })
    .await;
    let reason = s.last_refusal.expect("reason");
    assert!(reason.contains("does not match"), "{reason}");
    progress(&mut fresh, 5, "new connections with a broken pair on disk").await;
    assert_eq!(
        served_fingerprint(stack.edge_addr, &trust).await,
        reissued.info.sha256,
        "the previous certificate keeps serving"
    );

    // 3. Garbage instead of the certificate (key restored).
    store::write_key(&pair.key_file, &good_key).expect("restore");
    store::write_cert(
        &pair.cert_file,
        "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
    )
    .expect("garbage");
    let s = rotation_reaches(&mut status, "refuse garbage", |s| s.refusals == 2).await;
    let reason = s.last_refusal.expect("reason");
    assert!(reason.contains("server.crt"), "{reason}");
    progress(&mut kept, 5, "existing connection with garbage on disk").await;
    progress(&mut fresh, 5, "new connections with garbage on disk").await;
    assert_eq!(
        served_fingerprint(stack.edge_addr, &trust).await,
        reissued.info.sha256
    );

    // 4. A good pair again is picked up.
    let third = ca::create_server_cert(dir.path(), &hosts(), 30, true).expect("re-issue");
    rotation_reaches(&mut status, "second swap", |s| s.swaps == 2).await;
    assert_eq!(
        served_fingerprint(stack.edge_addr, &trust).await,
        third.info.sha256
    );
    progress(&mut fresh, 5, "new connections after the second rotation").await;

    stop.store(true, Ordering::Release);
    let kept_errors = tokio::time::timeout(WAIT, kept_task)
        .await
        .expect("stops")
        .expect("task");
    let fresh_errors = tokio::time::timeout(WAIT, fresh_task)
        .await
        .expect("stops")
        .expect("task");
    let (kept, fresh) = (*kept.borrow(), *fresh.borrow());
    assert!(
        kept_errors.is_empty() && fresh_errors.is_empty(),
        "failed calls: existing {kept_errors:?}, new {fresh_errors:?}"
    );
    assert_eq!(kept.failed + fresh.failed, 0);
    assert!(kept.ok >= 20 && fresh.ok >= 25, "{kept:?} {fresh:?}");
    eprintln!(
        "rotation under load: {} calls on the existing connection, {} on new connections, 0 failed",
        kept.ok, fresh.ok
    );
    stack.shutdown().await;
}
