//! What the SQLite and PostgreSQL stores share: the table, the migrator
//! and the queries, written once for any sqlx database (a macro, because
//! sqlx's generic bounds would be longer than the code).

use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

/// A migrator over `(version, description, sql)` steps.
pub(super) fn migrator(steps: Vec<(i64, &'static str, String)>) -> Migrator {
    let migrations: Vec<Migration> = steps
        .into_iter()
        .map(|(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Owned(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// Migration 1 (the table and its indexes) in a database's types: `id`
/// the key column's, `int` the integers'. Byte for byte the text it always
/// was: the migrator refuses a database whose applied step's checksum
/// differs (see the test below).
pub(super) fn table_v1(id: &str, int: &str) -> String {
    format!(
        "CREATE TABLE usage_ledger (
        id {id},
        ts_ms {int} NOT NULL,
        request_id TEXT NOT NULL,
        sub TEXT NOT NULL,
        kid TEXT,
        jti TEXT,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        method TEXT NOT NULL,
        input_tokens {int} NOT NULL,
        output_tokens {int} NOT NULL,
        estimated BOOLEAN NOT NULL,
        cost_nanousd {int} NOT NULL,
        duration_ms {int} NOT NULL,
        outcome TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX usage_ledger_ts ON usage_ledger (ts_ms);
    CREATE INDEX usage_ledger_sub_ts ON usage_ledger (sub, ts_ms);"
    )
}

/// The columns, in insert order.
pub(super) const COLUMNS: &str = "ts_ms, request_id, sub, kid, jti, model, provider, method, \
    input_tokens, output_tokens, estimated, cost_nanousd, duration_ms, outcome, status";
pub(super) const COLUMN_COUNT: usize = 15;

/// Rows per multi-row `INSERT`, largest first. A batch is cut into chunks
/// of these sizes only, so the database sees a handful of distinct
/// statements, each prepared once and then taken from the connection's
/// statement cache (a statement per batch length would be parsed anew for
/// almost every batch). PostgreSQL: large chunks, each statement a round
/// trip.
const POSTGRES_CHUNK_ROWS: &[usize] = &[128, 32, 8, 1];
/// SQLite: a chunk's strings (one a row, its request id, copied by
/// SQLite at bind) must fit the connection's free lookaside slots (about
/// 90 small ones, some taken by the prepared statements): past them each
/// string goes to `malloc`, behind SQLite's global memory mutex (with 9
/// strings a row and 128-row chunks, about 1,700 more instructions per
/// row, callgrind). A statement's own cost (its start, the cursor's first
/// seek, its end) is spread over its rows.
const SQLITE_CHUNK_ROWS: &[usize] = &[32, 8, 4, 1];

/// The `INSERT` of each chunk size, written once per store (not per
/// batch).
#[derive(Debug)]
pub(super) struct Inserts {
    sizes: &'static [usize],
    statements: Vec<String>,
}

impl Inserts {
    /// PostgreSQL's: `$1, $2, …` placeholders into `usage_ledger`.
    pub(super) fn postgres() -> Self {
        Self::new(
            POSTGRES_CHUNK_ROWS,
            "INSERT INTO usage_ledger",
            COLUMNS,
            COLUMN_COUNT,
            "$",
        )
    }

    /// SQLite's: `?1, ?2, …` into `table (columns)`, `count` columns.
    /// `OR ROLLBACK` (a failed row fails the whole batch, which is rolled
    /// back and retried anyway) spares each statement its statement
    /// journal (a copy of every page it first touches).
    pub(super) fn sqlite(table: &str, columns: &str, count: usize) -> Self {
        let verb = format!("INSERT OR ROLLBACK INTO {table}");
        Self::new(SQLITE_CHUNK_ROWS, &verb, columns, count, "?")
    }

    fn new(sizes: &'static [usize], verb: &str, columns: &str, count: usize, mark: &str) -> Self {
        let statements = sizes
            .iter()
            .map(|&rows| {
                let mut sql = format!("{verb} ({columns}) VALUES ");
                for row in 0..rows {
                    sql.push_str(if row == 0 { "(" } else { ", (" });
                    for col in 1..=count {
                        if col > 1 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("{mark}{}", row * count + col));
                    }
                    sql.push(')');
                }
                sql
            })
            .collect();
        Self { sizes, statements }
    }

    /// Every statement, largest first.
    pub(super) fn statements(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().map(String::as_str)
    }

    /// Statement `i` of [`Inserts::statements`].
    pub(super) fn statement(&self, i: usize) -> &str {
        &self.statements[i]
    }

    /// `rows` cut into chunks of the store's sizes, in order, each with the
    /// index of its statement.
    pub(super) fn chunks<'a, T>(
        &'a self,
        mut rows: &'a [T],
    ) -> impl Iterator<Item = (usize, &'a [T])> + 'a {
        std::iter::from_fn(move || {
            let i = self.sizes.iter().position(|n| *n <= rows.len())?;
            let (chunk, rest) = rows.split_at(self.sizes[i]);
            rows = rest;
            Some((i, chunk))
        })
    }
}

/// Implements `LedgerStore` for `$store` (a struct with `pool` and
/// `what`, and inherent `async fn insert_rows` and `fn blocking_insert`:
/// how rows are written differs between the databases).
macro_rules! sql_store {
    ($store:ty, $db:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl $crate::ledger::LedgerStore for $store {
            fn name(&self) -> &'static str {
                $name
            }

            fn describe(&self) -> &str {
                &self.what
            }

            async fn insert(
                &self,
                rows: &[$crate::ledger::CallRow],
            ) -> Result<(), $crate::ledger::LedgerError> {
                self.insert_rows(rows).await
            }

            fn with_blocking_insert(
                &self,
                run: &mut dyn FnMut(Option<$crate::ledger::BlockingInsert<'_>>),
            ) {
                self.blocking_insert(run)
            }

            async fn rows(
                &self,
                since_ms: i64,
                until_ms: i64,
                sub: Option<&str>,
            ) -> Result<Vec<$crate::ledger::LedgerRow>, $crate::ledger::LedgerError> {
                use sqlx::Row as _;
                let fail = |e: sqlx::Error| $crate::ledger::LedgerError::Query {
                    backend: $name,
                    reason: e.to_string(),
                };
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM usage_ledger WHERE ts_ms >= ",
                    $crate::ledger::sql::COLUMNS
                ));
                q.push_bind(since_ms).push(" AND ts_ms < ").push_bind(until_ms);
                if let Some(sub) = sub {
                    q.push(" AND sub = ").push_bind(sub.to_owned());
                }
                q.push(" ORDER BY ts_ms, id");
                let rows = q.build().fetch_all(&self.pool).await.map_err(fail)?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::ledger::LedgerRow {
                            ts_ms: r.try_get("ts_ms")?,
                            request_id: r.try_get("request_id")?,
                            sub: r.try_get("sub")?,
                            kid: r.try_get("kid")?,
                            jti: r.try_get("jti")?,
                            model: r.try_get("model")?,
                            provider: r.try_get("provider")?,
                            method: r.try_get("method")?,
                            input_tokens: r.try_get("input_tokens")?,
                            output_tokens: r.try_get("output_tokens")?,
                            estimated: r.try_get("estimated")?,
                            cost_nanousd: r.try_get("cost_nanousd")?,
                            duration_ms: r.try_get("duration_ms")?,
                            outcome: r.try_get("outcome")?,
                            status: r.try_get("status")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(fail)
            }

            async fn totals(
                &self,
                since_ms: i64,
            ) -> Result<Vec<$crate::ledger::Total>, $crate::ledger::LedgerError> {
                use sqlx::Row as _;
                let fail = |e: sqlx::Error| $crate::ledger::LedgerError::Query {
                    backend: $name,
                    reason: e.to_string(),
                };
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT sub, model, CAST(SUM(input_tokens + output_tokens) AS BIGINT) AS tokens, \
                     CAST(SUM(cost_nanousd) AS BIGINT) AS cost FROM usage_ledger WHERE ts_ms >= ",
                );
                q.push_bind(since_ms).push(" GROUP BY sub, model");
                let rows = q.build().fetch_all(&self.pool).await.map_err(fail)?;
                rows.iter()
                    .map(|r| {
                        let tokens: i64 = r.try_get("tokens")?;
                        let cost: i64 = r.try_get("cost")?;
                        Ok($crate::ledger::Total {
                            sub: r.try_get("sub")?,
                            model: r.try_get("model")?,
                            tokens: u64::try_from(tokens).unwrap_or(0),
                            cost_nanousd: u64::try_from(cost).unwrap_or(0),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(fail)
            }
        }
    };
}
pub(super) use sql_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_a_few_statement_sizes() {
        let inserts = Inserts::sqlite("t", "a, b", 2);
        let rows: Vec<usize> = (0..300).collect();
        let sizes: Vec<usize> = inserts.chunks(&rows).map(|(_, c)| c.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 300);
        assert_eq!(sizes[..9], [32; 9]);
        assert_eq!(sizes[9..], [8, 4]);
        let flat: Vec<usize> = inserts
            .chunks(&rows)
            .flat_map(|(_, c)| c)
            .copied()
            .collect();
        assert_eq!(flat, rows);
        assert_eq!(inserts.chunks::<usize>(&[]).count(), 0);
        let (one, _) = inserts.chunks(&rows[..1]).next().expect("a chunk");
        let one = inserts.statement(one);
        assert_eq!(one, "INSERT OR ROLLBACK INTO t (a, b) VALUES (?1, ?2)");
        let (four, _) = inserts.chunks(&rows[..4]).next().expect("a chunk");
        assert!(inserts.statement(four).ends_with("(?7, ?8)"));
        let numbered = Inserts::postgres();
        let (two, _) = numbered.chunks(&rows[..8]).next().expect("a chunk");
        let two = numbered.statement(two);
        assert!(
            two.contains("($1, $2,") && two.ends_with("$119, $120)"),
            "{two}"
        );
        let sizes: Vec<usize> = numbered.chunks(&rows).map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, [128, 128, 32, 8, 1, 1, 1, 1]);
    }

    /// The checksums of migration 1 as released: a change of its text
    /// would make every existing ledger refuse to open.
    #[test]
    fn migration_one_is_unchanged() {
        let hex = |sql: String| {
            migrator(vec![(1, "usage ledger", sql)]).migrations[0]
                .checksum
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(table_v1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER")),
            "b7a1f883738503d0804084334025f3455c05130e232317b9507dc276c051b4208004355eeed4cc51d14364bdadb2277a"
        );
        assert_eq!(
            hex(table_v1("BIGSERIAL PRIMARY KEY", "BIGINT")),
            "3d4e8d11ea7797ccc18380c9d1ef4df9cb1f7593bf493743652bff3dee9ef44e97af8e59a7e93932cc065166765bf9af"
        );
    }
}
