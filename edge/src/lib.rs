//! The internet-facing half of the vibectl LLM proxy. The edge terminates
//! TLS (rustls: self-signed, operator-supplied, private-CA or ACME
//! certificates swapped in without dropping connections, optional mutual
//! TLS, ALPN `h2`; the ACME plain HTTP listener is [`http01`]),
//! verifies `authorization: Bearer <jwt>` (HS256, tokens of the Python
//! vibectl-server verify unchanged), adds `Strict-Transport-Security` to every
//! response over TLS, and forwards each HTTP/2 stream frame by frame over h2c
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
pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod conn;
mod edge;
mod error;
mod fsutil;
pub mod http;
pub mod http01;
pub mod limits;
pub mod metrics;
mod plain_http;
pub mod reload;
mod server;
pub mod shutdown;
pub mod tls;

pub use admin::serve_admin;
pub use edge::{Edge, Readiness, Transport};
pub use error::EdgeError;
pub use reload::maintain;
pub use server::serve;
