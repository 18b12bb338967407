//! What every call shares, built once at start: the registry, the
//! providers, the server name and the metrics. The service ([`crate::service`])
//! and each call ([`crate::call`]) hold it.

use crate::{error::CoreError, metrics::Metrics, providers::Providers, registry::Registry};
use vibectl_config::Config;

/// What every call shares: built once at start.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) providers: Providers,
    pub(crate) server_name: String,
    pub(crate) metrics: Metrics,
    /// Quotas and the usage ledger.
    pub(crate) usage: crate::quota::Usage,
}

impl Shared {
    pub(crate) fn new(
        config: &Config,
        metrics: Metrics,
        usage: crate::quota::Usage,
    ) -> Result<Self, CoreError> {
        let registry = Registry::from_config(config);
        Ok(Self {
            server_name: crate::server_info::server_name(&config.core.server_name, &registry),
            registry,
            providers: Providers::from_config(config)?,
            metrics,
            usage,
        })
    }
}
