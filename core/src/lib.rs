//! `vibectl-core`: the unprivileged half of the vibectl LLM proxy. It serves
//! the gRPC service `vibectl.llm_proxy.VibectlLLMProxy` as plaintext HTTP/2
//! (h2c) on loopback or a Unix socket, behind the edge, which terminates TLS
//! and verifies JWTs and passes the verified subject in `x-vibectl-sub`.
//! The core resolves models and aliases ([`registry`]), calls providers
//! (built-in `echo`, OpenAI-compatible, Anthropic) with real streaming,
//! accounts tokens and cost, and holds the provider API keys. Of the
//! caller's limits that the edge passes in `x-vibectl-limit-*` headers it
//! enforces the two only it can ([`limits`]: the input length, which needs
//! the decoded request, and the deadline, which must cancel the provider
//! call); it exports Prometheus [`metrics`] on its own loopback listener.
//! It does no TLS, no authentication and no rate limiting: those are the
//! edge's.
//!
//! Embedding: bind a [`CoreListener`], then run [`serve`] (or
//! [`serve_with_metrics`]) until the cancellation token fires; the
//! `vibectl-core` binary does just that. [`health::check`] asks a running
//! core whether it is SERVING.

mod accounting;
mod call;
pub mod cli;
mod error;
pub mod health;
pub mod ledger;
pub mod limits;
mod listener;
pub mod metrics;
pub mod providers;
pub mod quota;
pub mod registry;
pub mod scope;
pub mod secrets;
mod server;
pub mod server_info;
mod service;
mod shared;
pub mod tokenizer;
pub mod usage_cli;

pub use error::CoreError;
pub use listener::CoreListener;
pub use server::{bind_metrics, serve, serve_with_metrics};
