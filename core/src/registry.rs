//! The model registry, built once from `[[models]]` and `[providers.*]`:
//! ids, display names, aliases, context lengths, prices, and the default
//! model. Resolving a requested name gives the model to call or an error
//! that lists what exists.

use crate::secrets::Credentials;
use std::{collections::HashMap, fmt, sync::Arc};
use vibectl_config::{Config, ProviderKind, catalogue, defaults};

/// One model clients may name.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The id clients send and the one reported as `actual_model_used`.
    pub id: String,
    /// Human-readable name (the id when none is configured).
    pub display_name: String,
    /// Name of the `[providers.NAME]` table that serves it.
    pub provider: String,
    /// The wire format of that provider.
    pub kind: ProviderKind,
    /// The model's name at the provider.
    pub upstream_model: String,
    /// Other names clients may use.
    pub aliases: Vec<String>,
    /// Context window, in tokens.
    pub max_context_length: Option<u32>,
    /// USD per million input tokens.
    pub input_usd_per_mtok: Option<f64>,
    /// USD per million output tokens.
    pub output_usd_per_mtok: Option<f64>,
    /// Most tokens a call may generate, if configured (Anthropic, which
    /// requires a value, then uses [`defaults::MAX_OUTPUT_TOKENS`]).
    pub max_output_tokens: Option<u32>,
}

impl ModelEntry {
    /// Cost of a call in USD; `None` when the model has no price at all (a
    /// single missing price counts as free).
    pub fn cost_usd(&self, input_tokens: u32, output_tokens: u32) -> Option<f64> {
        if self.input_usd_per_mtok.is_none() && self.output_usd_per_mtok.is_none() {
            return None;
        }
        let per_token = |price: Option<f64>| price.unwrap_or(0.0) / 1_000_000.0;
        Some(
            f64::from(input_tokens) * per_token(self.input_usd_per_mtok)
                + f64::from(output_tokens) * per_token(self.output_usd_per_mtok),
        )
    }
}

/// Why a requested model cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The request named no model and there is no default.
    NoModel {
        /// The models that exist, for the message.
        known: String,
    },
    /// The requested name is neither a model id nor an alias.
    NotFound {
        /// The name as requested.
        name: String,
        /// The models and aliases that exist.
        known: String,
    },
}

impl ResolveError {
    /// The in-band `ExecuteError.error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoModel { .. } => "NO_MODEL",
            Self::NotFound { .. } => "MODEL_NOT_FOUND",
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoModel { known } => write!(
                f,
                "no model given and no default model is configured; name one of: {known}"
            ),
            Self::NotFound { name, known } => {
                write!(f, "model `{name}` not found; available models: {known}")
            }
        }
    }
}

/// All models, by id, alias and client model name, and the default.
#[derive(Debug)]
pub struct Registry {
    models: Vec<Arc<ModelEntry>>,
    /// Ids and configured aliases first, then the client's model names
    /// ([`catalogue::CLIENT_NAMES`]) not already taken.
    by_name: HashMap<String, usize>,
    /// Per model: its provider had credentials at start (echo always).
    usable: Vec<bool>,
    /// When no provider but echo has credentials: the echo model that
    /// answers every name.
    offline_echo: Option<usize>,
    default_model: Option<String>,
}

/// The one line said at start and in `GetServerInfo` when echo answers for
/// every model because no provider key is configured.
pub const OFFLINE_NOTE: &str = "no provider API key configured: the offline echo model answers \
     every model name (set OPENAI_API_KEY or ANTHROPIC_API_KEY for the core to use real models)";

