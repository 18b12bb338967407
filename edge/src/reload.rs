//! Hot reload of the limits, and the upkeep of limit state. [`maintain`]
//! runs beside the listeners until shutdown:
//!
//! - it watches the configuration file the edge was started with
//!   ([`FileWatch`] on its directory: editors and Kubernetes ConfigMaps
//!   replace files by renaming), debounced by [`DEBOUNCE`], plus a re-check
//!   every [`RECHECK`] in case an event was lost. A changed file is parsed and validated as a whole
//!   (`Config::from_toml`); if it is valid, its `[limits]` become the
//!   limiter's snapshot in one atomic swap (calls in flight keep their
//!   permits), and the changes are logged ("limits reloaded: global
//!   max_requests_per_minute 60 → 120"). An invalid file is refused with
//!   the key and the file named, and the previous limits stay. Only
//!   `[limits]` is hot (but its backend and Redis address); any other
//!   changed key is logged as needing a restart.
//! - every [`RETAIN_EVERY`] it drops in-memory rate state of idle tokens
//!   (`retain_recent`), which bounds the memory backend.

use crate::{
    Edge, EdgeError,
    file_watch::{self, FileWatch},
    limits::diff::diff,
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// Quiet time after a file event before the file is read (editors write in
/// several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The file is re-read this often even without an event.
pub const RECHECK: Duration = Duration::from_secs(5);
/// Longest a stream of events may postpone a re-read.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How often idle in-memory rate state is dropped.
pub const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// What reloads did so far (for tests and operators).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Changed files whose limits were put in force.
    pub applied: u64,
    /// Changed files that were refused (invalid).
    pub refused: u64,
    /// Why the last refused file was refused (names the key and the file).
    pub last_error: Option<String>,
}

/// Runs the upkeep (see the module doc) until `shutdown`; watches
/// `config_file` when there is one (the edge was started from a file).
pub async fn maintain(
    edge: Edge,
    config_file: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let mut reloader = config_file.map(|file| Reloader::new(edge.clone(), file));
    let mut watch = reloader.as_ref().and_then(|r| watch_file(&r.file));
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retain = tokio::time::interval(RETAIN_EVERY);
    retain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            () = file_watch::changed(&mut watch) => {
                // Debounce: wait until the directory is quiet.
                if let Some(watch) = watch.as_mut() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        () = watch.settle(DEBOUNCE, MAX_DEBOUNCE) => {}
                    }
                }
                if let Some(r) = &mut reloader {
                    r.check();
                }
            }
            _ = recheck.tick(), if reloader.is_some() => {
                if let Some(r) = &mut reloader {
                    r.check();
                }
            }
            _ = retain.tick() => edge.limiter().backend().retain_recent(),
        }
    }
    Ok(())
}

/// Watches the directory of `file`; `None` (logged) if the platform
/// watcher cannot start — the periodic re-check still works.
fn watch_file(file: &Path) -> Option<FileWatch> {
    let name = file.file_name().map(ToOwned::to_owned);
    // Our file, or a Kubernetes ConfigMap's `..data` swap.
    let ours = move |event: &notify::Event| {
        event.paths.is_empty()
            || event.paths.iter().any(|p| {
                let n = p.file_name();
                n == name.as_deref() || n.is_some_and(|n| n.to_string_lossy().starts_with(".."))
            })
    };
    match FileWatch::start(&[file], ours) {
        Ok(watch) => {
            tracing::info!(file = %file.display(), "watching the config file: [limits] reload without a restart");
            Some(watch)
        }
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot watch the config file; re-reading it every {RECHECK:?} instead");
            None
        }
    }
}

/// Reads the file when asked and applies what changed.
struct Reloader {
    edge: Edge,
    file: PathBuf,
    /// The text last read (applied or refused): unchanged text is skipped.
    last_text: Option<String>,
    /// The last valid file, as TOML, for the keys-need-a-restart report.
    last_good: Option<toml::Table>,
    /// The last read error logged (logged again only when it changes).
    last_read_error: Option<String>,
}

impl Reloader {
    fn new(edge: Edge, file: PathBuf) -> Self {
        Self {
            edge,
            file,
            last_text: None,
            last_good: None,
            last_read_error: None,
        }
    }

    fn check(&mut self) {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(error) => {
                let message = error.to_string();
                if self.last_read_error.as_ref() != Some(&message) {
                    tracing::warn!(file = %self.file.display(), %error, "cannot read the config file; the limits in force stay");
                    self.last_read_error = Some(message);
                }
                return;
            }
        };
        self.last_read_error = None;
        if self.last_text.as_ref() == Some(&text) {
            return;
        }
        self.last_text = Some(text.clone());
        let limiter = self.edge.limiter();
        match Config::from_toml(&text, &self.file) {
            Err(error) => {
                tracing::warn!(%error, "config reload refused; the limits in force stay");
                limiter.note_reload(Err(&error));
            }
            Ok(config) => {
                let old = limiter.snapshot();
                let changes = diff(&old, &config.limits);
                if *old != config.limits {
                    limiter.replace(config.limits.clone());
                    limiter.note_reload(Ok(()));
                }
                if !changes.applied.is_empty() {
                    tracing::info!(
                        file = %self.file.display(),
                        "limits reloaded: {}",
                        changes.applied.join("; ")
                    );
                }
                let table = text.parse::<toml::Table>().ok();
                let mut restart = changes.needs_restart;
                if let (Some(before), Some(after)) = (&self.last_good, &table) {
                    changed_keys("", before, after, &mut restart);
                }
                if !restart.is_empty() {
                    tracing::warn!(
                        file = %self.file.display(),
                        "changed, but only a restart puts it in force: {}",
                        restart.join(", ")
                    );
                }
                self.last_good = table;
            }
        }
    }
}

/// Dotted keys that differ between two TOML tables, outside `[limits]`
/// (values are never printed: some are secrets).
fn changed_keys(prefix: &str, before: &toml::Table, after: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if dotted == "limits" {
            continue;
        }
        match (before.get(key), after.get(key)) {
            (Some(toml::Value::Table(b)), Some(toml::Value::Table(a))) => {
                changed_keys(&dotted, b, a, out);
            }
            (b, a) if b != a => out.push(dotted),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_outside_limits_are_named_without_values() {
        let before: toml::Table = "[edge]\nlisten = \"127.0.0.1:1\"\n[jwt]\nsecret_key = \"old-secret\"\n[limits.global]\nburst = 1"
            .parse()
            .expect("toml");
        let after: toml::Table = "[edge]\nlisten = \"127.0.0.1:2\"\n[jwt]\nsecret_key = \"new-secret\"\n[limits.global]\nburst = 2\n[metrics]\nenabled = true"
            .parse()
            .expect("toml");
        let mut out = Vec::new();
        changed_keys("", &before, &after, &mut out);
        assert_eq!(out, ["edge.listen", "jwt.secret_key", "metrics"]);
    }
}
