//! Writing rows into the SQLite ledger (migration 4's `usage_calls`):
//! each batch one transaction that takes its ids from `ledger_next_id`,
//! turns each row's caller and shape into their ids ([`super::sqlite_ids`]:
//! cached, looked up in the file once) and stores the rows with multi-row
//! `INSERT`s prepared once. A row binds 10 values, one of them a string
//! (its request id): SQLite copies no other string.

use super::{
    CallRow, sql,
    sqlite_ids::Ids,
    sqlite_schema::{CALL_COLUMN_COUNT, CALL_COLUMNS},
};
use rusqlite::{
    Connection, Statement,
    types::{ToSqlOutput, ValueRef},
};

/// The SQLite store's `INSERT`s.
pub(super) fn inserts() -> sql::Inserts {
    sql::Inserts::sqlite("usage_calls", CALL_COLUMNS, CALL_COLUMN_COUNT)
}

/// A connection's statements for writing rows, each prepared once: the
/// batch's transaction (rusqlite's `Transaction` parses its `BEGIN` and
/// `COMMIT` anew each time), the next id, the ids, and the multi-row
/// `INSERT`s of [`inserts`] (the largest is parsed in milliseconds:
/// never on a batch's time; each keeps its cursors open across its rows).
pub(super) struct Prepared<'c> {
    conn: &'c Connection,
    begin: Statement<'c>,
    commit: Statement<'c>,
    next_id: Statement<'c>,
    set_next_id: Statement<'c>,
    ids: Ids<'c>,
    inserts: Vec<Statement<'c>>,
}

impl<'c> Prepared<'c> {
    pub(super) fn new(conn: &'c Connection, inserts: &sql::Inserts) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            next_id: conn.prepare("SELECT next FROM ledger_next_id")?,
            set_next_id: conn.prepare("UPDATE ledger_next_id SET next = ?1")?,
            ids: Ids::new(conn)?,
            inserts: inserts
                .statements()
                .map(|sql| conn.prepare(sql))
                .collect::<rusqlite::Result<_>>()?,
        })
    }

    /// `rows` in one transaction, cut into chunks by `sizes`. On an error
    /// the transaction is rolled back (nothing of the batch is stored)
    /// and the batch retried.
    pub(super) fn write(&mut self, sizes: &sql::Inserts, rows: &[CallRow]) -> rusqlite::Result<()> {
        self.begin.raw_execute()?;
        let written = self.write_rows(sizes, rows);
        if written.is_err() {
            self.ids.forget();
            if !self.conn.is_autocommit() {
                // Still open (SQLite ends it itself on some errors): ended here.
                let _ = self.conn.execute_batch("ROLLBACK");
            }
        }
        written
    }

    fn write_rows(&mut self, sizes: &sql::Inserts, rows: &[CallRow]) -> rusqlite::Result<()> {
        let mut id: i64 = self.next_id.query_row([], |r| r.get(0))?;
        for (i, chunk) in sizes.chunks(rows) {
            let insert = &mut self.inserts[i];
            for (n, r) in chunk.iter().enumerate() {
                bind(insert, &mut self.ids, n * CALL_COLUMN_COUNT, id, r)?;
                id += 1;
            }
            insert.raw_execute()?;
        }
        self.set_next_id.execute([id])?;
        self.commit.raw_execute().map(drop)
    }
}

/// Binds `r` as row `id` to parameters `at + 1 ..= at + 10`
/// ([`CALL_COLUMNS`] order; each bind statically typed).
fn bind(
    insert: &mut Statement<'_>,
    ids: &mut Ids<'_>,
    at: usize,
    id: i64,
    r: &CallRow,
) -> rusqlite::Result<()> {
    insert.raw_bind_parameter(at + 1, r.ts_ms)?;
    insert.raw_bind_parameter(at + 2, id)?;
    // As text, from its bytes (no UTF-8 check per row: a `Text` is one).
    let request_id = ToSqlOutput::Borrowed(ValueRef::Text(r.request_id.as_bytes()));
    insert.raw_bind_parameter(at + 3, request_id)?;
    insert.raw_bind_parameter(at + 4, ids.caller(r)?)?;
    insert.raw_bind_parameter(at + 5, ids.shape(r)?)?;
    insert.raw_bind_parameter(at + 6, r.input_tokens)?;
    insert.raw_bind_parameter(at + 7, r.output_tokens)?;
    insert.raw_bind_parameter(at + 8, r.estimated)?;
    insert.raw_bind_parameter(at + 9, r.cost_nanousd)?;
    insert.raw_bind_parameter(at + 10, r.duration_ms)
}
