//! Writing rows into the SQLite ledger (migration 3's `usage_calls`):
//! each batch one transaction that takes its ids from `ledger_next_id`,
//! turns each row's words into their `ledger_words` ids (cached: a word
//! is looked up in the file once) and stores the rows with multi-row
//! `INSERT`s prepared once. A row binds 16 values, one of them a string
//! (its request id): SQLite copies no other string.

use super::{
    CallRow, sql,
    sqlite_schema::{CALL_COLUMN_COUNT, CALL_COLUMNS},
};
use rusqlite::{Connection, Statement};
use std::collections::HashMap;

/// Words kept in memory at most (a `sub`, `kid` or `jti` per token, a
/// few models): past it the cache starts again.
const MAX_CACHED_WORDS: usize = 100_000;

/// The word columns, in [`CALL_COLUMNS`] order: `sub`, `kid`, `jti`,
/// `model`, `provider`, `method`, `outcome`, `status`.
const WORD_COLUMNS: usize = 8;

/// The SQLite store's `INSERT`s.
pub(super) fn inserts() -> sql::Inserts {
    sql::Inserts::sqlite("usage_calls", CALL_COLUMNS, CALL_COLUMN_COUNT)
}

/// Word ids: the last word of each column (most rows repeat it: one
/// compare), then a map, then the file.
struct WordIds<'c> {
    conn: &'c Connection,
    find: Statement<'c>,
    add: Statement<'c>,
    last: [(String, i64); WORD_COLUMNS],
    known: HashMap<Box<str>, i64, foldhash::fast::RandomState>,
}

impl<'c> WordIds<'c> {
    fn id(&mut self, column: usize, word: &str) -> rusqlite::Result<i64> {
        let last = &mut self.last[column];
        if last.1 != 0 && last.0 == word {
            return Ok(last.1);
        }
        let id = match self.known.get(word) {
            Some(id) => *id,
            None => {
                let found = self.find.query_row([word], |r| r.get(0));
                let id = match found {
                    Ok(id) => id,
                    Err(rusqlite::Error::QueryReturnedNoRows) => {
                        self.add.execute([word])?;
                        self.conn.last_insert_rowid()
                    }
                    Err(e) => return Err(e),
                };
                if self.known.len() >= MAX_CACHED_WORDS {
                    self.known.clear();
                }
                self.known.insert(word.into(), id);
                id
            }
        };
        last.0.clear();
        last.0.push_str(word);
        last.1 = id;
        Ok(id)
    }

    /// After a rolled-back batch: its new words' ids are gone too.
    fn forget(&mut self) {
        self.known.clear();
        self.last.iter_mut().for_each(|l| l.1 = 0);
    }
}

/// A connection's statements for writing rows, each prepared once: the
/// batch's transaction (rusqlite's `Transaction` parses its `BEGIN` and
/// `COMMIT` anew each time), the next id, the words, and the multi-row
/// `INSERT`s of [`inserts`] (the largest is parsed in milliseconds:
/// never on a batch's time; each keeps its cursors open across its rows).
pub(super) struct Prepared<'c> {
    conn: &'c Connection,
    begin: Statement<'c>,
    commit: Statement<'c>,
    next_id: Statement<'c>,
    set_next_id: Statement<'c>,
    words: WordIds<'c>,
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
            words: WordIds {
                conn,
                find: conn.prepare("SELECT id FROM ledger_words WHERE word = ?1")?,
                add: conn.prepare("INSERT INTO ledger_words (word) VALUES (?1)")?,
                last: Default::default(),
                known: HashMap::default(),
            },
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
            self.words.forget();
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
                bind(insert, &mut self.words, n * CALL_COLUMN_COUNT, id, r)?;
                id += 1;
            }
            insert.raw_execute()?;
        }
        self.set_next_id.execute([id])?;
        self.commit.raw_execute().map(drop)
    }
}

/// Binds `r` as row `id` to parameters `at + 1 ..= at + 16`
/// ([`CALL_COLUMNS`] order; each bind statically typed).
fn bind(
    insert: &mut Statement<'_>,
    words: &mut WordIds<'_>,
    at: usize,
    id: i64,
    r: &CallRow,
) -> rusqlite::Result<()> {
    let optional = |words: &mut WordIds<'_>, column, word: &Option<String>| {
        word.as_deref().map(|w| words.id(column, w)).transpose()
    };
    insert.raw_bind_parameter(at + 1, r.ts_ms)?;
    insert.raw_bind_parameter(at + 2, id)?;
    insert.raw_bind_parameter(at + 3, r.request_id.as_str())?;
    insert.raw_bind_parameter(at + 4, words.id(0, &r.sub)?)?;
    insert.raw_bind_parameter(at + 5, optional(words, 1, &r.kid)?)?;
    insert.raw_bind_parameter(at + 6, optional(words, 2, &r.jti)?)?;
    insert.raw_bind_parameter(at + 7, words.id(3, r.model_id())?)?;
    insert.raw_bind_parameter(at + 8, words.id(4, r.provider())?)?;
    insert.raw_bind_parameter(at + 9, words.id(5, r.method)?)?;
    insert.raw_bind_parameter(at + 10, r.input_tokens)?;
    insert.raw_bind_parameter(at + 11, r.output_tokens)?;
    insert.raw_bind_parameter(at + 12, r.estimated)?;
    insert.raw_bind_parameter(at + 13, r.cost_nanousd)?;
    insert.raw_bind_parameter(at + 14, r.duration_ms)?;
    insert.raw_bind_parameter(at + 15, words.id(6, r.outcome)?)?;
    insert.raw_bind_parameter(at + 16, words.id(7, &r.status)?)
}
