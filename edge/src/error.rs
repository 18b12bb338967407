//! The errors the edge reports at its boundaries (start-up, CLI), each
//! variant named as the fact it reports. Per-request errors live beside the
//! layer that makes them ([`crate::auth::AuthError`],
//! [`crate::http::ForwardError`]) and become gRPC statuses in
//! [`crate::http::rescue`].

use std::{net::SocketAddr, path::PathBuf};

/// Why the edge (or one of its commands) could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A certificate could not be generated, read or used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A `ca` command failed.
    #[error(transparent)]
    Ca(#[from] crate::tls::ca::CaError),
    /// The JWT secret could not be found, read or saved.
    #[error(transparent)]
    Secret(#[from] crate::auth::SecretError),
    /// A token could not be made.
    #[error("cannot sign the token: {0}")]
    TokenSigning(String),
    /// `[limits]` cannot be set up (an invalid `limits.redis_url`; the
    /// message never holds the URL).
    #[error("[limits]: {0}")]
    Limits(String),
    /// The Prometheus metrics cannot be set up.
    #[error("[metrics]: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    /// A JWT key set, key file or revocation list cannot be used, or a
    /// token command was refused.
    #[error(transparent)]
    Jwt(#[from] crate::auth::JwtError),
    /// Authentication is required but no JWT secret was given.
    #[error("edge.require_auth is true but no JWT secret was given")]
    JwtSecretMissing,
    /// `edge.core_address` is not `host:port`, `http://host:port` or `unix:/path`.
    #[error("edge.core_address `{address}` is invalid: {reason}")]
    CoreAddressInvalid {
        /// The configured address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A listener failed in a way that is not about one connection.
    #[error("listener failed: {0}")]
    Listener(std::io::Error),
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done (`cannot write`, `cannot create directory`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    FileExists {
        /// The file.
        path: PathBuf,
    },
}
