//! The model registry, built once from `[[models]]` and `[providers.*]`:
//! ids, display names, aliases, context lengths, prices, and the default
//! model. Resolving a requested name gives the model to call or an error
//! that lists what exists.

use crate::secrets::Credentials;
use std::{collections::HashMap, fmt, sync::Arc};
use vibectl_config::{Config, ProviderKind, defaults};

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

/// All models, by id and alias, and the default.
#[derive(Debug)]
pub struct Registry {
    models: Vec<Arc<ModelEntry>>,
    by_name: HashMap<String, usize>,
    default_model: Option<String>,
}

impl Registry {
    /// Builds the registry. Without `core.default_model`, the default is the
    /// first model of a non-`echo` provider whose credentials are present,
    /// else `echo`. A model naming an unknown provider is skipped (config
    /// validation already rejects that in files).
    pub fn from_config(cfg: &Config) -> Self {
        let mut models = Vec::new();
        let mut by_name = HashMap::new();
        for m in &cfg.models {
            let Some(provider) = cfg.providers.get(&m.provider) else {
                tracing::warn!(model = %m.id, provider = %m.provider, "model names an unknown provider; skipped");
                continue;
            };
            let index = models.len();
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                by_name.entry(name.clone()).or_insert(index);
            }
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
        let mut registry = Self {
            models,
            by_name,
            default_model: None,
        };
        registry.default_model = registry.pick_default(cfg);
        registry
    }

    fn pick_default(&self, cfg: &Config) -> Option<String> {
        if let Some(name) = &cfg.core.default_model {
            return self.get(name).map(|m| m.id.clone());
        }
        let with_credentials = self.models.iter().find(|m| {
            m.kind != ProviderKind::Echo
                && cfg
                    .providers
                    .get(&m.provider)
                    .is_some_and(|p| Credentials::lookup(&m.provider, p).usable())
        });
        with_credentials
            .or_else(|| self.models.iter().find(|m| m.id == defaults::ECHO_MODEL))
            .or_else(|| self.models.iter().find(|m| m.kind == ProviderKind::Echo))
            .map(|m| m.id.clone())
    }

    fn get(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.by_name.get(name).and_then(|&i| self.models.get(i))
    }

    /// The model to call for a request's `model_name` (`None` or empty
    /// means the default).
    pub fn resolve(&self, requested: Option<&str>) -> Result<Arc<ModelEntry>, ResolveError> {
        let requested = requested.map(str::trim).filter(|n| !n.is_empty());
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

    /// Every model, in configuration order.
    pub fn models(&self) -> &[Arc<ModelEntry>] {
        &self.models
    }

    /// The default model's id, if there is one.
    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    /// `echo, gpt-4o (aliases: 4o), …` for error messages.
    fn known(&self) -> String {
        if self.models.is_empty() {
            return "(none configured)".to_owned();
        }
        let list: Vec<String> = self
            .models
            .iter()
            .map(|m| match m.aliases.as_slice() {
                [] => m.id.clone(),
                aliases => format!("{} (aliases: {})", m.id, aliases.join(", ")),
            })
            .collect();
        list.join(", ")
    }
}

/// `alias → model id` for every alias of `models`.
pub fn alias_map<'a>(
    models: impl IntoIterator<Item = &'a Arc<ModelEntry>>,
) -> HashMap<String, String> {
    models
        .into_iter()
        .flat_map(|m| m.aliases.iter().map(|a| (a.clone(), m.id.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(extra: &str) -> Registry {
        let text = format!(
            "[providers.echo]\nkind = \"echo\"\n\
             [providers.openai]\nkind = \"openai\"\napi_key_env = \"VIBECTL_TEST_NEVER_SET_KEY\"\n\
             [[models]]\nid = \"gpt-x\"\nprovider = \"openai\"\naliases = [\"x\"]\n\
             input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 8.0\n\
             [[models]]\nid = \"echo\"\nprovider = \"echo\"\n{extra}"
        );
        let cfg = Config::from_toml(&text, std::path::Path::new("t.toml")).expect("config");
        Registry::from_config(&cfg)
    }

    #[test]
    fn echo_is_default_without_credentials() {
        let r = registry("");
        assert_eq!(r.default_model(), Some("echo"));
        assert_eq!(r.resolve(None).expect("default").id, "echo");
        assert_eq!(r.resolve(Some("")).expect("default").id, "echo");
    }

    #[test]
    fn first_model_with_credentials_is_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-x\n").expect("write");
        let text = format!(
            "[providers.echo]\nkind = \"echo\"\n\
             [providers.a]\nkind = \"anthropic\"\napi_key_env = \"VIBECTL_TEST_NEVER_SET_KEY\"\n\
             [providers.o]\nkind = \"openai\"\napi_key_file = \"{}\"\n\
             [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
             [[models]]\nid = \"claude\"\nprovider = \"a\"\n\
             [[models]]\nid = \"gpt\"\nprovider = \"o\"\n",
            key.display()
        );
        let cfg = Config::from_toml(&text, std::path::Path::new("t.toml")).expect("config");
        assert_eq!(Registry::from_config(&cfg).default_model(), Some("gpt"));
    }

    #[test]
    fn configured_default_and_aliases() {
        let r = registry("[core]\ndefault_model = \"x\"\n");
        assert_eq!(r.default_model(), Some("gpt-x"));
        assert_eq!(r.resolve(Some("x")).expect("alias").id, "gpt-x");
        assert_eq!(
            alias_map(r.models()).get("x").map(String::as_str),
            Some("gpt-x")
        );
    }

    #[test]
    fn unknown_model_lists_what_exists() {
        let err = registry("").resolve(Some("gpt-9")).expect_err("must fail");
        assert_eq!(err.code(), "MODEL_NOT_FOUND");
        let msg = err.to_string();
        assert!(
            msg.contains("gpt-9") && msg.contains("gpt-x (aliases: x)") && msg.contains("echo"),
            "{msg}"
        );
    }

    #[test]
    fn cost_uses_prices_per_million() {
        let r = registry("");
        let m = r.resolve(Some("gpt-x")).expect("model");
        let cost = m.cost_usd(1_000, 500).expect("priced");
        assert!((cost - (0.002 + 0.004)).abs() < 1e-12, "{cost}");
        assert_eq!(
            r.resolve(Some("echo")).expect("echo").cost_usd(10, 10),
            None
        );
    }
}
