//! The wire format of an HTTP/SSE provider: everything that differs between
//! OpenAI-compatible and Anthropic APIs (URL, body, authentication, stream
//! events, error bodies). [`super::http`] does the rest (client, retries,
//! timeouts, the SSE loop) for any [`WireFormat`]; a new HTTP provider is
//! one file implementing it plus one line in [`super::Providers`].

use super::{ProviderError, ProviderRequest, Usage};
use eventsource_stream::Event;
use serde_json::Value;
use vibectl_config::Secret;

/// One provider event stream's SSE event, parsed.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parsed {
    pub text: Option<String>,
    pub usage: Option<Usage>,
    pub done: bool,
}

/// What an HTTP provider's API looks like on the wire.
pub(super) trait WireFormat: std::fmt::Debug + Send + Sync + 'static {
    /// The base URL when `base_url` is not configured.
    fn default_base_url(&self) -> &'static str;
    /// The path of the streaming call, after the base URL.
    fn path(&self) -> &'static str;
    /// The JSON request body.
    fn body(&self, req: &ProviderRequest) -> Value;
    /// Adds the key (marked sensitive) and any fixed headers.
    fn authorize(&self, rb: reqwest::RequestBuilder, key: &Secret) -> reqwest::RequestBuilder;
    /// One SSE event of the answer.
    fn parse(&self, event: &Event) -> Result<Parsed, ProviderError>;
    /// The message of an error response body, if it has the API's shape.
    fn error_message(&self, body: &str) -> Option<String>;
}

/// Implements [`WireFormat`] for a format type with the functions of the
/// module it is invoked in: `body`, `authorize`, `parse`, `error_message`
/// (each wire format is one file of those four).
macro_rules! wire_format {
    ($ty:ident, base_url: $base:literal, path: $path:literal) => {
        impl $crate::providers::format::WireFormat for $ty {
            fn default_base_url(&self) -> &'static str {
                $base
            }
            fn path(&self) -> &'static str {
                $path
            }
            fn body(&self, req: &$crate::providers::ProviderRequest) -> serde_json::Value {
                body(req)
            }
            fn authorize(
                &self,
                rb: reqwest::RequestBuilder,
                key: &vibectl_config::Secret,
            ) -> reqwest::RequestBuilder {
                authorize(rb, key)
            }
            fn parse(
                &self,
                event: &eventsource_stream::Event,
            ) -> Result<$crate::providers::format::Parsed, $crate::providers::ProviderError> {
                parse(event)
            }
            fn error_message(&self, body: &str) -> Option<String> {
                error_message(body)
            }
        }
    };
}
pub(super) use wire_format;

/// A token count read as `u64`, saturated to `u32`.
pub(super) fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
