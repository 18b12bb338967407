//! LLM providers behind one interface: each call becomes a stream of
//! [`ProviderEvent`]s (text deltas as they arrive, usage, the retry count,
//! or one failure that ends the stream): a [`Provider`]. `echo` is built in
//! and offline; `openai` and `anthropic` are [`format::WireFormat`]s of one
//! HTTP/SSE client ([`http`]). To add a provider kind: one file here (a
//! `WireFormat`, or a `Provider` of its own) and its line in
//! [`Providers::from_config`] (plus the kind in `vibectl_config`).
//! Dropping a provider stream drops the HTTP response, which closes the
//! provider connection: that is how cancellation reaches the provider.

mod anthropic;
mod echo;
mod error;
mod format;
mod http;
mod openai;
mod schema_instance;

pub use error::ProviderError;

use crate::{error::CoreError, registry::ModelEntry};
use futures::Stream;
use std::{collections::HashMap, pin::Pin, sync::Arc};
use vibectl_config::{Config, ProviderKind};

/// Token counts as a provider reports them; either part may come alone
/// (Anthropic sends input first and output at the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: Option<u32>,
    /// Generated tokens.
    pub output_tokens: Option<u32>,
}

/// One thing that happened during a provider call, in order.
#[derive(Debug)]
pub enum ProviderEvent {
    /// The next piece of the answer.
    Text(String),
    /// Token usage (merged by the caller: later values replace earlier ones).
    Usage(Usage),
    /// The call was retried this many times before it produced output.
    Retried(u32),
    /// The call failed; nothing follows.
    Failed(ProviderError),
}

/// What a provider is asked.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// The resolved model.
    pub model: Arc<ModelEntry>,
    /// System prompt fragments, in order.
    pub system: Vec<String>,
    /// User prompt fragments, in order.
    pub user: Vec<String>,
    /// The parsed `response_model_schema`, if any.
    pub schema: Option<serde_json::Value>,
}

impl ProviderRequest {
    /// The system fragments as one prompt.
    pub fn system_prompt(&self) -> String {
        self.system.join("\n\n")
    }
    /// The user fragments as one message.
    pub fn user_prompt(&self) -> String {
        self.user.join("\n\n")
    }
}

/// The events of one call. Ends after `Failed` or after the provider's own
/// end marker; a stream cut short yields `Failed(StreamBroken)`.
pub type EventStream = Pin<Box<dyn Stream<Item = ProviderEvent> + Send>>;

/// One configured provider: turns a call into its events.
trait Provider: std::fmt::Debug + Send + Sync {
    /// Starts the call. Nothing happens until the stream is polled;
    /// dropping it cancels the call.
    fn stream(self: Arc<Self>, request: ProviderRequest) -> EventStream;
}

/// Every `[providers.NAME]`, ready to call.
#[derive(Debug)]
pub struct Providers {
    by_name: HashMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// Builds one HTTP client per HTTP provider (with its connect timeout).
    pub fn from_config(cfg: &Config) -> Result<Self, CoreError> {
        install_crypto_provider();
        let mut by_name = HashMap::new();
        for (name, pcfg) in &cfg.providers {
            let http = |wire| http::HttpProvider::new(name, pcfg, wire);
            let provider: Arc<dyn Provider> = match pcfg.kind {
                ProviderKind::Echo => Arc::new(echo::Echo::from_config(pcfg)),
                ProviderKind::Openai => Arc::new(http(&openai::OpenAi)?),
                ProviderKind::Anthropic => Arc::new(http(&anthropic::Anthropic)?),
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Self { by_name })
    }

    /// Starts a call to the model's provider. Nothing happens until the
    /// stream is polled; dropping it cancels the call.
    pub fn stream(&self, request: ProviderRequest) -> EventStream {
        match self.by_name.get(&request.model.provider) {
            Some(provider) => provider.clone().stream(request),
            None => {
                let name = request.model.provider.clone();
                Box::pin(futures::stream::iter([ProviderEvent::Failed(
                    ProviderError::NotConfigured(name),
                )]))
            }
        }
    }
}

/// Installs ring as the process's rustls provider (for reqwest's
/// `rustls-no-provider`); a second call is a no-op.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
