//! `[ledger]`: the usage ledger, one row per call. SQLite in the state
//! directory by default; PostgreSQL (for many core replicas writing one
//! ledger) when a `postgres://` URL is given, in the file (`url`), in an
//! environment variable (`url_env`) or in a file of its own (`url_file`, e.g.
//! a mounted Kubernetes Secret). The URL may hold a password: it is a secret,
//! never logged.

use crate::{defaults, secret::Secret};
use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

/// `[ledger]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Record calls (default `true`).
    pub enabled: bool,
    /// `postgres://user:password@host:port/db` (a secret); unset: SQLite.
    pub url: Option<Secret>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
    /// File holding the URL.
    pub url_file: Option<PathBuf>,
    /// The SQLite file (default `<state dir>/usage.db`).
    pub sqlite_path: Option<PathBuf>,
    /// Rows written in one transaction at most.
    pub batch_rows: usize,
    /// Longest a finished call's row waits before it is written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Rows held in memory while the database cannot take them.
    pub queue_rows: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            url_env: None,
            url_file: None,
            sqlite_path: None,
            batch_rows: defaults::LEDGER_BATCH_ROWS,
            flush_interval: defaults::LEDGER_FLUSH_INTERVAL,
            queue_rows: defaults::LEDGER_QUEUE_ROWS,
        }
    }
}

impl LedgerConfig {
    /// The SQLite file in use when no URL is configured (`state_dir`: the
    /// state directory, `edge.state_dir` or its default).
    pub fn sqlite_file(&self, state_dir: &std::path::Path) -> PathBuf {
        self.sqlite_path
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::LEDGER_SQLITE_FILE))
    }

    /// True when the operator named a database (a URL or an SQLite path):
    /// then a database that cannot be opened stops the start.
    pub fn is_explicit(&self) -> bool {
        self.url.is_some()
            || self.url_env.is_some()
            || self.url_file.is_some()
            || self.sqlite_path.is_some()
    }

    /// `(key, message)` of the first problem, if any.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let sources = [
            self.url.is_some(),
            self.url_env.is_some(),
            self.url_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err((
                "ledger.url",
                "set at most one of url, url_env and url_file".into(),
            ));
        }
        if let Some(url) = &self.url
            && !url.expose().starts_with("postgres://")
            && !url.expose().starts_with("postgresql://")
        {
            // Never echo the URL: it may hold a password.
            return Err((
                "ledger.url",
                "must be a postgres:// URL (leave it unset for SQLite, see ledger.sqlite_path)"
                    .into(),
            ));
        }
        if self.batch_rows == 0 || self.queue_rows == 0 {
            return Err((
                "ledger.batch_rows",
                "batch_rows and queue_rows must be > 0".into(),
            ));
        }
        Ok(())
    }
}
