//! The model names the real client knows: what vibectl 0.11.6 offers
//! (`vibectl/config.py`, default `claude-3.7-sonnet`) and what its `llm`
//! (0.36) and `llm-anthropic` (0.30) libraries register, ids and aliases
//! (`llm models list`). The core resolves each of them to a configured model
//! of the same provider kind, so a user who sets any of them, or none, gets
//! an answer (`[core] client_model_names = false` turns this off).

use crate::providers::ProviderKind;

/// Names the client may send, grouped by the default model that serves them.
#[derive(Debug)]
pub struct ClientNames {
    /// The provider kind whose models may serve these names.
    pub kind: ProviderKind,
    /// The model id that serves them when it is configured; otherwise the
    /// first configured model of a provider of [`Self::kind`].
    pub target: &'static str,
    /// The names, as the client sends them.
    pub names: &'static [&'static str],
}

const fn group(
    kind: ProviderKind,
    target: &'static str,
    names: &'static [&'static str],
) -> ClientNames {
    ClientNames {
        kind,
        target,
        names,
    }
}

use ProviderKind::{Anthropic, Openai};

/// Every client model name, with the model that serves it.
pub const CLIENT_NAMES: &[ClientNames] = &[
    group(
        Openai,
        "gpt-4o",
        &[
            "gpt-4o",
            "4o",
            "gpt-4",
            "4",
            "gpt4",
            "gpt-4-turbo",
            "gpt-4-turbo-2024-04-09",
            "gpt-4-turbo-preview",
            "4-turbo",
            "4t",
        ],
    ),
    group(
        Openai,
        "gpt-4o-mini",
        &[
            "gpt-4o-mini",
            "4o-mini",
            "gpt-3.5-turbo",
            "3.5",
            "chatgpt",
            "gpt-3.5-turbo-16k",
            "chatgpt-16k",
            "3.5-16k",
            "gpt-3.5-turbo-instruct",
            "3.5-instruct",
            "chatgpt-instruct",
        ],
    ),
    group(Openai, "gpt-4.1", &["gpt-4.1", "4.1"]),
    group(
        Openai,
        "gpt-4.1-mini",
        &["gpt-4.1-mini", "4.1-mini", "gpt-4.1-nano", "4.1-nano"],
    ),
    group(
        Openai,
        "gpt-5",
        &[
            "gpt-5",
            "gpt-5-2025-08-07",
            "o1",
            "o1-2024-12-17",
            "o3",
            "gpt-5.1",
            "gpt-5.2",
            "gpt-5.2-chat-latest",
            "gpt-5.4",
            "gpt-5.4-2026-03-05",
            "gpt-5.5",
            "gpt-5.5-2026-04-23",
            "gpt-5.6-sol",
            "gpt-5.6-terra",
            "gpt-5.6-luna",
            "gpt-6-astra",
            "gpt-6-sol",
            "gpt-6-luna",
        ],
    ),
    group(
        Openai,
        "gpt-5-mini",
        &[
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-5-mini-2025-08-07",
            "gpt-5-nano-2025-08-07",
            "o3-mini",
            "o4-mini",
            "gpt-5.4-mini",
            "gpt-5.4-mini-2026-03-17",
            "gpt-5.4-nano",
            "gpt-5.4-nano-2026-03-17",
        ],
    ),
    group(
        Anthropic,
        "claude-sonnet-4-5",
        &[
            "claude-3.7-sonnet",
            "claude-3.7-sonnet-latest",
            "anthropic/claude-3-7-sonnet-latest",
            "anthropic/claude-3-7-sonnet-20250219",
            "claude-3-sonnet",
            "anthropic/claude-3-sonnet-20240229",
            "claude-3.5-sonnet",
            "claude-3.5-sonnet-latest",
            "anthropic/claude-3-5-sonnet-latest",
            "anthropic/claude-3-5-sonnet-20240620",
            "anthropic/claude-3-5-sonnet-20241022",
            "claude-4-sonnet",
            "anthropic/claude-sonnet-4-0",
            "claude-sonnet-4.5",
            "anthropic/claude-sonnet-4-5",
            "claude-sonnet-4.6",
            "anthropic/claude-sonnet-4-6",
            "claude-sonnet-5",
            "anthropic/claude-sonnet-5",
            "claude-sonnet-5.5",
            "anthropic/claude-sonnet-5-5",
            "claude-fable-5",
            "anthropic/claude-fable-5",
            "claude-fable-5.1",
            "anthropic/claude-fable-5-1",
            "claude-mythos-preview",
            "anthropic/claude-mythos-preview",
            "claude-mythos-5",
            "anthropic/claude-mythos-5",
            "claude-mythos-5-1",
            "claude-mythos-5.1",
            "anthropic/claude-mythos-5-1",
        ],
    ),
    group(
        Anthropic,
        "claude-haiku-4-5",
        &[
            "claude-3-haiku",
            "anthropic/claude-3-haiku-20240307",
            "claude-3.5-haiku",
            "anthropic/claude-3-5-haiku-latest",
            "claude-haiku-4.5",
            "anthropic/claude-haiku-4-5-20251001",
            "claude-haiku-5-5",
            "claude-haiku-5.5",
            "anthropic/claude-haiku-5-5",
        ],
    ),
    group(
        Anthropic,
        "claude-opus-4-1",
        &[
            "claude-3.7-opus",
            "claude-3-opus",
            "anthropic/claude-3-opus-latest",
            "anthropic/claude-3-opus-20240229",
            "claude-4-opus",
            "anthropic/claude-opus-4-0",
            "claude-opus-4.1",
            "anthropic/claude-opus-4-1-20250805",
            "claude-opus-4.5",
            "anthropic/claude-opus-4-5-20251101",
            "claude-opus-4.6",
            "anthropic/claude-opus-4-6",
            "claude-opus-4.7",
            "anthropic/claude-opus-4-7",
            "claude-opus-4.8",
            "anthropic/claude-opus-4-8",
            "claude-opus-5",
            "anthropic/claude-opus-5",
            "claude-opus-5.5",
            "anthropic/claude-opus-5-5",
        ],
    ),
];

/// vibectl 0.11.6's default model (`llm.model`), sent when the user set none.
pub const CLIENT_DEFAULT_MODEL: &str = "claude-3.7-sonnet";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_include_the_client_default() {
        let mut seen = std::collections::HashSet::new();
        for g in CLIENT_NAMES {
            for n in g.names {
                assert!(seen.insert(*n), "{n} listed twice");
            }
        }
        assert!(seen.contains(CLIENT_DEFAULT_MODEL));
        for valid in [
            "gpt-4",
            "gpt-3.5-turbo",
            "claude-3.7-sonnet",
            "claude-3.7-opus",
        ] {
            assert!(seen.contains(valid), "vibectl's valid value {valid}");
        }
    }

    #[test]
    fn every_target_is_a_default_model() {
        let models = crate::models::default_models();
        for g in CLIENT_NAMES {
            assert!(
                models.iter().any(|m| m.id == g.target),
                "{} is not a default model",
                g.target
            );
        }
    }
}
