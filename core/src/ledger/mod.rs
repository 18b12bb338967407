//! The usage ledger: one row per call (who, which model, tokens, cost,
//! duration, how it ended), kept in a database — SQLite in the state
//! directory by default, PostgreSQL for many replicas. Calls never wait for
//! it: [`Ledger::record`] queues the row and a writer task stores rows in
//! batches ([`writer`]); a graceful shutdown flushes the queue
//! ([`Ledger::close`]). `vibectl-core usage` reports from it ([`report`]).

mod metrics;
mod open;
mod postgres;
pub mod report;
mod sql;
mod sqlite;
mod sqlite_ids;
mod sqlite_schema;
mod sqlite_write;
mod store;
mod text;
mod writer;

pub use metrics::LedgerMetrics;
pub use open::open_store;
pub use store::{BlockingInsert, LedgerError, LedgerStore, Total};
pub use text::Text;
pub use writer::Ledger;

use crate::registry::ModelEntry;
use serde::Serialize;
use std::{borrow::Cow, sync::Arc};

/// One call as the core queues it for the ledger: the model shared with
/// the registry (its id and provider's name are not copied per call), the
/// fixed words borrowed, the call's own strings copied inline ([`Text`]:
/// the ledger's thread frees no memory of the call's). Stored as a
/// [`LedgerRow`].
#[derive(Debug, Clone)]
pub struct CallRow {
    /// When the call ended, unix milliseconds.
    pub ts_ms: i64,
    /// The call's request id.
    pub request_id: Text,
    /// The token's `sub` (`-` without one).
    pub sub: Text,
    /// The key id that verified the token.
    pub kid: Option<Text>,
    /// The token's `jti`.
    pub jti: Option<Text>,
    /// The model (none when none resolved).
    pub model: Option<Arc<ModelEntry>>,
    /// `Execute` or `StreamExecute`.
    pub method: &'static str,
    /// Input tokens charged.
    pub input_tokens: u32,
    /// Output tokens charged.
    pub output_tokens: u32,
    /// True when a count is the core's estimate, not the provider's.
    pub estimated: bool,
    /// Cost in nano-USD.
    pub cost_nanousd: i64,
    /// Wall time of the call.
    pub duration_ms: i64,
    /// `ok`, `failed`, `cancelled`, `deadline_exceeded`, `refused`.
    pub outcome: &'static str,
    /// The status or in-band error code.
    pub status: Cow<'static, str>,
}

impl CallRow {
    /// The model id (empty when none resolved).
    pub fn model_id(&self) -> &str {
        self.model.as_deref().map_or("", |m| m.id.as_str())
    }

    /// The provider's name (empty when no model resolved).
    pub fn provider(&self) -> &str {
        self.model.as_deref().map_or("", |m| m.provider.as_str())
    }
}

/// One call, as the ledger keeps it (read back by reports; a call writes a
/// [`CallRow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    /// When the call ended, unix milliseconds.
    pub ts_ms: i64,
    /// The call's request id.
    pub request_id: String,
    /// The token's `sub` (`-` without one).
    pub sub: String,
    /// The key id that verified the token.
    pub kid: Option<String>,
    /// The token's `jti`.
    pub jti: Option<String>,
    /// The model id (empty when none resolved).
    pub model: String,
    /// The provider's name.
    pub provider: String,
    /// `Execute` or `StreamExecute`.
    pub method: String,
    /// Input tokens charged.
    pub input_tokens: i64,
    /// Output tokens charged.
    pub output_tokens: i64,
    /// True when a count is the core's estimate, not the provider's.
    pub estimated: bool,
    /// Cost in nano-USD.
    pub cost_nanousd: i64,
    /// Wall time of the call.
    pub duration_ms: i64,
    /// `ok`, `failed`, `cancelled`, `deadline_exceeded`, `refused`.
    pub outcome: String,
    /// The status or in-band error code (`OK`, `EXECUTION_FAILED`,
    /// `RESOURCE_EXHAUSTED`, …).
    pub status: String,
}
