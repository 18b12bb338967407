//! The ledger in an SQLite file (the default: nothing to install). WAL
//! mode, so `vibectl-core usage` can read while the core writes.

use super::{LedgerError, sql};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::{path::Path, time::Duration};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "usage ledger",
    "CREATE TABLE usage_ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        sub TEXT NOT NULL,
        kid TEXT,
        jti TEXT,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        method TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        estimated BOOLEAN NOT NULL,
        cost_nanousd INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX usage_ledger_ts ON usage_ledger (ts_ms);
    CREATE INDEX usage_ledger_sub_ts ON usage_ledger (sub, ts_ms);",
)];

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

sql::sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates `path`.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        let open_err = |reason: String| LedgerError::Open {
            key: "ledger.sqlite_path",
            what: format!("SQLite file {}", path.display()),
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
        sql::migrator(MIGRATIONS)
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }
}
