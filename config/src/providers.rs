//! `[providers.NAME]`: the upstreams the core calls, their wire format
//! ([`ProviderKind`]), timeouts and retries, and the echo provider's
//! benchmark knobs; and the built-in providers when the file names none.

use crate::defaults;
use serde::Deserialize;
use std::{collections::BTreeMap, num::NonZeroU32, path::PathBuf, time::Duration};

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Built-in, offline: streams the input back.
    Echo,
    /// OpenAI Chat Completions (OpenAI, vLLM, llama.cpp, Ollama `/v1`, …).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
}

/// `[providers.NAME]`: one upstream. API keys are read by the core only,
/// from `api_key_env` or `api_key_file`, never from the config file itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawProviderConfig")]
pub struct ProviderConfig {
    /// `echo`, `openai` or `anthropic`.
    pub kind: ProviderKind,
    /// API base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret).
    pub api_key_file: Option<PathBuf>,
    /// Longest a call may take.
    pub timeout: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Retries before any output was produced (connect errors, 429, 5xx).
    pub max_retries: u32,
    /// Wait before the first retry; doubled at each further retry.
    pub retry_initial_backoff: Duration,
    /// Longest wait between two tries, also the cap on a provider's
    /// `retry-after` header.
    pub retry_max_backoff: Duration,
    /// `echo` only (benchmarks): stream the answer in this many text chunks
    /// (fewer when the answer has fewer characters). Unset: word groups, at
    /// most eight.
    pub chunks: Option<NonZeroU32>,
    /// `echo` only (benchmarks): answer with exactly this many characters,
    /// the user input repeated to fill them. Unset: the input once.
    pub answer_chars: Option<NonZeroU32>,
}

/// `[providers.NAME]` as written; [`ProviderConfig`] once the echo-only
/// knobs are checked against the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviderConfig {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    #[serde(default = "provider_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "provider_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "provider_max_retries")]
    max_retries: u32,
    #[serde(default = "provider_retry_initial_backoff", with = "humantime_serde")]
    retry_initial_backoff: Duration,
    #[serde(default = "provider_retry_max_backoff", with = "humantime_serde")]
    retry_max_backoff: Duration,
    chunks: Option<NonZeroU32>,
    answer_chars: Option<NonZeroU32>,
}

/// Why a `[providers.*]` entry's echo knobs (`chunks`, `answer_chars`) are refused.
#[derive(Debug, thiserror::Error)]
pub enum ProviderKnobError {
    /// An echo-only knob on another kind of provider.
    #[error(
        "`{key}` is a benchmark knob of kind = \"echo\" providers only; \
         this provider is kind = \"{kind}\": remove `{key}`"
    )]
    EchoOnly {
        /// The knob.
        key: &'static str,
        /// The provider's kind, lower case.
        kind: String,
    },
    /// A knob above its maximum.
    #[error("`{key}` = {value} is more than the maximum {max}")]
    TooLarge {
        /// The knob.
        key: &'static str,
        /// Its value.
        value: u32,
        /// The maximum.
        max: u32,
    },
}

impl TryFrom<RawProviderConfig> for ProviderConfig {
    type Error = ProviderKnobError;

    fn try_from(raw: RawProviderConfig) -> Result<Self, ProviderKnobError> {
        for (key, value, max) in [
            ("chunks", raw.chunks, defaults::ECHO_MAX_CHUNKS),
            (
                "answer_chars",
                raw.answer_chars,
                defaults::ECHO_MAX_ANSWER_CHARS,
            ),
        ] {
            let Some(value) = value else { continue };
            if raw.kind != ProviderKind::Echo {
                let kind = format!("{:?}", raw.kind).to_lowercase();
                return Err(ProviderKnobError::EchoOnly { key, kind });
            }
            if value.get() > max {
                return Err(ProviderKnobError::TooLarge {
                    key,
                    value: value.get(),
                    max,
                });
            }
        }
        Ok(Self {
            kind: raw.kind,
            base_url: raw.base_url,
            api_key_env: raw.api_key_env,
            api_key_file: raw.api_key_file,
            timeout: raw.timeout,
            connect_timeout: raw.connect_timeout,
            max_retries: raw.max_retries,
            retry_initial_backoff: raw.retry_initial_backoff,
            retry_max_backoff: raw.retry_max_backoff,
            chunks: raw.chunks,
            answer_chars: raw.answer_chars,
        })
    }
}

