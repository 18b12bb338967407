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

/// Migration 3's `usage_calls` columns: the row's own values
/// (`request_id` stays text: it is new in each row) and the words' ids.
const V3_COLUMNS: &str = "ts_ms, id, request_id, sub, kid, jti, model, provider, \
    method, input_tokens, output_tokens, estimated, cost_nanousd, duration_ms, outcome, status";

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
        words.push(format!(
            "SELECT {col} FROM usage_ledger_v2 WHERE {col} IS NOT NULL"
        ));
        joins.push_str(&format!(
            "\n        {join} ledger_words w{i} ON w{i}.word = u.{col}"
        ));
        view_joins.push_str(&format!(
            "\n        {join} ledger_words w{i} ON w{i}.id = c.{col}"
        ));
        ids.push(format!("w{i}.id"));
        view.push(format!("w{i}.word AS {col}"));
    }
    let words = words.join("\n        UNION ");
    // The word columns in V3_COLUMNS order: 6 before the counts, 2 after.
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
    INSERT INTO usage_calls ({V3_COLUMNS})
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

/// `usage_calls`' columns from migration 4 on, in insert order: the row's
/// own values, its caller's and its shape's ids.
pub(super) const CALL_COLUMNS: &str = "ts_ms, id, request_id, caller, shape, input_tokens, \
    output_tokens, estimated, cost_nanousd, duration_ms";
pub(super) const CALL_COLUMN_COUNT: usize = 10;

/// Migration 4: a row binds 10 values, not 16.
/// - `ledger_callers` holds each `(sub, kid, jti)` once (word ids; 0 for
///   no `kid` or `jti`), `ledger_shapes` each `(model, provider, method,
///   outcome, status)`: a row keeps one id of each (most calls repeat
///   their caller's and their shape's).
/// - `usage_calls` keeps its key, `(ts_ms, id)`, and its values; the
///   `usage_ledger` view shows the same columns and values as before.
///
/// Every row and its id are kept. Its text never changes once released.
pub(super) const MIGRATION_4: &str = "CREATE TABLE ledger_callers (
        id INTEGER PRIMARY KEY,
        sub INTEGER NOT NULL,
        kid INTEGER NOT NULL,
        jti INTEGER NOT NULL,
        UNIQUE (sub, kid, jti)
    );
    CREATE TABLE ledger_shapes (
        id INTEGER PRIMARY KEY,
        model INTEGER NOT NULL,
        provider INTEGER NOT NULL,
        method INTEGER NOT NULL,
        outcome INTEGER NOT NULL,
        status INTEGER NOT NULL,
        UNIQUE (model, provider, method, outcome, status)
    );
    INSERT INTO ledger_callers (sub, kid, jti)
        SELECT DISTINCT sub, IFNULL(kid, 0), IFNULL(jti, 0) FROM usage_calls;
    INSERT INTO ledger_shapes (model, provider, method, outcome, status)
        SELECT DISTINCT model, provider, method, outcome, status FROM usage_calls;
    DROP VIEW usage_ledger;
    ALTER TABLE usage_calls RENAME TO usage_calls_v3;
    CREATE TABLE usage_calls (
        ts_ms INTEGER NOT NULL,
        id INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        caller INTEGER NOT NULL,
        shape INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        estimated BOOLEAN NOT NULL,
        cost_nanousd INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (ts_ms, id)
    ) WITHOUT ROWID;
    INSERT INTO usage_calls (ts_ms, id, request_id, caller, shape, input_tokens,
            output_tokens, estimated, cost_nanousd, duration_ms)
        SELECT c.ts_ms, c.id, c.request_id, k.id, s.id, c.input_tokens, c.output_tokens,
            c.estimated, c.cost_nanousd, c.duration_ms
        FROM usage_calls_v3 c
        JOIN ledger_callers k
            ON k.sub = c.sub AND k.kid = IFNULL(c.kid, 0) AND k.jti = IFNULL(c.jti, 0)
        JOIN ledger_shapes s
            ON s.model = c.model AND s.provider = c.provider AND s.method = c.method
            AND s.outcome = c.outcome AND s.status = c.status;
    DROP TABLE usage_calls_v3;
    CREATE VIEW usage_ledger AS
        SELECT c.id AS id, c.ts_ms AS ts_ms, c.request_id AS request_id,
            ws.word AS sub, wk.word AS kid, wj.word AS jti, wm.word AS model,
            wp.word AS provider, wv.word AS method,
            c.input_tokens AS input_tokens, c.output_tokens AS output_tokens,
            c.estimated AS estimated, c.cost_nanousd AS cost_nanousd,
            c.duration_ms AS duration_ms, wo.word AS outcome, wc.word AS status
        FROM usage_calls c
        JOIN ledger_callers k ON k.id = c.caller
        JOIN ledger_shapes s ON s.id = c.shape
        JOIN ledger_words ws ON ws.id = k.sub
        LEFT JOIN ledger_words wk ON wk.id = k.kid
        LEFT JOIN ledger_words wj ON wj.id = k.jti
        JOIN ledger_words wm ON wm.id = s.model
        JOIN ledger_words wp ON wp.id = s.provider
        JOIN ledger_words wv ON wv.id = s.method
        JOIN ledger_words wo ON wo.id = s.outcome
        JOIN ledger_words wc ON wc.id = s.status;";

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums of migrations 2-4 as released: a change of a text
    /// would make every ledger that applied it refuse to open.
    #[test]
    fn released_migrations_are_unchanged() {
        let hex = |version, sql: String| {
            sql::migrator(vec![(version, "", sql)]).migrations[0]
                .checksum
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let got = [
            hex(2, migration_2()),
            hex(3, migration_3()),
            hex(4, MIGRATION_4.to_owned()),
        ];
        assert_eq!(
            got,
            [
                "76a44fd326e3919450a772bb3db770d2c3df71ab94975958491182c80d05eaf8f4fa5b9c33eabed0c53d9d2f0e514293",
                "4fdbf1a4db6c51ce30ba7b8fc39a4178fb38363d3ee74bf4edd26131034743b216c0e628bd7d61c103b53494167e05dd",
                "750204bda5aa4ec060a403a2e1187314d5d30ac9700df4cea95a6be5c0bcde00d738617d52a1abd4dcb1cb4d209e6b97",
            ]
        );
    }
}
