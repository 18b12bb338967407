//! Opens the store `[ledger]` names: PostgreSQL when a URL is given (in
//! the file, an environment variable or a file of its own), else SQLite.

use super::{LedgerError, LedgerStore, postgres::PostgresStore, sqlite::SqliteStore};
use std::sync::Arc;
use vibectl_config::Config;

/// The configured store, migrated; an unreachable database is an error
/// naming the key (never the URL).
pub async fn open_store(whole: &Config) -> Result<Arc<dyn LedgerStore>, LedgerError> {
    let config = &whole.ledger;
    let url = if let Some(url) = &config.url {
        Some(url.expose().to_owned())
    } else if let Some(var) = &config.url_env {
        Some(std::env::var(var).map_err(|_| LedgerError::Open {
            key: "ledger.url_env",
            what: "PostgreSQL".into(),
            reason: format!("environment variable {var} is not set"),
        })?)
    } else if let Some(file) = &config.url_file {
        Some(
            std::fs::read_to_string(file)
                .map_err(|e| LedgerError::Open {
                    key: "ledger.url_file",
                    what: "PostgreSQL".into(),
                    reason: format!("cannot read {}: {e}", file.display()),
                })?
                .trim()
                .to_owned(),
        )
    } else {
        None
    };
    Ok(match url {
        Some(url) => Arc::new(PostgresStore::open(&url).await?),
        None => Arc::new(SqliteStore::open(&config.sqlite_file(&whole.edge.state_dir())).await?),
    })
}
