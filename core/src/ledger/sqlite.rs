//! The ledger in an SQLite file (the default: nothing to install). WAL
//! mode, so `vibectl-core usage` can read while the core writes.

use super::{LedgerError, sql};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::{path::Path, time::Duration};

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// What it is, for logs: `SQLite file …` or `PostgreSQL at host:port`.
    what: String,
    inserts: sql::Inserts,
}

sql::sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates `path`.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        let what = format!("SQLite file {}", path.display());
        let open_err = |reason: String| LedgerError::Open {
            key: "ledger.sqlite_path",
            what: what.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sql::migrator(vec![(
            1,
            "usage ledger",
            sql::table_v1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        )])
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("migration failed: {e}")))?;
        Ok(Self {
            pool,
            what,
            inserts: sql::Inserts::new(false),
        })
    }
}
