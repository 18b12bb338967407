//! The verifier's background work: re-read the key set and revocation
//! files when the file system reports a change in their directories
//! (notify) and every `jwt.reload_interval` anyway (events can be missed:
//! network file systems, ConfigMap symlink swaps); poll Redis revocations.
//! Each task holds only a weak reference to the verifier's state (anything
//! [`Reloadable`]) and ends when the verifier is dropped; every wait is
//! bounded.

use crate::auth::revocation::{REDIS_POLL, RedisTarget, Revocations};
use notify::{RecursiveMode, Watcher};
use std::{
    path::{Path, PathBuf},
    sync::Weak,
    time::Duration,
};
use tokio::sync::mpsc;

/// Events closer together than this cause one re-read.
const DEBOUNCE: Duration = Duration::from_millis(50);

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
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in files {
        if let Some(dir) = path.and_then(Path::parent).filter(|d| d.is_dir())
            && !dirs.iter().any(|d| d == dir)
        {
            dirs.push(dir.to_owned());
        }
    }
    let interval = interval.max(Duration::from_millis(50));
    runtime.spawn(watch_files(state.clone(), dirs, interval));
    if let Some(target) = redis {
        runtime.spawn(poll_redis(state, target));
    }
    true
}

async fn watch_files<T: Reloadable>(shared: Weak<T>, dirs: Vec<PathBuf>, interval: Duration) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    // The watcher lives as long as this task; without one, the interval
    // alone picks changes up.
    let _watcher = if dirs.is_empty() {
        None
    } else {
        watcher(&dirs, tx)
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            Some(()) = rx.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // File reads are small and rare; do them off the async threads.
        let _ = tokio::task::spawn_blocking(move || shared.reload_files()).await;
    }
}

fn watcher(dirs: &[PathBuf], tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let on_event = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(on_event) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::debug!(%error, "no file watcher; re-checking on the interval only");
            return None;
        }
    };
    for dir in dirs {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::debug!(%error, dir = %dir.display(), "cannot watch; re-checking on the interval only");
        }
    }
    Some(watcher)
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
