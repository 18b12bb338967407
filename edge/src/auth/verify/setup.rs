//! How a [`TokenVerifier`] is made: from a bare HS256 secret, or from a
//! running edge's configuration (key set, default key, legacy secret,
//! revocations), with the checks that refuse a bad setup at start.

use super::{Policy, Shared, TokenVerifier};
use crate::auth::{
    JwtError, KeySet, KeyStatus, VerifyKey, cache::VerifiedCache, fingerprint,
    revocation::Revocations,
};
use crate::shared_redis::SharedRedis;
use arc_swap::ArcSwap;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use vibectl_config::{Config, JwtConfig, Secret};

use super::key_reload::check_jwks_mode;

impl TokenVerifier {
    /// A verifier of HS256 tokens signed with `secret` only (no key set, no
    /// revocation list), with the policy of `jwt`.
    pub fn new(secret: &Secret, jwt: &JwtConfig) -> Self {
        Self::build(
            Policy::from_config(jwt),
            Some(secret),
            None,
            KeySet::default(),
            None,
            Revocations::none(),
            jwt.reload_interval,
            None,
        )
    }

    /// The verifier of a running edge: the key set (`jwt.jwks_file`), the
    /// default key (`jwt.default_kid`, else the legacy `secret`; with
    /// neither, tokens without `kid` are refused), the
    /// revocation file and, with `[limits] backend = "redis"`, the edge's
    /// `redis`. A bad key set or a default key that is not in it is an
    /// error here; later, a bad file only keeps the last good set
    /// ([`TokenVerifier::reload`]).
    pub fn from_config(
        config: &Config,
        secret: Option<&Secret>,
        redis: Option<SharedRedis>,
    ) -> Result<Self, JwtError> {
        let jwt = &config.jwt;
        let state_dir = config.edge.state_dir();
        let jwks_path = jwt.jwks_path(&state_dir);
        let keys = KeySet::read(&jwks_path)?.unwrap_or_default();
        let default_kid = jwt.default_kid.clone().filter(|k| !k.is_empty());
        if let Some(kid) = &default_kid {
            match keys.get(kid) {
                None => {
                    return Err(JwtError::Config {
                        key: "jwt.default_kid",
                        reason: format!(
                            "key `{kid}` is not in the key set {} (add it with `vibectl-edge keys generate --kid {kid}` or `keys import`)",
                            jwks_path.display()
                        ),
                    });
                }
                Some(key) if key.status == KeyStatus::Retired => {
                    return Err(JwtError::Config {
                        key: "jwt.default_kid",
                        reason: format!("key `{kid}` is retired"),
                    });
                }
                Some(_) => {}
            }
        }
        let secret = if default_kid.is_some() { None } else { secret };
        if let Some(secret) = secret {
            check_secret(secret)?;
        }
        check_jwks_mode(&jwks_path, &keys);
        fingerprint::check_key_set(&state_dir, &keys);
        let revocations = Revocations::from_config(config, redis)?;
        let verifier = Self::build(
            Policy::from_config(jwt),
            secret,
            default_kid,
            keys,
            Some(jwks_path),
            revocations,
            jwt.reload_interval,
            Some(state_dir),
        );
        Ok(verifier)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        policy: Policy,
        secret: Option<&Secret>,
        default_kid: Option<String>,
        keys: KeySet,
        jwks_path: Option<PathBuf>,
        revocations: Revocations,
        reload_interval: Duration,
        state_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                policy,
                legacy: secret.map(|s| Arc::new(VerifyKey::legacy(s.expose()))),
                default_kid,
                keys: ArcSwap::from_pointee(keys),
                jwks_path,
                state_dir,
                bad_digest: Mutex::new(None),
                revocations,
                reload_interval,
                cache: VerifiedCache::default(),
            }),
        }
    }
}

/// Refuses a secret that is an asymmetric key: a public key is public, so
/// HMAC with it would let anyone sign.
fn check_secret(secret: &Secret) -> Result<(), JwtError> {
    let value = secret.expose();
    if value.contains("-----BEGIN") || value.trim_start().starts_with("{\"") {
        return Err(JwtError::Config {
            key: "jwt.secret_key",
            reason: "the HS256 secret looks like a PEM or JWK key; an asymmetric key must \
                     never serve as an HMAC secret (add it to the key set with \
                     `vibectl-edge keys import` instead)"
                .into(),
        });
    }
    if value.len() < 32 {
        tracing::warn!(
            bytes = value.len(),
            "the HS256 secret is shorter than 32 bytes; a short secret can be guessed offline \
             from any token"
        );
    }
    Ok(())
}
