//! What the SQLite and PostgreSQL stores share: the table, the migrator
//! and the queries, written once for any sqlx database (a macro, because
//! sqlx's generic bounds would be longer than the code).

use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

/// A migrator over `(version, description, sql)` steps.
pub(super) fn migrator(steps: &[(i64, &'static str, &'static str)]) -> Migrator {
    let migrations: Vec<Migration> = steps
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
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

/// The columns, in insert order.
pub(super) const COLUMNS: &str = "ts_ms, request_id, sub, kid, jti, model, provider, method, \
    input_tokens, output_tokens, estimated, cost_nanousd, duration_ms, outcome, status";

/// Rows per multi-row `INSERT`, largest first. A batch is cut into chunks
/// of these sizes only, so the database sees a handful of distinct
/// statements, each prepared once and then taken from the connection's
/// statement cache (a statement per batch length would be parsed anew for
/// almost every batch).
const CHUNK_ROWS: [usize; 4] = [128, 32, 8, 1];

/// `rows` cut into chunks of [`CHUNK_ROWS`] sizes, in order.
pub(super) fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_ROWS.into_iter().find(|n| *n <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// Implements `LedgerStore` for `$store` (a struct with a `pool: $pool`).
macro_rules! sql_store {
    ($store:ty, $db:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl $crate::ledger::LedgerStore for $store {
            fn name(&self) -> &'static str {
                $name
            }

            async fn insert(
                &self,
                rows: &[$crate::ledger::LedgerRow],
            ) -> Result<(), $crate::ledger::LedgerError> {
                let fail = |e: sqlx::Error| $crate::ledger::LedgerError::Query {
                    backend: $name,
                    reason: e.to_string(),
                };
                let mut tx = self.pool.begin().await.map_err(fail)?;
                for chunk in $crate::ledger::sql::chunks(rows) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                        "INSERT INTO usage_ledger ({}) ",
                        $crate::ledger::sql::COLUMNS
                    ));
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.ts_ms)
                            .push_bind(r.request_id.clone())
                            .push_bind(r.sub.clone())
                            .push_bind(r.kid.clone())
                            .push_bind(r.jti.clone())
                            .push_bind(r.model.clone())
                            .push_bind(r.provider.clone())
                            .push_bind(r.method.clone())
                            .push_bind(r.input_tokens)
                            .push_bind(r.output_tokens)
                            .push_bind(r.estimated)
                            .push_bind(r.cost_nanousd)
                            .push_bind(r.duration_ms)
                            .push_bind(r.outcome.clone())
                            .push_bind(r.status.clone());
                    });
                    q.build().execute(&mut *tx).await.map_err(fail)?;
                }
                tx.commit().await.map_err(fail)
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
    #[test]
    fn batches_are_cut_into_a_few_statement_sizes() {
        let rows: Vec<usize> = (0..300).collect();
        let sizes: Vec<usize> = super::chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, [128, 128, 32, 8, 1, 1, 1, 1]);
        let flat: Vec<usize> = super::chunks(&rows).flatten().copied().collect();
        assert_eq!(flat, rows);
        assert_eq!(super::chunks::<usize>(&[]).count(), 0);
    }
}
