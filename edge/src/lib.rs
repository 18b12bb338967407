//! The internet-facing half of the vibectl LLM proxy. The edge terminates
//! TLS (rustls: self-signed, operator-supplied, private-CA or ACME
//! certificates swapped in without dropping connections, optional mutual
//! TLS, ALPN `h2`; the ACME plain HTTP listener is [`http01`]),
//! verifies `authorization: Bearer <jwt>` (HS256 with the shared secret, so
//! tokens of the Python vibectl-server verify unchanged, or ES256, RS256 and
//! EdDSA keys of a JWKS key set; revoked tokens are refused), adds
//! `Strict-Transport-Security` to every response over TLS, and forwards each HTTP/2 stream frame by frame over h2c
//! to the core, which holds the provider keys. It never parses the gRPC
//! messages it forwards, never holds a provider key, and never talks to an
//! LLM itself. Per-token [`limits`] (rate, concurrency, deadline; in memory
//! or shared through Redis; hot-reloaded by [`maintain`]) and Prometheus
//! [`metrics`] sit in the request path of [`http`].
//!
//! Run it as the `vibectl-edge` binary, or in-process (as the end-to-end
//! tests do): bind [`app::Binds`], then [`app::EdgeApp::build`] from a
//! [`vibectl_config::Config`] — the one place an edge is assembled — and
//! wait on the [`app::Running`] edge until a
//! [`CancellationToken`](tokio_util::sync::CancellationToken) fires.

#![warn(missing_docs)]

// The public API: the composition root, the commands of the binary.
pub mod cli;
pub mod shutdown;

// Domain modules: private to the crate unless the `test-support` feature
// is on (the end-to-end tests and benches reach them). Written as cfg
// pairs, not through a macro, so that `cargo fmt` sees their files.
#[cfg(feature = "test-support")]
pub mod app;
#[cfg(not(feature = "test-support"))]
mod app;
#[cfg(feature = "test-support")]
pub mod auth;
#[cfg(not(feature = "test-support"))]
mod auth;
#[cfg(feature = "test-support")]
pub mod conn;
#[cfg(not(feature = "test-support"))]
mod conn;
#[cfg(feature = "test-support")]
pub mod http;
#[cfg(not(feature = "test-support"))]
mod http;
#[cfg(feature = "test-support")]
pub mod limits;
#[cfg(not(feature = "test-support"))]
mod limits;
#[cfg(feature = "test-support")]
pub mod reload;
#[cfg(not(feature = "test-support"))]
mod reload;
#[cfg(feature = "test-support")]
pub mod tls;
#[cfg(not(feature = "test-support"))]
mod tls;

mod admin;
mod audit;
mod edge;
mod error;
mod file_watch;
mod fsutil;
mod http01;
mod metrics;
mod plain_http;
mod server;
mod shared_redis;

pub(crate) use admin::serve_admin;
pub use conn::fd::{FdLimit, raise_nofile};
pub use edge::Edge;
pub(crate) use edge::Transport;
pub use error::EdgeError;
pub(crate) use reload::maintain;
pub(crate) use server::serve;
