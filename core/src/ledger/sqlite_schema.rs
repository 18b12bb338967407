//! The SQLite ledger's migrations after the first (which SQLite and
//! PostgreSQL share, [`super::sql::table_v1`]). Each keeps every row and
//! its id; the text of an applied step never changes (the migrator
//! refuses a database whose step's checksum differs).

use super::sql;

/// Migration 2: the table without `AUTOINCREMENT` (a new row's id is the
/// largest + 1, as before, without a `sqlite_sequence` read and write per
/// statement) and with one index, on `ts_ms`: every report and restore
/// selects a time range (a `--sub` report filters that range); the index
/// on `(sub, ts_ms)` cost every insert a second index entry. Rows and
/// their ids are kept.
pub(super) fn migration_2() -> String {
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

/// The word columns: each row keeps a `ledger_words` id in `usage_calls`,
/// and the `usage_ledger` view shows its text.
const WORDS: [(&str, bool); 8] = [
    ("sub", true),
    ("kid", false),
    ("jti", false),
    ("model", true),
    ("provider", true),
    ("method", true),
    ("outcome", true),
    ("status", true),
];

/// `usage_calls`' columns, in insert order: the row's own values
/// (`request_id` stays text: it is new in each row) and the words' ids.
pub(super) const CALL_COLUMNS: &str = "ts_ms, id, request_id, sub, kid, jti, model, provider, \
    method, input_tokens, output_tokens, estimated, cost_nanousd, duration_ms, outcome, status";
pub(super) const CALL_COLUMN_COUNT: usize = 16;

/// Migration 3: rows clustered by time, words stored once.
/// - `usage_calls` is a `WITHOUT ROWID` table keyed by `(ts_ms, id)`: a
///   row is one B-tree entry in time order (before: a row in the rowid
///   table and an entry in the `ts_ms` index), and a time range, which
///   every report and restore selects, is a range of that key.
/// - `sub`, `kid`, `jti`, `model`, `provider`, `method`, `outcome` and
///   `status` are ids into `ledger_words` (each word stored once): a row
///   binds integers, not strings SQLite copies.
/// - `ledger_next_id` holds the next id (the old table's largest + 1, as
///   before), read and moved once per batch by its transaction.
/// - `usage_ledger` becomes a view with the old columns and values, so
///   the reports' queries (shared with PostgreSQL) and anyone reading the
///   file see the same rows.
///
/// Every row and its id are kept.
pub(super) fn migration_3() -> String {
    let mut words = Vec::new();
    let mut joins = String::new();
    let mut view_joins = String::new();
    let (mut ids, mut view) = (Vec::new(), Vec::new());
    for (i, (col, required)) in WORDS.iter().enumerate() {
        let join = if *required { "JOIN" } else { "LEFT JOIN" };
        words.push(format!("SELECT {col} FROM usage_ledger_v2 WHERE {col} IS NOT NULL"));
        joins.push_str(&format!("\n        {join} ledger_words w{i} ON w{i}.word = u.{col}"));
        view_joins.push_str(&format!("\n        {join} ledger_words w{i} ON w{i}.id = c.{col}"));
        ids.push(format!("w{i}.id"));
        view.push(format!("w{i}.word AS {col}"));
    }
    let words = words.join("\n        UNION ");
    // The word columns in CALL_COLUMNS order: 6 before the counts, 2 after.
    let (ids_a, ids_b) = (ids[..6].join(", "), ids[6..].join(", "));
    let (view_a, view_b) = (view[..6].join(", "), view[6..].join(", "));
    format!(
        "CREATE TABLE ledger_words (id INTEGER PRIMARY KEY, word TEXT NOT NULL UNIQUE);
    ALTER TABLE usage_ledger RENAME TO usage_ledger_v2;
    INSERT INTO ledger_words (word) {words};
    CREATE TABLE usage_calls (
        ts_ms INTEGER NOT NULL,
        id INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        sub INTEGER NOT NULL,
        kid INTEGER,
        jti INTEGER,
        model INTEGER NOT NULL,
        provider INTEGER NOT NULL,
        method INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        estimated BOOLEAN NOT NULL,
        cost_nanousd INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        outcome INTEGER NOT NULL,
        status INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, id)
    ) WITHOUT ROWID;
    INSERT INTO usage_calls ({CALL_COLUMNS})
        SELECT u.ts_ms, u.id, u.request_id, {ids_a}, u.input_tokens, u.output_tokens,
            u.estimated, u.cost_nanousd, u.duration_ms, {ids_b}
        FROM usage_ledger_v2 u{joins};
    CREATE TABLE ledger_next_id (next INTEGER NOT NULL);
    INSERT INTO ledger_next_id SELECT COALESCE(MAX(id), 0) + 1 FROM usage_ledger_v2;
    DROP TABLE usage_ledger_v2;
    CREATE VIEW usage_ledger AS
        SELECT c.id AS id, c.ts_ms AS ts_ms, c.request_id AS request_id, {view_a},
            c.input_tokens AS input_tokens, c.output_tokens AS output_tokens,
            c.estimated AS estimated, c.cost_nanousd AS cost_nanousd,
            c.duration_ms AS duration_ms, {view_b}
        FROM usage_calls c{view_joins};"
    )
}
