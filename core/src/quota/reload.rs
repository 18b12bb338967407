//! Hot reload of the budgets: the core re-reads its configuration file
//! when it changes (checked every [`POLL`]) and puts the new `[limits]`
//! and `[quota]` in force. A file that does not validate is logged and
//! the budgets in force are kept. With the memory backend, the counters
//! are then restored from the ledger (see [`super::restore`]), so that a
//! budget the reload adds counts the window's earlier calls.

use super::{Quotas, policy::Policy, restore::Restorer};
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
pub(crate) async fn watch(
    path: PathBuf,
    quotas: Arc<Quotas>,
    restorer: Option<Restorer>,
    stop: CancellationToken,
) {
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
                // Restored before the budgets are in force: a budget the
                // reload adds never sees counters without the ledger's calls.
                if let Some(r) = &restorer
                    && let Err(e) =
                        super::restore(&r.memory, r.store.as_ref(), &Policy::from_config(&config))
                            .await
                {
                    tracing::warn!(error = %e, "quota counters could not be restored from the usage ledger after the reload; budgets it adds count from now");
                }
                quotas.reload(&config);
                tracing::info!(file = %path.display(), "quota budgets reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "config file changed but cannot be used; keeping the budgets in force");
            }
        }
    }
}
