//! Certificate rotation without dropping a connection, for `[tls.files]`,
//! `serve-custom` and `serve-ca`: watch the certificate and key, and when
//! they change, validate the new pair and swap it into the
//! [`CertResolver`] for new handshakes; live connections keep the
//! certificate they negotiated.
//!
//! - The *directories* are watched (notify), not the files: Kubernetes
//!   updates a mounted Secret by swapping a `..data` symlink, and tools
//!   replace files by renaming a new one over them; a watch on the old
//!   inode would see neither.
//! - Events are debounced (a quiet period of [`DEBOUNCE`]): a writer that
//!   replaces the key and then the certificate triggers one check.
//! - A slow periodic re-check (`tls.reload_interval`) is the fallback for
//!   file systems without notifications and for a watched directory that
//!   was itself replaced.
//! - A new pair is validated as at start-up ([`files::parse`]: the chain
//!   parses and is in order, the leaf is valid now, the key is the leaf's).
//!   An invalid pair is refused with a warning that names the file and the
//!   reason, and the old certificate keeps serving. A pair that fails while
//!   the files are still changing is re-checked once they are quiet for
//!   [`SETTLE`], so a writer between its two renames is not reported.
//! - Every swap is logged (info) with the new certificate's SHA-256
//!   fingerprint and expiry.

use crate::tls::{CertResolver, ServedCert, TlsError, files};
use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

/// Quiet period after a file event before the files are read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of events may postpone a check.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How long an invalid pair must stay unchanged before it is refused.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Re-checks of a pair that keeps changing before it is refused anyway.
const MAX_SETTLE_ROUNDS: u32 = 10;

/// The certificate and key files a rotation watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedPair {
    /// The PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// The PEM private key.
    pub key_file: PathBuf,
}

/// What a rotation has done so far (for tests and diagnostics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationStatus {
    /// Finished checks of the files (after events and periodic ones).
    pub checks: u64,
    /// New certificates swapped in.
    pub swaps: u64,
    /// New pairs refused (each distinct content counted once).
    pub refusals: u64,
    /// Why the last refused pair was refused.
    pub last_refusal: Option<String>,
}

/// A running rotation: stops when its shutdown token fires or the resolver
/// is dropped.
#[derive(Debug)]
pub struct Rotation {
    status: watch::Receiver<RotationStatus>,
    task: JoinHandle<()>,
}

impl Rotation {
    /// Follows what the rotation does: `status().wait_for(|s| s.swaps > 0)`.
    pub fn status(&self) -> watch::Receiver<RotationStatus> {
        self.status.clone()
    }

    /// Waits until the rotation task has ended (after its shutdown token
    /// fired).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the certificate rotation task failed");
        }
    }
}

/// Starts watching `pair` and swapping valid new versions into `resolver`;
/// `interval` is the periodic re-check (zero: none). Must run inside a
/// tokio runtime. Fails if a directory cannot be watched.
pub fn spawn(
    pair: WatchedPair,
    resolver: &Arc<CertResolver>,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<Rotation, TlsError> {
    let (events_tx, events) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => relevant(&event.kind),
            // A watcher error (queue overflow, …): a re-check is cheap.
            Err(_) => true,
        };
        if relevant {
            // Full means a check is already pending: that one will do.
            let _ = events_tx.try_send(());
        }
    })
    .map_err(|e| watch_error(&pair.cert_file, e))?;
    for dir in watched_dirs(&pair) {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(&dir, e))?;
    }
    tracing::info!(
        cert = %pair.cert_file.display(),
        key = %pair.key_file.display(),
        recheck = ?interval,
        "TLS: watching the certificate and key for rotation"
    );
    let (status_tx, status) = watch::channel(RotationStatus::default());
    let rotator = Rotator {
        pair,
        resolver: Arc::downgrade(resolver),
        last_seen: None,
        status: status_tx,
    };
    let task = tokio::spawn(rotator.run(events, watcher, interval, shutdown));
    Ok(Rotation { status, task })
}

