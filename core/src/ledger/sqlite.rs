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

use super::{BlockingInsert, LedgerError, LedgerRow, sql, words};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::{
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

/// Migration 2: the table without `AUTOINCREMENT` (a new row's id is the
/// largest + 1, as before, without a `sqlite_sequence` read and write per
/// statement) and with one index, on `ts_ms`: every report and restore
/// selects a time range (a `--sub` report filters that range); the index
/// on `(sub, ts_ms)` cost every insert a second index entry. Rows and
/// their ids are kept.
fn migration_2() -> String {
    format!(
        "DROP INDEX usage_ledger_ts;
    DROP INDEX usage_ledger_sub_ts;
    ALTER TABLE usage_ledger RENAME TO usage_ledger_v1;
    {}
    DROP INDEX usage_ledger_sub_ts;
    INSERT INTO usage_ledger (id, {cols}) SELECT id, {cols} FROM usage_ledger_v1;
    DROP TABLE usage_ledger_v1;
    DELETE FROM sqlite_sequence WHERE name = 'usage_ledger_v1';",
        sql::table_v1("INTEGER PRIMARY KEY", "INTEGER"),
        cols = sql::COLUMNS,
    )
}

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
            (2, "usage ledger: no autoincrement, one index", migration_2()),
        ])
        .run(&pool)
        .await
        .map_err(|e| open_err(format!("migration failed: {e}")))?;
        let inserts = sql::Inserts::new(false);
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
    async fn insert_rows(&self, rows: &[LedgerRow]) -> Result<(), LedgerError> {
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

/// A connection's statements for writing rows, each prepared once: the
/// batch's transaction (rusqlite's `Transaction` parses its `BEGIN` and
/// `COMMIT` anew each time) and the multi-row `INSERT`s of
/// [`sql::Inserts`] (the largest is parsed in milliseconds: never on a
/// batch's time; each keeps its cursors open across its rows).
struct Prepared<'c> {
    conn: &'c rusqlite::Connection,
    begin: rusqlite::Statement<'c>,
    commit: rusqlite::Statement<'c>,
    inserts: Vec<rusqlite::Statement<'c>>,
}

impl<'c> Prepared<'c> {
    fn new(conn: &'c rusqlite::Connection, inserts: &sql::Inserts) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            inserts: inserts
                .statements()
                .map(|sql| conn.prepare(sql))
                .collect::<rusqlite::Result<_>>()?,
        })
    }

    /// `rows` in one transaction, cut into chunks by `sizes`. On an error
    /// the transaction is rolled back (nothing of the batch is stored)
    /// and the batch retried.
    fn write(&mut self, sizes: &sql::Inserts, rows: &[LedgerRow]) -> rusqlite::Result<()> {
        self.begin.raw_execute()?;
        let written = (|| {
            for (i, chunk) in sizes.chunks(rows) {
                let insert = &mut self.inserts[i];
                for (n, r) in chunk.iter().enumerate() {
                    bind(insert, n * sql::SQLITE_PARAMS, r)?;
                }
                insert.raw_execute()?;
            }
            self.commit.raw_execute()
        })();
        if written.is_err() && !self.conn.is_autocommit() {
            // Still open (SQLite ends it itself on some errors): ended here.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        written.map(drop)
    }
}

/// Binds `r` to parameters `at + 1 ..= at + 18` ([`sql::COLUMNS`] order,
/// then the words outside their sets; each bind statically typed; SQLite
/// copies the strings, not the words' codes).
fn bind(insert: &mut rusqlite::Statement<'_>, at: usize, r: &LedgerRow) -> rusqlite::Result<()> {
    insert.raw_bind_parameter(at + 1, r.ts_ms)?;
    insert.raw_bind_parameter(at + 2, r.request_id.as_str())?;
    insert.raw_bind_parameter(at + 3, r.sub.as_str())?;
    insert.raw_bind_parameter(at + 4, r.kid.as_deref())?;
    insert.raw_bind_parameter(at + 5, r.jti.as_deref())?;
    insert.raw_bind_parameter(at + 6, r.model.as_str())?;
    insert.raw_bind_parameter(at + 7, r.provider.as_str())?;
    bind_word(insert, &words::METHOD, (at + 8, at + 16), &r.method)?;
    insert.raw_bind_parameter(at + 9, r.input_tokens)?;
    insert.raw_bind_parameter(at + 10, r.output_tokens)?;
    insert.raw_bind_parameter(at + 11, r.estimated)?;
    insert.raw_bind_parameter(at + 12, r.cost_nanousd)?;
    insert.raw_bind_parameter(at + 13, r.duration_ms)?;
    bind_word(insert, &words::OUTCOME, (at + 14, at + 17), &r.outcome)?;
    bind_word(insert, &words::STATUS, (at + 15, at + 18), &r.status)
}

/// A word's code; outside its set, -1 and its text. (A known word leaves
/// the text parameter as it was: the `CASE` never reads it then.)
fn bind_word(
    insert: &mut rusqlite::Statement<'_>,
    words: &words::Words,
    (code, text): (usize, usize),
    word: &str,
) -> rusqlite::Result<()> {
    match words.code(word) {
        Some(c) => insert.raw_bind_parameter(code, c),
        None => {
            insert.raw_bind_parameter(code, -1i64)?;
            insert.raw_bind_parameter(text, word)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerStore;

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

    /// A ledger written before migration 2 opens: its rows and ids are
    /// kept, new rows follow them, and reports read both.
    #[tokio::test]
    async fn a_ledger_of_migration_one_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("usage.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.expect("open");
        sql::migrator(vec![(
            1,
            "usage ledger",
            sql::table_v1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        )])
        .run(&pool)
        .await
        .expect("migration 1");
        let inserts = sql::Inserts::new(false);
        let old = open_writer(&path).expect("writer");
        Prepared::new(&old, &inserts)
            .and_then(|mut p| p.write(&inserts, &[row("a", 1), row("b", 2)]))
            .expect("rows");
        drop(old);
        pool.close().await;

        let store = SqliteStore::open(&path).await.expect("migrated");
        // A word outside its set is stored as its text too.
        let odd = LedgerRow {
            method: "Execute".into(),
            outcome: "failed".into(),
            status: "provider_http_500".into(),
            ..row("d", 4)
        };
        store.insert(&[row("c", 3), odd.clone()]).await.expect("insert");
        assert_eq!(store.rows(3, 5, None).await.expect("rows"), [row("c", 3), odd]);
        let ids: Vec<String> = store
            .rows(0, i64::MAX, Some("alice"))
            .await
            .expect("rows")
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(store.rows(2, 3, None).await.expect("rows"), [row("b", 2)]);
        let totals = store.totals(0).await.expect("totals");
        assert_eq!((totals[0].tokens, totals[0].cost_nanousd), (28, 280));
        let schema: Vec<(String,)> = sqlx::query_as(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'usage_ledger' AND sql IS NOT NULL",
        )
        .fetch_all(&store.pool)
        .await
        .expect("schema");
        let schema: Vec<&str> = schema.iter().map(|(s,)| s.as_str()).collect();
        assert_eq!(schema.len(), 2, "the table and one index: {schema:?}");
        assert!(!schema[0].contains("AUTOINCREMENT"), "{schema:?}");
        let max_id: (i64,) = sqlx::query_as("SELECT MAX(id) FROM usage_ledger")
            .fetch_one(&store.pool)
            .await
            .expect("id");
        assert_eq!(max_id.0, 4, "ids kept and continued");
    }
}
