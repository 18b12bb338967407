//! `[core]`: the settings of the unprivileged process that holds provider
//! keys (where it listens, its default model, shutdown). The upstreams it
//! calls are [`crate::providers`], the models clients name [`crate::models`].

use crate::defaults;
use serde::Deserialize;
use std::time::Duration;

/// `[core]`: the unprivileged process that holds provider keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// `host:port` for h2c over TCP (loopback by default) or `unix:/path`.
    pub listen: String,
    /// The name reported by `GetServerInfo`.
    pub server_name: String,
    /// Model used when a request names none. Default: `echo` unless a
    /// provider key is configured, then the first model with credentials.
    pub default_model: Option<String>,
    /// Resolve the model names the vibectl client and its `llm` libraries
    /// know (see [`crate::catalogue`]) to a configured model of the same
    /// provider kind. `false`: only ids and `aliases` of `[[models]]`.
    pub client_model_names: bool,
    /// With no provider key configured at all, the offline `echo` model
    /// answers every model name (logged at start, and said in
    /// `GetServerInfo`). `false`: names keep their models, which then fail
    /// with the missing key named.
    pub echo_fallback: bool,
    /// Grace period for in-flight calls at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            listen: defaults::CORE_LISTEN.to_owned(),
            server_name: defaults::SERVER_NAME.to_owned(),
            default_model: None,
            client_model_names: true,
            echo_fallback: true,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
        }
    }
}
