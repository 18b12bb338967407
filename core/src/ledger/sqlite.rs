//! The ledger in an SQLite file (the default: nothing to install). WAL
//! mode, so `vibectl-core usage` can read while the core writes;
//! `synchronous = NORMAL`: a committed batch survives a crash of the
//! process, the last batches before a power loss may not (a graceful
//! shutdown writes every queued row first).
//!
//! Migrations and reports go through sqlx; rows are written by a
//! rusqlite connection of their own (the same bundled SQLite): a batch's
//! multi-row `INSERT`s run on the ledger's writer thread, with no worker
//! thread or copy of the binds between (sqlx's SQLite driver cost the
//! ledger more than SQLite did).

use super::{
    BlockingInsert, CallRow, LedgerError, sql,
    sqlite_schema::{MIGRATION_4, migration_2, migration_3},
    sqlite_write::{Prepared, inserts},
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::{
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    /// Migrations and reports.
    pool: SqlitePool,
    /// What it is, for logs: `SQLite file …` or `PostgreSQL at host:port`.
    what: String,
    /// The file, for the writer thread's own connection.
    path: PathBuf,
    /// Writes rows when [`LedgerStore::insert`] is called (tests, and a
    /// writer thread that could not prepare its own statements).
    writer: Mutex<rusqlite::Connection>,
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
        // Who called and what they spent is the operator's alone: a new
        // directory is 0700 and a new file 0600 (SQLite gives its -wal and
        // -shm files the file's mode), as the edge makes the state dir.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| open_err(e.to_string()))?;
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        sql::migrator(vec![
            (
                1,
                "usage ledger",
                sql::table_v1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
            ),
            (
                2,
                "usage ledger: no autoincrement, one index",
                migration_2(),
            ),
            (3, "usage ledger: rows by time, words once", migration_3()),
            (
                4,
                "usage ledger: callers and shapes once",
                MIGRATION_4.to_owned(),
            ),
        ])
        .run(&pool)
        .await
        .map_err(|e| open_err(format!("migration failed: {e}")))?;
        let inserts = inserts();
        let writer = open_writer(path).map_err(|e| open_err(e.to_string()))?;
        Prepared::new(&writer, &inserts).map_err(|e| open_err(e.to_string()))?;
        Ok(Self {
            pool,
            what,
            path: path.to_owned(),
            writer: Mutex::new(writer),
            inserts,
        })
    }

    /// Stores `rows` in one transaction. Runs SQLite on the caller's
    /// thread (the ledger's writer thread, never a call's).
    async fn insert_rows(&self, rows: &[CallRow]) -> Result<(), LedgerError> {
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Prepared::new(&conn, &self.inserts)
            .and_then(|mut p| p.write(&self.inserts, rows))
            .map_err(query_err)
    }

    /// The writer thread's insert: a connection of its own with its
    /// statements prepared once, kept on that thread for its whole run
    /// (rusqlite's statement cache hashes, compares and copies a
    /// statement's whole text at each use).
    fn blocking_insert(&self, run: &mut dyn FnMut(Option<BlockingInsert<'_>>)) {
        let conn = match open_writer(&self.path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!(error = %e, ledger = %self.what, "usage ledger: the writer's own connection failed; writing through the shared one");
                return run(None);
            }
        };
        match Prepared::new(&conn, &self.inserts) {
            Ok(mut prepared) => run(Some(&mut |rows| {
                prepared.write(&self.inserts, rows).map_err(query_err)
            })),
            Err(e) => {
                tracing::error!(error = %e, ledger = %self.what, "usage ledger: the writer's statements failed; writing through the shared connection");
                run(None)
            }
        }
    }
}

fn query_err(e: rusqlite::Error) -> LedgerError {
    LedgerError::Query {
        backend: "sqlite",
        reason: e.to_string(),
    }
}

