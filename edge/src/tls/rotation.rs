//! Certificate rotation without dropping a connection, for `[tls.files]`,
//! `serve-custom` and `serve-ca`: watch the certificate and key, and when
//! they change, validate the new pair and swap it into the
//! [`CertResolver`] for new handshakes; live connections keep the
//! certificate they negotiated.
//!
//! - The files' directories are watched ([`FileWatch`]: Kubernetes
//!   Secret swaps and renames are seen, reads are not).
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

use crate::{
    file_watch::FileWatch,
    tls::{CertResolver, ServedCert, TlsError, files},
};
use sha2::{Digest, Sha256};
use std::{
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};
use tokio::{
    sync::watch,
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
    #[cfg(any(test, feature = "test-support"))]
    status: watch::Receiver<RotationStatus>,
    task: JoinHandle<()>,
}

impl Rotation {
    /// Follows what the rotation does: `status().wait_for(|s| s.swaps > 0)`.
    #[cfg(any(test, feature = "test-support"))]
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
    let files = [pair.cert_file.as_path(), pair.key_file.as_path()];
    let watch = FileWatch::start(&files, |_| true).map_err(|e| TlsError::Watch {
        path: e.path,
        message: e.source.to_string(),
    })?;
    tracing::info!(
        cert = %pair.cert_file.display(),
        key = %pair.key_file.display(),
        recheck = ?interval,
        "TLS: watching the certificate and key for rotation"
    );
    let (status_tx, status) = watch::channel(RotationStatus::default());
    // Only tests follow the rotation's status.
    #[cfg(not(any(test, feature = "test-support")))]
    drop(status);
    let rotator = Rotator {
        pair,
        resolver: Arc::downgrade(resolver),
        last_seen: None,
        status: status_tx,
    };
    let task = tokio::spawn(rotator.run(watch, interval, shutdown));
    Ok(Rotation {
        #[cfg(any(test, feature = "test-support"))]
        status,
        task,
    })
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
        // Kept for as long as the loop runs; dropping it unwatches.
        mut watch: FileWatch,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = (!interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        // The files may have changed between loading and watching them.
        let mut alive = self.on_change(&mut watch, &shutdown).await;
        while alive {
            let tick = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            alive = tokio::select! {
                _ = shutdown.cancelled() => false,
                () = watch.changed() => {
                    watch.settle(DEBOUNCE, MAX_DEBOUNCE).await;
                    self.on_change(&mut watch, &shutdown).await
                }
                _ = tick => {
                    tracing::debug!("TLS: periodic re-check of the certificate files");
                    self.on_change(&mut watch, &shutdown).await
                }
            };
        }
        tracing::debug!("TLS: certificate rotation stopped");
    }

    /// Checks the files and acts; returns false once the rotation should stop.
    async fn on_change(&mut self, watch: &mut FileWatch, shutdown: &CancellationToken) -> bool {
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
                    changed = watch.changed_within(SETTLE) => changed,
                };
            if changed {
                watch.settle(DEBOUNCE, MAX_DEBOUNCE).await;
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

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