fn watch_error(path: &Path, error: notify::Error) -> TlsError {
    TlsError::Watch {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

/// Reads (including the rotation's own) open and close-without-writing
/// events say nothing about new content.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The directories of the two files, once each.
fn watched_dirs(pair: &WatchedPair) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in [&pair.cert_file, &pair.key_file] {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// What one look at the files found.
enum Check {
    /// Same bytes as last time: nothing to do.
    Unchanged,
    /// Valid: swapped in, or already served.
    Done,
    /// Invalid: why, and a digest of the content that was refused.
    Invalid([u8; 32], String),
    /// The resolver is gone (the edge was dropped).
    ResolverGone,
}

struct Rotator {
    pair: WatchedPair,
    resolver: Weak<CertResolver>,
    /// Digest of the content last checked (valid or refused).
    last_seen: Option<[u8; 32]>,
    status: watch::Sender<RotationStatus>,
}

impl Rotator {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<()>,
        // Kept alive for as long as the loop runs; dropping it unwatches.
        _watcher: notify::RecommendedWatcher,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = (!interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        // The files may have changed between loading and watching them.
        let mut alive = self.on_change(&mut events, &shutdown).await;
        while alive {
            let tick = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            alive = tokio::select! {
                _ = shutdown.cancelled() => false,
                event = events.recv() => match event {
                    Some(()) => {
                        debounce(&mut events).await;
                        self.on_change(&mut events, &shutdown).await
                    }
                    None => false,
                },
                _ = tick => {
                    tracing::debug!("TLS: periodic re-check of the certificate files");
                    self.on_change(&mut events, &shutdown).await
                }
            };
        }
        tracing::debug!("TLS: certificate rotation stopped");
    }

    /// Checks the files and acts; returns false once the rotation should stop.
    async fn on_change(
        &mut self,
        events: &mut mpsc::Receiver<()>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut rounds = 0;
        loop {
            let check = self.check();
            let alive = !matches!(check, Check::ResolverGone);
            let Check::Invalid(digest, reason) = check else {
                self.status.send_modify(|s| s.checks += 1);
                return alive;
            };
            // A writer may be between its renames (new key, old
            // certificate): refuse only what stays unchanged for SETTLE.
            rounds += 1;
            let changed = rounds < MAX_SETTLE_ROUNDS
                && tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    event = tokio::time::timeout(SETTLE, events.recv()) => matches!(event, Ok(Some(()))),
                };
            if changed {
                debounce(events).await;
                continue;
            }
            self.refuse(digest, reason);
            self.status.send_modify(|s| s.checks += 1);
            return true;
        }
    }

    fn check(&mut self) -> Check {
        let Some(resolver) = self.resolver.upgrade() else {
            return Check::ResolverGone;
        };
        let (cert_file, key_file) = (&self.pair.cert_file, &self.pair.key_file);
        let read = files::read_bytes(cert_file)
            .and_then(|cert| files::read_bytes(key_file).map(|key| (cert, key)));
        let (cert_pem, key_pem) = match read {
            Ok(pair) => pair,
            Err(error) => return Check::Invalid([0; 32], error.to_string()),
        };
        let digest: [u8; 32] = Sha256::new()
            .chain_update(&cert_pem)
            .chain_update([0])
            .chain_update(&key_pem)
            .finalize()
            .into();
        if self.last_seen == Some(digest) {
            return Check::Unchanged;
        }
        let key = match files::parse(&cert_pem, &key_pem, cert_file, key_file) {
            Ok(key) => key,
            Err(error) => return Check::Invalid(digest, error.to_string()),
        };
        self.last_seen = Some(digest);
        if resolver.current().cert == key.cert {
            tracing::debug!("TLS: certificate files touched, content unchanged");
            return Check::Done;
        }
        resolver.swap(key);
        self.status.send_modify(|s| s.swaps += 1);
        match resolver.served() {
            Some(served) => tracing::info!(
                sha256 = %served.sha256,
                not_after = %served.not_after(),
                subject = %served.subject,
                cert = %cert_file.display(),
                "TLS: swapped in the new certificate (new handshakes get it; live connections keep theirs)"
            ),
            None => {
                tracing::info!(cert = %cert_file.display(), "TLS: swapped in the new certificate")
            }
        }
        Check::Done
    }

    fn refuse(&mut self, digest: [u8; 32], reason: String) {
        if self.last_seen == Some(digest) && digest != [0; 32] {
            return;
        }
        self.last_seen = Some(digest);
        let served = self.resolver.upgrade().and_then(|r| r.served());
        let (sha256, not_after) = served
            .as_ref()
            .map_or(("?".to_owned(), "?".to_owned()), |s: &ServedCert| {
                (s.sha256.clone(), s.not_after())
            });
        tracing::warn!(
            %reason,
            still_serving_sha256 = %sha256,
            still_serving_not_after = %not_after,
            "TLS: refusing the new certificate files; the previous certificate keeps serving"
        );
        self.status.send_modify(|s| {
            s.refusals += 1;
            s.last_refusal = Some(reason);
        });
    }
}

/// Waits until no event came for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]).
async fn debounce(events: &mut mpsc::Receiver<()>) {
    let deadline = Instant::now() + MAX_DEBOUNCE;
    while Instant::now() < deadline {
        match tokio::time::timeout(DEBOUNCE, events.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
