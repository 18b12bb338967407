//! The ledger's storage: one trait, one implementation per database
//! (SQLite, PostgreSQL), each with its own versioned migrations.

use super::{CallRow, LedgerRow};
use std::fmt;

/// The ledger database failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// It cannot be opened or reached at start.
    #[error("{key}: cannot open the usage ledger ({what}): {reason}")]
    Open {
        /// The config key to look at.
        key: &'static str,
        /// `SQLite file /x/usage.db` or `PostgreSQL at host:port` (never the password).
        what: String,
        /// Why.
        reason: String,
    },
    /// A statement failed.
    #[error("usage ledger ({backend}) failed: {reason}")]
    Query {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// Tokens and cost of one subject on one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// The `sub`.
    pub sub: String,
    /// The model id.
    pub model: String,
    /// Input + output tokens.
    pub tokens: u64,
    /// Nano-USD.
    pub cost_nanousd: u64,
}

/// Stores a batch in one transaction, on the thread that calls it.
pub type BlockingInsert<'a> = &'a mut dyn FnMut(&[CallRow]) -> Result<(), LedgerError>;

/// A ledger database.
#[async_trait::async_trait]
pub trait LedgerStore: Send + Sync + fmt::Debug {
    /// `sqlite` or `postgres`.
    fn name(&self) -> &'static str;
    /// What it is, for logs: `SQLite file /x/usage.db` or `PostgreSQL at
    /// host:port` (never a password).
    fn describe(&self) -> &str;
    /// Stores `rows` in one transaction.
    async fn insert(&self, rows: &[CallRow]) -> Result<(), LedgerError>;
    /// Calls `run` once, with a blocking insert that keeps its connection
    /// and prepared statements for the whole of `run` (the ledger's writer
    /// thread runs in it: SQLite), or with `None` (then the writer uses
    /// [`LedgerStore::insert`]).
    fn with_blocking_insert(&self, run: &mut dyn FnMut(Option<BlockingInsert<'_>>));
    /// The rows with `since_ms <= ts_ms < until_ms`, of `sub` if given, oldest first.
    async fn rows(
        &self,
        since_ms: i64,
        until_ms: i64,
        sub: Option<&str>,
    ) -> Result<Vec<LedgerRow>, LedgerError>;
    /// Totals by subject and model since `since_ms`.
    async fn totals(&self, since_ms: i64) -> Result<Vec<Total>, LedgerError>;
}