impl Registry {
    /// Builds the registry. Without `core.default_model`, the default is the
    /// first model of a non-`echo` provider whose credentials are present,
    /// else `echo`. A model naming an unknown provider is skipped (config
    /// validation already rejects that in files). Credentials are looked up
    /// once, here: which models are listed is decided at start.
    pub fn from_config(cfg: &Config) -> Self {
        let mut models = Vec::new();
        let mut by_name = HashMap::new();
        let mut usable = Vec::new();
        for m in &cfg.models {
            let Some(provider) = cfg.providers.get(&m.provider) else {
                tracing::warn!(model = %m.id, provider = %m.provider, "model names an unknown provider; skipped");
                continue;
            };
            let index = models.len();
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                by_name.entry(name.clone()).or_insert(index);
            }
            usable.push(Credentials::lookup(&m.provider, provider).usable());
            models.push(Arc::new(ModelEntry {
                id: m.id.clone(),
                display_name: m.display_name.clone().unwrap_or_else(|| m.id.clone()),
                provider: m.provider.clone(),
                kind: provider.kind,
                upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.id.clone()),
                aliases: m.aliases.clone(),
                max_context_length: m.max_context_length,
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                max_output_tokens: m.max_output_tokens,
            }));
        }
        if cfg.core.client_model_names {
            add_client_names(&models, &mut by_name);
        }
        let no_provider_key = models
            .iter()
            .zip(&usable)
            .all(|(m, usable)| m.kind == ProviderKind::Echo || !usable);
        let offline_echo = (no_provider_key && cfg.core.echo_fallback)
            .then(|| {
                models
                    .iter()
                    .position(|m| m.id == defaults::ECHO_MODEL)
                    .or_else(|| models.iter().position(|m| m.kind == ProviderKind::Echo))
            })
            .flatten();
        let mut registry = Self {
            models,
            by_name,
            usable,
            offline_echo,
            default_model: None,
        };
        registry.default_model = registry.pick_default(cfg);
        registry
    }

    fn pick_default(&self, cfg: &Config) -> Option<String> {
        if let Some(name) = &cfg.core.default_model {
            return self.get(name).map(|m| m.id.clone());
        }
        let with_credentials = self
            .models
            .iter()
            .zip(&self.usable)
            .find(|(m, usable)| m.kind != ProviderKind::Echo && **usable)
            .map(|(m, _)| m);
        with_credentials
            .or_else(|| self.models.iter().find(|m| m.id == defaults::ECHO_MODEL))
            .or_else(|| self.models.iter().find(|m| m.kind == ProviderKind::Echo))
            .map(|m| m.id.clone())
    }

    /// The model `name` means (id, alias or client model name), without the
    /// offline fallback.
    pub fn get(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.by_name.get(name).and_then(|&i| self.models.get(i))
    }

    /// The model to call for a request's `model_name` (`None` or empty
    /// means the default). With no provider key configured, every name but
    /// another echo model's is answered by echo.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Arc<ModelEntry>, ResolveError> {
        let requested = requested.map(str::trim).filter(|n| !n.is_empty());
        if let Some(echo) = self.offline_echo.and_then(|i| self.models.get(i)) {
            let named = requested.and_then(|n| self.get(n));
            return Ok(named
                .filter(|m| m.kind == ProviderKind::Echo)
                .unwrap_or(echo)
                .clone());
        }
        let name = match requested.or(self.default_model.as_deref()) {
            Some(name) => name,
            None => {
                return Err(ResolveError::NoModel {
                    known: self.known(),
                });
            }
        };
        self.get(name)
            .cloned()
            .ok_or_else(|| ResolveError::NotFound {
                name: name.to_owned(),
                known: self.known(),
            })
    }

    /// For a model scope: the id of the model `name` means (or `name` when
    /// it means none) and every name that means the same model.
    pub fn scope_names(&self, name: &str) -> (String, Vec<String>) {
        match self.by_name.get(name) {
            Some(&index) => {
                let names = self
                    .by_name
                    .iter()
                    .filter(|(_, i)| **i == index)
                    .map(|(n, _)| n.clone())
                    .collect();
                (self.models[index].id.clone(), names)
            }
            None => (name.to_owned(), Vec::new()),
        }
    }

    /// Every name a client may send (ids, aliases, client model names).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every model, in configuration order.
    pub fn models(&self) -> &[Arc<ModelEntry>] {
        &self.models
    }

    /// The models that can answer, in configuration order: those whose
    /// provider has credentials, or only echo when no provider has any.
    pub fn listed(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models
            .iter()
            .zip(&self.usable)
            .filter(|(m, usable)| match self.offline_echo {
                Some(_) => m.kind == ProviderKind::Echo,
                None => **usable,
            })
            .map(|(m, _)| m)
    }

    /// True when no provider key is configured and echo answers every name.
    pub fn offline(&self) -> bool {
        self.offline_echo.is_some()
    }

    /// The default model's id, if there is one (echo when offline).
    pub fn default_model(&self) -> Option<&str> {
        match self.offline_echo {
            Some(i) => Some(self.models[i].id.as_str()),
            None => self.default_model.as_deref(),
        }
    }

    /// `echo, gpt-4o (aliases: 4o), …` (the models that can answer, else
    /// every model) for error messages.
    fn known(&self) -> String {
        let describe = |m: &Arc<ModelEntry>| match m.aliases.as_slice() {
            [] => m.id.clone(),
            aliases => format!("{} (aliases: {})", m.id, aliases.join(", ")),
        };
        let listed: Vec<String> = self.listed().map(describe).collect();
        if !listed.is_empty() {
            return listed.join(", ");
        }
        if self.models.is_empty() {
            return "(none configured)".to_owned();
        }
        let all: Vec<String> = self.models.iter().map(describe).collect();
        format!("{} (none has credentials)", all.join(", "))
    }
}

/// Adds every client model name not already an id or alias: to its target
/// model when configured, else to the first model of a provider of its kind.
fn add_client_names(models: &[Arc<ModelEntry>], by_name: &mut HashMap<String, usize>) {
    for group in catalogue::CLIENT_NAMES {
        let target = models
            .iter()
            .position(|m| m.id == group.target && m.kind == group.kind)
            .or_else(|| models.iter().position(|m| m.kind == group.kind));
        let Some(target) = target else { continue };
        for name in group.names {
            by_name.entry((*name).to_owned()).or_insert(target);
        }
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
