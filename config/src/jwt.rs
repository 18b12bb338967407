//! `[jwt]`: how the edge makes and verifies tokens (the HS256 secret, the
//! key set, revocations, lifetimes, the failed-authentication budget).

use crate::{defaults, secret::Secret};
use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

/// `[jwt]`: how tokens are made and verified. The HS256 secret is looked up
/// in vibectl's order: `VIBECTL_JWT_SECRET`, `VIBECTL_JWT_SECRET_FILE`,
/// `secret_key`, `secret_key_file`, else generated once and saved. Beside it,
/// a key set (JWKS) holds asymmetric (ES256, RS256, EdDSA) and HS256 keys by
/// `kid`, each pinned to its algorithm, and a revocation list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// `iss` put into and required on tokens; empty string: not checked.
    pub issuer: String,
    /// The HS256 secret itself (prefer `secret_key_file`).
    pub secret_key: Option<Secret>,
    /// A file holding the HS256 secret.
    pub secret_key_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Lifetime of tokens from `generate-token` without `--expires-in`.
    #[serde(with = "humantime_serde")]
    pub default_expiry: Duration,
    /// `aud` put into and required on tokens; absent: not checked.
    pub audience: Option<String>,
    /// Longest lifetime (`exp - iat`, or `exp` - now without `iat`) a token
    /// may have, enforced when one is generated and when one is verified.
    /// Default one year; `"0s"` turns the bound off (a warning at start).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// The verification key set (JWKS: public keys, and HS256 `oct` keys,
    /// each with `kid` and a pinned `alg`), re-read when it changes. Default
    /// `<state_dir>/jwks.json`; a missing file is an empty set.
    pub jwks_file: Option<PathBuf>,
    /// Where `keys generate` writes private keys (0600), one file per `kid`.
    /// Default `<state_dir>/jwt-keys`. Only the host that signs tokens needs them.
    pub keys_dir: Option<PathBuf>,
    /// The key (by `kid`, in `jwks_file`) for tokens without a `kid`, and the
    /// one `generate-token` signs with. Absent: such tokens are HS256 with the
    /// secret above (Python-minted tokens keep working).
    pub default_kid: Option<String>,
    /// Revoked tokens (`vibectl-edge revoke-token`), one JSON object per
    /// line, re-read when it changes. Default `<state_dir>/revoked-tokens.jsonl`.
    pub revocation_file: Option<PathBuf>,
    /// How often the key set and revocation files are re-checked (changes
    /// are also picked up at once when the file system reports them).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Failed authentications one client address may make per
    /// `failure_window`; past it, its calls are refused at once without
    /// verification work. 0 turns the budget off.
    pub failure_budget: u32,
    /// The window of `failure_budget`.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: defaults::JWT_ISSUER.to_owned(),
            secret_key: None,
            secret_key_file: None,
            leeway: defaults::JWT_LEEWAY,
            default_expiry: defaults::JWT_DEFAULT_EXPIRY,
            audience: None,
            max_lifetime: defaults::JWT_MAX_LIFETIME,
            jwks_file: None,
            keys_dir: None,
            default_kid: None,
            revocation_file: None,
            reload_interval: defaults::JWT_RELOAD_INTERVAL,
            failure_budget: defaults::JWT_FAILURE_BUDGET,
            failure_window: defaults::JWT_FAILURE_WINDOW,
        }
    }
}

impl JwtConfig {
    /// `max_lifetime` in force: `None` when set to 0 (no bound).
    pub fn max_lifetime(&self) -> Option<Duration> {
        Some(self.max_lifetime).filter(|d| !d.is_zero())
    }

    /// The key set file in force (`jwks_file`, else `<state_dir>/jwks.json`).
    pub fn jwks_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.jwks_file
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::JWKS_FILE_NAME))
    }

    /// The private key directory in force (`keys_dir`, else `<state_dir>/jwt-keys`).
    pub fn keys_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::JWT_KEYS_DIR_NAME))
    }

    /// The revocation file in force (`revocation_file`, else
    /// `<state_dir>/revoked-tokens.jsonl`).
    pub fn revocation_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.revocation_file
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::REVOCATION_FILE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::{path::Path, time::Duration};

    #[test]
    fn jwt_keys_parse_and_paths_default_to_the_state_dir() {
        let text = "[jwt]\naudience = \"llm-proxy\"\nmax_lifetime = \"90d\"\n\
                    default_kid = \"k1\"\nreload_interval = \"250ms\"\nfailure_budget = 0\n";
        let cfg = Config::from_toml(text, Path::new("t.toml")).expect("parse");
        assert_eq!(cfg.jwt.audience.as_deref(), Some("llm-proxy"));
        assert_eq!(cfg.jwt.max_lifetime, Duration::from_secs(90 * 86_400));
        assert_eq!(cfg.jwt.reload_interval, Duration::from_millis(250));
        let state = Path::new("/state");
        assert_eq!(cfg.jwt.jwks_path(state), state.join("jwks.json"));
        assert_eq!(cfg.jwt.keys_path(state), state.join("jwt-keys"));
        assert_eq!(
            cfg.jwt.revocation_path(state),
            state.join("revoked-tokens.jsonl")
        );
        let typo = Config::from_toml("[jwt]\nmax_lifetme = \"1d\"\n", Path::new("t.toml"))
            .expect_err("typo");
        assert!(typo.to_string().contains("max_lifetme"), "{typo}");
    }
}
