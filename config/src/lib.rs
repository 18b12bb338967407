//! The one configuration model of the vibectl LLM proxy, shared by
//! `vibectl-edge` and `vibectl-core`: a TOML file whose every table rejects
//! unknown keys, whose every default lives in [`defaults`], and whose errors
//! name the key and the file. This crate reads and validates; it does not
//! watch files, resolve secrets or open sockets.

pub mod acme;
pub mod acme_dns;
pub mod catalogue;
pub mod connections;
pub mod core;
pub mod defaults;
mod dns_name;
pub mod edge;
mod error;
pub mod hsts;
pub mod jwt;
pub mod ledger;
pub mod limits;
pub mod logging;
pub mod models;
pub mod providers;
pub mod quota;
pub mod secret;
pub mod tls;
mod validate;

pub use crate::core::CoreConfig;
pub use acme::{AcmeChallenge, AcmeStorage, AcmeTls};
pub use acme_dns::{AcmeDns01, TsigAlgorithm};
pub use connections::ConnectionsConfig;
pub use edge::EdgeConfig;
pub use error::ConfigError;
pub use hsts::HstsConfig;
pub use jwt::JwtConfig;
pub use ledger::LedgerConfig;
pub use limits::{BackendFailure, LimitSet, LimitsBackend, LimitsConfig, MetricsConfig};
pub use models::ModelConfig;
pub use providers::{ProviderConfig, ProviderKind};
pub use quota::{QuotaConfig, QuotaSet, Usd};
pub use secret::Secret;
pub use tls::{ClientAuth, FilesTls, PrivateCaTls, SelfSignedTls, TlsConfig, TlsMode, TlsVersion};

use serde::Deserialize;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// The annotated default configuration that `init-config` writes.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../examples/vibectl-proxy.toml");

/// The whole configuration, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[edge]`.
    pub edge: EdgeConfig,
    /// `[core]`.
    pub core: CoreConfig,
    /// `[jwt]`.
    pub jwt: JwtConfig,
    /// `[tls]`.
    pub tls: TlsConfig,
    /// `[hsts]`.
    pub hsts: HstsConfig,
    /// `[connections]`.
    pub connections: ConnectionsConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[quota]`.
    pub quota: QuotaConfig,
    /// `[ledger]`.
    pub ledger: LedgerConfig,
    /// `[providers.NAME]`; when empty, `echo`, `openai` and `anthropic`.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[[models]]`; when empty, `echo` plus well-known models.
    pub models: Vec<ModelConfig>,
    /// The file this was read from, if any (for error messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            edge: EdgeConfig::default(),
            core: CoreConfig::default(),
            jwt: JwtConfig::default(),
            tls: TlsConfig::default(),
            hsts: HstsConfig::default(),
            connections: ConnectionsConfig::default(),
            limits: LimitsConfig::default(),
            metrics: MetricsConfig::default(),
            quota: QuotaConfig::default(),
            ledger: LedgerConfig::default(),
            providers: providers::default_providers(),
            models: models::default_models(),
            source: None,
        }
    }
}

impl Config {
    /// Parses and validates TOML text; `file` only labels errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                file: file.to_owned(),
                key,
                message: e.into_inner().message().to_owned(),
            }
        })?;
        cfg.source = Some(file.to_owned());
        cfg.fill_defaults();
        validate::validate(&cfg)?;
        Ok(cfg)
    }

    /// Reads `path`; with `None`, the file named by `VIBECTL_PROXY_CONFIG`,
    /// else `<state dir>/config.toml` if it exists, else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let explicit = path
            .map(Path::to_owned)
            .or_else(|| std::env::var_os(defaults::CONFIG_ENV).map(PathBuf::from));
        let file = match explicit {
            Some(file) => file,
            None => {
                let file = defaults::config_file();
                if !file.exists() {
                    return Ok(Self::default());
                }
                file
            }
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_toml(&text, &file)
    }

    /// Where errors about this configuration point.
    pub fn source_name(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<built-in defaults>".to_owned())
    }

    fn fill_defaults(&mut self) {
        if self.providers.is_empty() {
            self.providers = providers::default_providers();
        }
        if self.models.is_empty() {
            self.models = models::default_models();
        }
    }
}

#[cfg(test)]
mod tests;