/// A writer's connection to the migrated file (WAL, set by the pool, is
/// the file's own mode; `synchronous` is per connection).
fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerRow, LedgerStore};
    use crate::registry::Registry;

    /// The row [`row`] stores.
    fn call(request_id: &str, ts_ms: i64) -> CallRow {
        CallRow {
            ts_ms,
            request_id: request_id.into(),
            sub: "alice".into(),
            kid: Some("k1".into()),
            jti: None,
            // The default config's offline model: `echo`, served by `echo`.
            model: Some(
                Registry::from_config(&vibectl_config::Config::default())
                    .resolve(Some("echo"))
                    .expect("echo"),
            ),
            method: "Execute",
            input_tokens: 3,
            output_tokens: 4,
            estimated: true,
            cost_nanousd: 70,
            duration_ms: 5,
            outcome: "ok",
            status: "OK".into(),
        }
    }

    fn row(request_id: &str, ts_ms: i64) -> LedgerRow {
        LedgerRow {
            ts_ms,
            request_id: request_id.into(),
            sub: "alice".into(),
            kid: Some("k1".into()),
            jti: None,
            model: "echo".into(),
            provider: "echo".into(),
            method: "Execute".into(),
            input_tokens: 3,
            output_tokens: 4,
            estimated: true,
            cost_nanousd: 70,
            duration_ms: 5,
            outcome: "ok".into(),
            status: "OK".into(),
        }
    }

    /// A new ledger is the operator's alone: its directory 0700, the file
    /// and SQLite's -wal and -shm 0600 (whatever the umask).
    #[tokio::test]
    async fn a_new_ledger_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join("usage.db");
        let store = SqliteStore::open(&path).await.expect("open");
        store.insert(&[call("r1", 1)]).await.expect("insert");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        for name in ["usage.db", "usage.db-wal", "usage.db-shm"] {
            let file = path.with_file_name(name);
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    /// A ledger written before migration 2, 3 or 4 opens: its rows and
    /// ids are kept (a gap too), new rows follow them, and reports read
    /// both.
    #[tokio::test]
    async fn ledgers_of_migrations_one_and_two_keep_their_rows() {
        for steps in [1usize, 2, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("usage.db");
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.expect("open");
            let all = || {
                vec![
                    (
                        1,
                        "usage ledger",
                        sql::table_v1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
                    ),
                    (
                        2,
                        "usage ledger: no autoincrement, one index",
                        migration_2(),
                    ),
                    (3, "usage ledger: rows by time, words once", migration_3()),
                ]
            };
            // Rows are written into migration 1's or 2's table (3 migrates them).
            sql::migrator(all().into_iter().take(steps.min(2)).collect())
                .run(&pool)
                .await
                .expect("old migrations");
            for (id, r) in [(1, row("a", 1)), (5, row("b", 2))] {
                sqlx::query(&format!(
                    "INSERT INTO usage_ledger (id, {}) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, 3, 4, 1, 70, 5, 'ok', 'OK')",
                    sql::COLUMNS
                ))
                .bind(id)
                .bind(r.ts_ms)
                .bind(&r.request_id)
                .bind(&r.sub)
                .bind(&r.kid)
                .bind(&r.model)
                .bind(&r.provider)
                .bind(&*r.method)
                .execute(&pool)
                .await
                .expect("old row");
            }
            sql::migrator(all().into_iter().take(steps).collect())
                .run(&pool)
                .await
                .expect("old migrations");
            pool.close().await;

            let store = SqliteStore::open(&path).await.expect("migrated");
            let odd = CallRow {
                sub: "bob".into(),
                jti: Some("j1".into()),
                model: None,
                outcome: "failed",
                status: "provider_http_500".into(),
                ..call("d", 4)
            };
            store.insert(&[call("c", 3), odd]).await.expect("insert");
            store.insert(&[call("e", 4)]).await.expect("insert");
            let odd = LedgerRow {
                sub: "bob".into(),
                jti: Some("j1".into()),
                model: String::new(),
                provider: String::new(),
                outcome: "failed".into(),
                status: "provider_http_500".into(),
                ..row("d", 4)
            };
            assert_eq!(
                store.rows(3, 5, None).await.expect("rows"),
                [row("c", 3), odd, row("e", 4)]
            );
            let ids: Vec<String> = store
                .rows(0, i64::MAX, Some("alice"))
                .await
                .expect("rows")
                .into_iter()
                .map(|r| r.request_id)
                .collect();
            assert_eq!(ids, ["a", "b", "c", "e"]);
            assert_eq!(store.rows(2, 3, None).await.expect("rows"), [row("b", 2)]);
            let totals = store.totals(0).await.expect("totals");
            let alice = totals.iter().find(|t| t.sub == "alice").expect("alice");
            assert_eq!((alice.tokens, alice.cost_nanousd), (28, 280));
            let ids: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, request_id FROM usage_ledger ORDER BY id")
                    .fetch_all(&store.pool)
                    .await
                    .expect("ids");
            let want = [(1, "a"), (5, "b"), (6, "c"), (7, "d"), (8, "e")];
            let want: Vec<(i64, String)> = want.iter().map(|(i, r)| (*i, (*r).into())).collect();
            assert_eq!(ids, want, "ids kept and continued (from migration {steps})");
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&store.pool)
            .await
            .expect("schema");
            let calls = tables
                .iter()
                .find(|(s,)| s.contains("TABLE usage_calls"))
                .expect("usage_calls");
            assert!(calls.0.ends_with("WITHOUT ROWID"), "{tables:?}");
            assert!(calls.0.contains("caller INTEGER"), "{tables:?}");
            assert!(
                !tables.iter().any(|(s,)| s.contains("INDEX")),
                "no index: {tables:?}"
            );
            assert!(
                !tables.iter().any(|(s,)| s.contains("usage_calls_v3")),
                "{tables:?}"
            );
        }
    }
}
