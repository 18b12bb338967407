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
            inserts: sql::Inserts::new(true),
        })
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
