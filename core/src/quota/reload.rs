//! Hot reload of the budgets: the core re-reads its configuration file
//! when it changes (checked every [`POLL`]) and puts the new `[limits]`
//! and `[quota]` in force. A file that does not validate is logged and
//! the budgets in force are kept.

use super::Quotas;
use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// How often the file's modification time is checked.
pub const POLL: Duration = Duration::from_millis(500);

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Watches `path` until `stop` fires.
pub async fn watch(path: PathBuf, quotas: Arc<Quotas>, stop: CancellationToken) {
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match Config::load(Some(&path)) {
            Ok(config) => {
                quotas.reload(&config);
                tracing::info!(file = %path.display(), "quota budgets reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "config file changed but cannot be used; keeping the budgets in force");
            }
        }
    }
}
