//! `[[models]]`: the models clients may name, and the built-in ones when the
//! file names none.

use crate::defaults;
use serde::Deserialize;

/// `[[models]]`: one model clients may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients send as `model_name`.
    pub id: String,
    /// Key of the `[providers.NAME]` table that serves it.
    pub provider: String,
    /// The model's name at the provider, if it differs from `id`.
    pub upstream_model: Option<String>,
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Other names clients may use.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Context window, in tokens.
    pub max_context_length: Option<u32>,
    /// Price of input tokens, USD per million.
    pub input_usd_per_mtok: Option<f64>,
    /// Price of output tokens, USD per million.
    pub output_usd_per_mtok: Option<f64>,
    /// Maximum tokens to generate (required by Anthropic; default
    /// [`defaults::MAX_OUTPUT_TOKENS`]).
    pub max_output_tokens: Option<u32>,
}

fn model(
    id: &str,
    provider: &str,
    display: &str,
    aliases: &[&str],
    ctx: u32,
    price: (f64, f64),
) -> ModelConfig {
    ModelConfig {
        id: id.to_owned(),
        provider: provider.to_owned(),
        upstream_model: None,
        display_name: Some(display.to_owned()),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        max_context_length: Some(ctx),
        input_usd_per_mtok: Some(price.0),
        output_usd_per_mtok: Some(price.1),
        max_output_tokens: None,
    }
}

/// The models when the file names none: the offline `echo` and the current
/// OpenAI and Anthropic models (usable once their key is set). Every name the
/// client knows resolves to one of them ([`crate::catalogue`]).
pub fn default_models() -> Vec<ModelConfig> {
    vec![
        model(
            defaults::ECHO_MODEL,
            "echo",
            "Echo (offline, built in)",
            &[],
            1_000_000,
            (0.0, 0.0),
        ),
        model("gpt-4o", "openai", "GPT-4o", &["4o"], 128_000, (2.5, 10.0)),
        model(
            "gpt-4o-mini",
            "openai",
            "GPT-4o mini",
            &["4o-mini"],
            128_000,
            (0.15, 0.6),
        ),
        model(
            "gpt-4.1",
            "openai",
            "GPT-4.1",
            &["4.1"],
            1_047_576,
            (2.0, 8.0),
        ),
        model(
            "gpt-4.1-mini",
            "openai",
            "GPT-4.1 mini",
            &["4.1-mini"],
            1_047_576,
            (0.4, 1.6),
        ),
        model("gpt-5", "openai", "GPT-5", &[], 400_000, (1.25, 10.0)),
        model(
            "gpt-5-mini",
            "openai",
            "GPT-5 mini",
            &[],
            400_000,
            (0.25, 2.0),
        ),
        model(
            "claude-sonnet-4-5",
            "anthropic",
            "Claude Sonnet 4.5",
            &["sonnet"],
            200_000,
            (3.0, 15.0),
        ),
        model(
            "claude-haiku-4-5",
            "anthropic",
            "Claude Haiku 4.5",
            &["haiku"],
            200_000,
            (1.0, 5.0),
        ),
        model(
            "claude-opus-4-1",
            "anthropic",
            "Claude Opus 4.1",
            &["opus"],
            200_000,
            (15.0, 75.0),
        ),
    ]
}
