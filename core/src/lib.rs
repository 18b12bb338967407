//! `vibectl-core`: the unprivileged half of the vibectl LLM proxy. It serves
//! the gRPC service `vibectl.llm_proxy.VibectlLLMProxy` as plaintext HTTP/2
//! (h2c) on loopback or a Unix socket, behind the edge, which terminates TLS
//! and verifies JWTs and passes the verified caller in `x-vibectl-caller`.
//! The core resolves models and aliases ([`registry`]), calls providers
//! (built-in `echo`, OpenAI-compatible, Anthropic) with real streaming,
//! accounts tokens and cost, and holds the provider API keys. Of the
//! caller's limits that the edge passes in the `x-vibectl-limits` header it
//! enforces the two only it can ([`limits`]: the input length, which needs
//! the decoded request, and the deadline, which must cancel the provider
//! call); it enforces token and cost budgets (`[quota]`), records calls
//! in the usage ledger (`[ledger]`: SQLite or PostgreSQL), and exports
//! Prometheus [`metrics`] on its own loopback listener. It does no TLS, no
//! authentication and no rate limiting: those are the edge's.
//!
//! Embedding: bind a [`CoreListener`], then run [`serve`] (or
//! [`serve_with_metrics`]) until the cancellation token fires; the
//! `vibectl-core` binary does just that. [`health::check`] asks a running
//! core whether it is SERVING.

// The public API: the binary's commands, the health probe, the usage reports.
pub mod cli;
pub mod health;
pub mod usage_cli;

// Domain modules: private to the crate unless the `test-support` feature
// is on (the end-to-end tests and benches reach them). Written as cfg
// pairs, not through a macro, so that `cargo fmt` sees their files.
#[cfg(feature = "test-support")]
pub mod ledger;
#[cfg(not(feature = "test-support"))]
mod ledger;
// The quota bench (tests/src/bin/quota_bench/main.rs) and the quota tests
// drive it directly.
#[cfg(feature = "test-support")]
pub mod quota;
#[cfg(not(feature = "test-support"))]
mod quota;
#[cfg(feature = "test-support")]
pub mod registry;
#[cfg(not(feature = "test-support"))]
mod registry;

mod accounting;
mod call;
mod conn_batch;
mod error;
mod limits;
mod listener;
mod metrics;
mod providers;
mod scope;
mod secrets;
mod server;
mod server_info;
mod service;
mod shared;
mod tokenizer;

pub use error::CoreError;
pub use listener::CoreListener;
pub use server::{bind_metrics, serve, serve_with_metrics};
