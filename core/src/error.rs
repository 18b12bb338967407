//! The errors `vibectl-core` returns at its boundary (binding, serving).
//! Provider failures are not here: they travel in-band to the client as
//! `ExecuteError`s (see [`crate::providers::ProviderError`]).

use std::path::PathBuf;

/// Why the core could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The listen address is neither `host:port` nor `unix:/path`.
    #[error("invalid listen address `{address}`: {reason}")]
    InvalidListenAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding the TCP listener failed.
    #[error("cannot listen on {address}: {source}")]
    BindTcp {
        /// The address as given.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Binding the Unix socket failed (or a non-socket file is in the way).
    #[error("cannot listen on unix socket {}: {source}", path.display())]
    BindUnix {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client for a provider could not be built.
    #[error("cannot build the HTTP client for provider `{provider}`: {message}")]
    HttpClient {
        /// The provider's name (`[providers.NAME]`).
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// gRPC reflection could not load the descriptor set.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(String),
    /// The metrics exporter could not be built.
    #[error("cannot set up the metrics: {0}")]
    Metrics(String),
    /// Binding the `/metrics` listener failed.
    #[error("cannot listen for /metrics on {address}: {source}")]
    BindMetrics {
        /// The address as given.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The usage ledger cannot be opened.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The quota backend cannot be set up.
    #[error("quotas: {0}")]
    Quota(String),
    /// Accepting connections failed for good.
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}
