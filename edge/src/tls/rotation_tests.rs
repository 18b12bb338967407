use super::*;
use crate::tls::{ca, files, store};
use std::{os::unix::fs::symlink, path::Path};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

fn new_ca(dir: &Path) {
    ca::init(dir, ca::Validity::default(), false).expect("init");
    ca::create_server_cert(dir, &["localhost".into()], 30, false).expect("server");
}

async fn wait_for(
    rotation: &Rotation,
    what: &str,
    done: impl FnMut(&RotationStatus) -> bool,
) -> RotationStatus {
    let mut status = rotation.status();
    tokio::time::timeout(WAIT, status.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
        .expect("rotation alive")
        .clone()
}

fn start(pair: &WatchedPair) -> (Arc<CertResolver>, Rotation, CancellationToken) {
    let key = files::load(&pair.cert_file, &pair.key_file).expect("load");
    let resolver = Arc::new(CertResolver::new(key));
    let token = CancellationToken::new();
    // No periodic re-check: every reaction below comes from the watch.
    let rotation = spawn(pair.clone(), &resolver, Duration::ZERO, token.clone()).expect("spawn");
    (resolver, rotation, token)
}

#[tokio::test]
async fn a_reissued_certificate_is_swapped_in_and_broken_ones_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    new_ca(tmp.path());
    let pair = WatchedPair {
        cert_file: tmp.path().join(ca::files::SERVER_CRT),
        key_file: tmp.path().join(ca::files::SERVER_KEY),
    };
    let (resolver, rotation, token) = start(&pair);
    wait_for(&rotation, "initial check", |s| s.checks >= 1).await;
    let first = resolver.served().expect("served");

    // Re-issue (atomic renames of key, then certificate).
    let leaf = ca::create_server_cert(tmp.path(), &["localhost".into()], 30, true).expect("force");
    let status = wait_for(&rotation, "swap", |s| s.swaps == 1).await;
    assert_eq!(status.refusals, 0, "no refusal between the two renames");
    let second = resolver.served().expect("served");
    assert_ne!(second.sha256, first.sha256);
    assert_eq!(second.sha256, leaf.info.sha256);

    // The key of another certificate: refused, the second keeps serving.
    let other = tempfile::tempdir().expect("tempdir");
    new_ca(other.path());
    let other_key = store::read(&other.path().join(ca::files::SERVER_KEY)).expect("read");
    store::write_key(&pair.key_file, &other_key).expect("write");
    let status = wait_for(&rotation, "refusal", |s| s.refusals == 1).await;
    let reason = status.last_refusal.expect("reason");
    assert!(
        reason.contains("does not match") && reason.contains("server.key"),
        "{reason}"
    );
    assert_eq!(resolver.served().expect("served"), second);

    // Garbage as the certificate: refused, naming the file.
    store::write_cert(&pair.cert_file, "not a certificate\n").expect("write");
    let status = wait_for(&rotation, "second refusal", |s| s.refusals == 2).await;
    let reason = status.last_refusal.expect("reason");
    assert!(reason.contains("server.crt"), "{reason}");
    assert_eq!(resolver.served().expect("served"), second);

    token.cancel();
    tokio::time::timeout(WAIT, rotation.stopped())
        .await
        .expect("stopped");
}

/// Kubernetes mounts a Secret as `tls.crt -> ..data/tls.crt`, `..data ->
/// ..2024_01_01_xxx/`, and updates it by renaming a new `..data` symlink
/// over the old one: the files' own paths never change.
#[tokio::test]
async fn a_kubernetes_style_symlink_swap_is_seen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = tmp.path().join("mount");
    std::fs::create_dir(&mount).expect("mount");
    let publish = |version: &str, from: &Path| {
        let dir = mount.join(version);
        std::fs::create_dir(&dir).expect("version dir");
        std::fs::copy(from.join(ca::files::SERVER_CRT), dir.join("tls.crt")).expect("crt");
        std::fs::copy(from.join(ca::files::SERVER_KEY), dir.join("tls.key")).expect("key");
        let tmp_link = mount.join("..data_tmp");
        symlink(version, &tmp_link).expect("symlink");
        std::fs::rename(&tmp_link, mount.join("..data")).expect("swap");
    };
    let one = tempfile::tempdir().expect("tempdir");
    new_ca(one.path());
    publish("..v1", one.path());
    symlink("..data/tls.crt", mount.join("tls.crt")).expect("link");
    symlink("..data/tls.key", mount.join("tls.key")).expect("link");
    let pair = WatchedPair {
        cert_file: mount.join("tls.crt"),
        key_file: mount.join("tls.key"),
    };
    let (resolver, rotation, token) = start(&pair);
    wait_for(&rotation, "initial check", |s| s.checks >= 1).await;
    let before = resolver.served().expect("served");

    let two = tempfile::tempdir().expect("tempdir");
    new_ca(two.path());
    publish("..v2", two.path());
    wait_for(&rotation, "swap", |s| s.swaps == 1).await;
    let after = resolver.served().expect("served");
    assert_ne!(after.sha256, before.sha256);
    token.cancel();
    tokio::time::timeout(WAIT, rotation.stopped())
        .await
        .expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn the_periodic_recheck_finds_a_change_without_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    new_ca(tmp.path());
    let cert = tmp.path().join(ca::files::SERVER_CRT);
    let key = tmp.path().join(ca::files::SERVER_KEY);
    let loaded = files::load(&cert, &key).expect("load");
    let resolver = Arc::new(CertResolver::new(loaded));
    let before = resolver.served().expect("served");
    // Drive the rotator directly, without a watcher: only the ticker fires.
    let (status_tx, mut status) = watch::channel(RotationStatus::default());
    let rotator = Rotator {
        pair: WatchedPair {
            cert_file: cert.clone(),
            key_file: key.clone(),
        },
        resolver: Arc::downgrade(&resolver),
        last_seen: None,
        status: status_tx,
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(rotator.run(FileWatch::none(), Duration::from_secs(60), token.clone()));
    status.wait_for(|s| s.checks == 1).await.expect("initial");
    ca::create_server_cert(tmp.path(), &["localhost".into()], 30, true).expect("force");
    // Paused clock: the 60 s tick comes as soon as the runtime is idle.
    status
        .wait_for(|s| s.swaps == 1)
        .await
        .expect("periodic swap");
    assert_ne!(resolver.served().expect("served").sha256, before.sha256);
    // Dropping the resolver (the edge is gone) ends the rotation.
    drop(resolver);
    task.await.expect("ended");
}
