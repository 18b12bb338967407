//! `vibectl-core`: the unprivileged half of the vibectl LLM proxy. It serves
//! the gRPC service `vibectl.llm_proxy.VibectlLLMProxy` as plaintext HTTP/2
//! (h2c) on loopback or a Unix socket, behind the edge, which terminates TLS
//! and verifies JWTs and passes the verified subject in `x-vibectl-sub`.
//! The core resolves models and aliases ([`registry`]), calls providers
//! (built-in `echo`, OpenAI-compatible, Anthropic) with real streaming,
//! accounts tokens and cost, and holds the provider API keys. It does no
//! TLS, no authentication and no rate limiting: those are the edge's.
//!
//! Embedding: bind a [`CoreListener`], then run [`serve`] until the
//! cancellation token fires; the `vibectl-core` binary does just that.

mod accounting;
mod call;
pub mod cli;
mod error;
mod listener;
pub mod providers;
pub mod registry;
pub mod secrets;
mod server;
mod service;
pub mod tokenizer;

pub use error::CoreError;
pub use listener::CoreListener;
pub use server::serve;
pub use service::SUB_HEADER;
