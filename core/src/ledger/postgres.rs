//! The ledger in PostgreSQL (`[ledger] url`), for many core replicas
//! writing one ledger. Connection errors never show the URL or password.

use super::{LedgerError, sql};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::{str::FromStr, time::Duration};

/// The PostgreSQL store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// What it is, for logs: `SQLite file …` or `PostgreSQL at host:port`.
    what: String,
    inserts: sql::Inserts,
}

sql::sql_store!(PostgresStore, sqlx::Postgres, "postgres");

impl PostgresStore {
    /// Connects to `url` (within a few seconds) and migrates.
    pub async fn open(url: &str) -> Result<Self, LedgerError> {
        let scrub = |text: String| {
            let mut text = text.replace(url, "<url>");
            if let Some(password) = password_of(url) {
                text = text.replace(password, "<redacted>");
            }
            text
        };
        let options = PgConnectOptions::from_str(url).map_err(|_| LedgerError::Open {
            key: "ledger.url",
            what: "PostgreSQL".into(),
            reason: "not a valid postgres:// URL".into(),
        })?;
        let what = format!(
            "PostgreSQL at {}:{}",
            options.get_host(),
            options.get_port()
        );
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| LedgerError::Open {
                key: "ledger.url",
                what: what.clone(),
                reason: scrub(e.to_string()),
            })?;
        sql::migrator(vec![(
            1,
            "usage ledger",
            sql::table_v1("BIGSERIAL PRIMARY KEY", "BIGINT"),
        )])
        .run(&pool)
        .await
        .map_err(|e| LedgerError::Open {
            key: "ledger.url",
            what: what.clone(),
            reason: scrub(format!("migration failed: {e}")),
        })?;
        Ok(Self {
            pool,
            what,
            inserts: sql::Inserts::postgres(),
        })
    }
}

impl PostgresStore {
    /// None: PostgreSQL is written through [`PostgresStore::insert_rows`]
    /// (async, from the pool).
    fn blocking_insert(&self, run: &mut dyn FnMut(Option<super::BlockingInsert<'_>>)) {
        run(None)
    }

    /// Stores `rows` in one transaction, in multi-row `INSERT`s of a few
    /// fixed sizes (each prepared once per connection).
    async fn insert_rows(&self, rows: &[super::CallRow]) -> Result<(), LedgerError> {
        let fail = |e: sqlx::Error| LedgerError::Query {
            backend: "postgres",
            reason: e.to_string(),
        };
        let mut tx = self.pool.begin().await.map_err(fail)?;
        for (i, chunk) in self.inserts.chunks(rows) {
            // Borrowed binds: no copy of a row's strings.
            let mut q = sqlx::query::<sqlx::Postgres>(self.inserts.statement(i));
            for r in chunk {
                q = q
                    .bind(r.ts_ms)
                    .bind(r.request_id.as_str())
                    .bind(r.sub.as_str())
                    .bind(r.kid.as_ref().map(super::Text::as_str))
                    .bind(r.jti.as_ref().map(super::Text::as_str))
                    .bind(r.model_id())
                    .bind(r.provider())
                    .bind(r.method)
                    .bind(i64::from(r.input_tokens))
                    .bind(i64::from(r.output_tokens))
                    .bind(r.estimated)
                    .bind(r.cost_nanousd)
                    .bind(r.duration_ms)
                    .bind(r.outcome)
                    .bind(&*r.status);
            }
            q.execute(&mut *tx).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }
}

/// The password in `postgres://user:password@host/…`, if any.
fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}
