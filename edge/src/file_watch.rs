//! The one way the edge watches files: the limits reload (the config
//! file), the verifier (key set and revocation files) and certificate
//! rotation (the certificate and key) all use [`FileWatch`].
//!
//! - The *directories* of the files are watched (notify), not the files:
//!   Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data`
//!   symlink, and editors and tools replace files by renaming a new one
//!   over them; a watch on the old inode would see neither.
//! - Reads say nothing about new content: open and close-without-writing
//!   events (the watchers' own reads among them) are dropped
//!   ([`content_event`]); a watcher error counts as a change (a re-check is
//!   cheap).
//! - Events are coalesced: a burst is one pending change, and
//!   [`FileWatch::settle`] waits for the directory to be quiet.
//!
//! Events can still be missed (network file systems, a watched directory
//! that was itself replaced): every user re-checks on an interval too.

use notify::{
    Event, EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::{sync::mpsc, time::Instant};

/// A directory could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", path.display())]
pub struct WatchError {
    /// The directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: notify::Error,
}

/// A watch on the directories of some files; dropping it unwatches.
#[derive(Debug)]
pub struct FileWatch {
    events: mpsc::Receiver<()>,
    /// `None`: nothing is watched and no event ever comes (tests drive the
    /// interval alone).
    _watcher: Option<notify::RecommendedWatcher>,
    /// Keeps the channel open when there is no watcher.
    _sender: Option<mpsc::Sender<()>>,
}

impl FileWatch {
    /// Watches the directories of `files` (each once) for content events
    /// that `wanted` accepts. Fails, naming the directory, if one cannot
    /// be watched.
    pub fn start(
        files: &[&Path],
        wanted: impl Fn(&Event) -> bool + Send + 'static,
    ) -> Result<Self, WatchError> {
        let (tx, events) = mpsc::channel::<()>(1);
        let dirs = directories(files);
        let on_event = move |event: notify::Result<Event>| {
            let changed = match &event {
                Ok(event) => content_event(&event.kind) && wanted(event),
                Err(_) => true,
            };
            if changed {
                // Full means a change is already pending: that one will do.
                let _ = tx.try_send(());
            }
        };
        let error = |path: &Path| {
            let path = path.to_owned();
            move |source| WatchError { path, source }
        };
        let first = dirs.first().map_or(Path::new("."), PathBuf::as_path);
        let mut watcher = notify::recommended_watcher(on_event).map_err(error(first))?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(error(dir))?;
        }
        Ok(Self {
            events,
            _watcher: Some(watcher),
            _sender: None,
        })
    }

    /// A watch that never reports anything.
    #[cfg(test)]
    pub fn none() -> Self {
        let (tx, events) = mpsc::channel(1);
        Self {
            events,
            _watcher: None,
            _sender: Some(tx),
        }
    }

    /// Waits for the next change.
    pub async fn changed(&mut self) {
        if self.events.recv().await.is_none() {
            // The watcher is gone: no change will ever come.
            std::future::pending::<()>().await;
        }
    }

    /// True when a change comes within `wait`.
    pub async fn changed_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.changed()).await.is_ok()
    }

    /// Waits until no change came for `quiet` (at most `max`), so a writer
    /// that replaces several files in turn causes one check.
    pub async fn settle(&mut self, quiet: Duration, max: Duration) {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            if !self.changed_within(quiet).await {
                return;
            }
        }
    }
}

/// Waits for the next change of `watch`, forever when there is none.
pub async fn changed(watch: &mut Option<FileWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether an event can mean new content: not an open, nor a close
/// without writing.
pub fn content_event(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The directories of `files`, each once (`.` for a bare file name).
fn directories(files: &[&Path]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in files {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_events_count() {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        assert!(content_event(&EventKind::Create(CreateKind::File)));
        assert!(content_event(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(content_event(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!content_event(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!content_event(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
    }

    #[test]
    fn each_directory_once() {
        let dirs = directories(&[
            Path::new("/a/cert.pem"),
            Path::new("/a/key.pem"),
            Path::new("b.toml"),
        ]);
        assert_eq!(dirs, [PathBuf::from("/a"), PathBuf::from(".")]);
    }

    #[tokio::test]
    async fn a_write_is_seen_and_a_burst_settles() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("watched.toml");
        let mut watch = FileWatch::start(&[&file], |_| true).expect("watch");
        std::fs::write(&file, "a").expect("write");
        assert!(watch.changed_within(Duration::from_secs(5)).await, "seen");
        std::fs::write(&file, "b").expect("write");
        watch
            .settle(Duration::from_millis(50), Duration::from_secs(2))
            .await;
        assert!(!watch.changed_within(Duration::from_millis(100)).await);
        let mut none = FileWatch::none();
        assert!(!none.changed_within(Duration::from_millis(10)).await);
    }
}
