//! The verifier's background work: re-read the key set and revocation
//! files when the file system reports a change in their directories
//! (notify) and every `jwt.reload_interval` anyway (events can be missed:
//! network file systems, ConfigMap symlink swaps); poll Redis revocations.
//! Each task holds only a weak reference to the verifier's state (anything
//! [`Reloadable`]) and ends when the verifier is dropped; every wait is
//! bounded.

use crate::{
    auth::revocation::{REDIS_POLL, RedisTarget, Revocations},
    file_watch::{self, FileWatch},
};
use std::{path::Path, sync::Weak, time::Duration};

/// Events closer together than this cause one re-read.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Longest a stream of events may postpone a re-read.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// The verifier's state, as its background work sees it.
pub(crate) trait Reloadable: Send + Sync + 'static {
    /// Re-reads the key set and revocation files (blocking file reads).
    fn reload_files(&self);
    /// The revocations the Redis poll refreshes.
    fn revocations(&self) -> &Revocations;
}

/// Spawns the tasks on the current runtime; false when there is none.
/// `files` are the files to watch (their directories are watched).
pub(crate) fn spawn<T: Reloadable>(
    state: Weak<T>,
    files: &[Option<&Path>],
    interval: Duration,
    redis: Option<RedisTarget>,
) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    // Files whose directory exists (a watch on a missing one fails).
    let files: Vec<&Path> = files
        .iter()
        .flatten()
        .copied()
        .filter(|f| f.parent().is_some_and(Path::is_dir))
        .collect();
    // Without a watcher, the interval alone picks changes up.
    let watch = match files.is_empty() {
        true => None,
        false => FileWatch::start(&files, |_| true)
            .inspect_err(|error| {
                tracing::debug!(%error, "re-checking the key set and revocation files on the interval only");
            })
            .ok(),
    };
    let interval = interval.max(Duration::from_millis(50));
    runtime.spawn(watch_files(state.clone(), watch, interval));
    if let Some(target) = redis {
        runtime.spawn(poll_redis(state, target));
    }
    true
}

async fn watch_files<T: Reloadable>(
    shared: Weak<T>,
    mut watch: Option<FileWatch>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = file_watch::changed(&mut watch) => {
                if let Some(watch) = watch.as_mut() {
                    watch.settle(DEBOUNCE, MAX_DEBOUNCE).await;
                }
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // File reads are small and rare; do them off the async threads.
        let _ = tokio::task::spawn_blocking(move || shared.reload_files()).await;
    }
}

async fn poll_redis<T: Reloadable>(shared: Weak<T>, target: RedisTarget) {
    let mut failing = false;
    let mut ticks = tokio::time::interval(REDIS_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match target.read().await {
            Ok(jtis) => {
                if failing {
                    tracing::info!(
                        revoked = jtis.len(),
                        "reading token revocations from Redis again"
                    );
                    failing = false;
                }
                shared.revocations().store_redis(jtis);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read token revocations from Redis; the last list read stays in force");
                    failing = true;
                }
            }
        }
    }
}
