//! Provider API keys: read by the core only, from the provider's
//! `api_key_env` or `api_key_file` (trimmed). A call takes its provider's
//! key from a [`KeyCache`]: looked up when the provider is built, again once
//! the lookup is [`KEY_REFRESH`] old, and at once after the provider refused
//! a key (401 or 403), so a rotated Kubernetes Secret is picked up without
//! a restart while a call reads no file (no blocking work before its
//! request is sent). Keys live in [`Secret`] and are never logged, put in an
//! error, or put in a URL; [`redact`] scrubs a key from text a provider sent
//! back.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};
use vibectl_config::{ProviderConfig, ProviderKind, Secret};

/// How long a looked-up key is used before it is looked up again.
pub const KEY_REFRESH: Duration = Duration::from_secs(10);

/// What a provider has to authenticate with.
#[derive(Debug)]
pub enum Credentials {
    /// The provider needs none (`echo`).
    BuiltIn,
    /// A non-empty key was found.
    Present(Secret),
    /// No key: `hint` says what to set (it names the variable or file).
    Missing {
        /// E.g. `set OPENAI_API_KEY`.
        hint: String,
    },
}

impl Credentials {
    /// Looks the key of provider `name` up: the environment variable first,
    /// then the file.
    pub fn lookup(name: &str, cfg: &ProviderConfig) -> Self {
        if cfg.kind == ProviderKind::Echo {
            return Self::BuiltIn;
        }
        if let Some(var) = &cfg.api_key_env
            && let Ok(value) = std::env::var(var)
            && !value.trim().is_empty()
        {
            return Self::Present(Secret::new(value.trim()));
        }
        if let Some(file) = &cfg.api_key_file
            && let Ok(value) = std::fs::read_to_string(file)
            && !value.trim().is_empty()
        {
            return Self::Present(Secret::new(value.trim()));
        }
        let hint = match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(var), Some(file)) => {
                format!("set {var} or put the key in {}", file.display())
            }
            (Some(var), None) => format!("set {var}"),
            (None, Some(file)) => format!("put the key in {}", file.display()),
            (None, None) => format!("set api_key_env or api_key_file in [providers.{name}]"),
        };
        Self::Missing { hint }
    }

    /// True when a call could authenticate.
    pub fn usable(&self) -> bool {
        !matches!(self, Self::Missing { .. })
    }

    /// For `vibectl-core models`: `yes`, `built in` or `missing: <hint>`.
    pub fn describe(&self) -> String {
        match self {
            Self::BuiltIn => "built in".to_owned(),
            Self::Present(_) => "yes".to_owned(),
            Self::Missing { hint } => format!("missing: {hint}"),
        }
    }
}

/// A provider's [`Credentials`], looked up at most once per
/// [`KEY_REFRESH`] (see the module doc).
#[derive(Debug)]
pub struct KeyCache {
    slot: Mutex<Option<(Instant, Arc<Credentials>)>>,
}

impl KeyCache {
    /// A cache holding `first`, a lookup made now.
    pub fn new(first: Credentials) -> Self {
        Self {
            slot: Mutex::new(Some((Instant::now(), Arc::new(first)))),
        }
    }

    /// The cached credentials while they are fresh, else `lookup`'s.
    pub fn get(&self, lookup: impl FnOnce() -> Credentials) -> Arc<Credentials> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, credentials)) = slot.as_ref()
            && at.elapsed() < KEY_REFRESH
        {
            return credentials.clone();
        }
        let credentials = Arc::new(lookup());
        *slot = Some((Instant::now(), credentials.clone()));
        credentials
    }

    /// The provider refused the key: the next call looks it up again.
    pub fn refused(&self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// `text` with every occurrence of `key` replaced by `<redacted>` (a
/// provider may quote the key it was sent in an error message).
pub fn redact(text: &str, key: &Secret) -> String {
    let k = key.expose();
    if k.len() < 4 {
        return text.to_owned();
    }
    text.replace(k, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ProviderConfig {
        ProviderConfig::builtin(ProviderKind::Openai)
    }

    /// A provider whose key is `contents` of a file in a new directory
    /// (kept alive by the caller), and that file.
    fn key_in_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf, ProviderConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key");
        std::fs::write(&file, contents).expect("write");
        let mut cfg = provider();
        cfg.api_key_env = None;
        cfg.api_key_file = Some(file.clone());
        (dir, file, cfg)
    }

    #[test]
    fn file_key_is_trimmed() {
        let (_dir, _, cfg) = key_in_file("  sk-test-123\n");
        match Credentials::lookup("openai", &cfg) {
            Credentials::Present(k) => assert_eq!(k.expose(), "sk-test-123"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_key_names_the_variable() {
        let mut cfg = provider();
        cfg.api_key_env = Some("VIBECTL_TEST_NEVER_SET_KEY".into());
        let c = Credentials::lookup("openai", &cfg);
        assert!(!c.usable());
        assert_eq!(c.describe(), "missing: set VIBECTL_TEST_NEVER_SET_KEY");
        cfg.api_key_env = None;
        let c = Credentials::lookup("x", &cfg);
        assert!(c.describe().contains("[providers.x]"));
    }

    #[test]
    fn echo_needs_nothing() {
        let cfg = ProviderConfig::builtin(ProviderKind::Echo);
        assert_eq!(Credentials::lookup("echo", &cfg).describe(), "built in");
    }

    #[test]
    fn the_cache_reads_the_file_again_only_when_stale_or_refused() {
        let (_dir, file, cfg) = key_in_file("sk-old");
        let lookup = || Credentials::lookup("openai", &cfg);
        let cache = KeyCache::new(lookup());
        let key = |c: &KeyCache| match &*c.get(lookup) {
            Credentials::Present(k) => k.expose().to_owned(),
            other => panic!("{other:?}"),
        };
        std::fs::write(&file, "sk-new").expect("rotate");
        assert_eq!(key(&cache), "sk-old", "fresh: no file read");
        cache.refused();
        assert_eq!(key(&cache), "sk-new", "refused: read again");
        std::fs::remove_file(&file).expect("remove");
        *cache.slot.lock().expect("lock") =
            Some((Instant::now() - KEY_REFRESH, Arc::new(Credentials::BuiltIn)));
        assert!(
            !cache.get(lookup).usable(),
            "stale: read again (now missing)"
        );
    }

    #[test]
    fn redact_scrubs_the_key() {
        let key = Secret::new("sk-abcdef");
        assert_eq!(redact("bad key sk-abcdef!", &key), "bad key <redacted>!");
    }
}
