//! Test support for the vibectl LLM proxy's end-to-end tests: fake LLM
//! providers that are real HTTP servers speaking the OpenAI and Anthropic
//! streaming wire formats, a harness that starts core and edge on
//! 127.0.0.1:0 with real TLS, and a real ACME server ([`pebble`]) and a real
//! authoritative DNS server ([`bind`]). Nothing
//! here is mocked at the trait level.

/// The bound on every wait (the harness's, HTTP/1.1 requests', …).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub mod acme_proxy;
pub mod bind;
pub mod call_timing;
pub mod fake_anthropic;
pub mod fake_core;
pub mod fake_openai;
pub mod harness;
pub mod http1;
pub mod logs;
pub mod pebble;
pub mod postgres;
pub mod redis_server;
pub mod scripted_provider;
pub mod server_process;
pub mod tcp_balancer;