fn provider_timeout() -> Duration {
    defaults::PROVIDER_TIMEOUT
}
fn provider_connect_timeout() -> Duration {
    defaults::PROVIDER_CONNECT_TIMEOUT
}
fn provider_max_retries() -> u32 {
    defaults::PROVIDER_MAX_RETRIES
}
fn provider_retry_initial_backoff() -> Duration {
    defaults::PROVIDER_RETRY_INITIAL_BACKOFF
}
fn provider_retry_max_backoff() -> Duration {
    defaults::PROVIDER_RETRY_MAX_BACKOFF
}

impl ProviderConfig {
    /// A provider of `kind` with its default URL and key variable.
    pub fn builtin(kind: ProviderKind) -> Self {
        let (base_url, key_env) = match kind {
            ProviderKind::Echo => (None, None),
            ProviderKind::Openai => (Some("https://api.openai.com/v1"), Some("OPENAI_API_KEY")),
            ProviderKind::Anthropic => (
                Some("https://api.anthropic.com/v1"),
                Some("ANTHROPIC_API_KEY"),
            ),
        };
        Self {
            kind,
            base_url: base_url.map(str::to_owned),
            api_key_env: key_env.map(str::to_owned),
            api_key_file: None,
            timeout: defaults::PROVIDER_TIMEOUT,
            connect_timeout: defaults::PROVIDER_CONNECT_TIMEOUT,
            max_retries: defaults::PROVIDER_MAX_RETRIES,
            retry_initial_backoff: defaults::PROVIDER_RETRY_INITIAL_BACKOFF,
            retry_max_backoff: defaults::PROVIDER_RETRY_MAX_BACKOFF,
            chunks: None,
            answer_chars: None,
        }
    }
}

/// The providers when the file names none: `echo`, `openai`, `anthropic`.
pub fn default_providers() -> BTreeMap<String, ProviderConfig> {
    [
        ("echo", ProviderKind::Echo),
        ("openai", ProviderKind::Openai),
        ("anthropic", ProviderKind::Anthropic),
    ]
    .into_iter()
    .map(|(name, kind)| (name.to_owned(), ProviderConfig::builtin(kind)))
    .collect()
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml(text, Path::new("bench.toml"))
    }

    #[test]
    fn echo_knobs_parse_on_echo() {
        let cfg = parse(
            "[providers.bench]\nkind = \"echo\"\nchunks = 200\nanswer_chars = 4096\n\
             [[models]]\nid = \"bench\"\nprovider = \"bench\"\n",
        )
        .expect("valid");
        let p = &cfg.providers["bench"];
        assert_eq!(p.chunks.map(|n| n.get()), Some(200));
        assert_eq!(p.answer_chars.map(|n| n.get()), Some(4096));
    }

    #[test]
    fn echo_knobs_are_refused_elsewhere_naming_key_and_file() {
        for key in ["chunks", "answer_chars"] {
            let msg = parse(&format!("[providers.oa]\nkind = \"openai\"\n{key} = 10\n"))
                .expect_err("must fail")
                .to_string();
            assert!(
                msg.contains("bench.toml") && msg.contains("providers.oa") && msg.contains(key),
                "{msg}"
            );
        }
        let msg = parse("[providers.e]\nkind = \"echo\"\nchunks = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(msg.contains("providers.e.chunks"), "{msg}");
        let msg = parse("[providers.e]\nkind = \"echo\"\nanswer_chars = 99999999\n")
            .expect_err("too big")
            .to_string();
        assert!(
            msg.contains("answer_chars") && msg.contains("maximum"),
            "{msg}"
        );
        let msg = parse("[providers.e]\nkind = \"echo\"\nchunk = 3\n")
            .expect_err("typo")
            .to_string();
        assert!(msg.contains("chunk"), "{msg}");
    }
}
