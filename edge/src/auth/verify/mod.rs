//! [`TokenVerifier`]: one decision per token. The header is read first
//! (size, `alg: none`, `crit`), then the key is chosen by `kid` (or the
//! default key) and the header's `alg` must be the key's pinned one; only
//! then is the signature verified (jsonwebtoken, with exactly that
//! algorithm), and after it the claims: `exp`, `nbf`, `iss`, `aud`,
//! `jwt.max_lifetime`, `models`, revocation by `jti`.

use crate::auth::{
    AuthError, Claims, KeyAlg, KeySet, KeyStatus, MAX_TOKEN_BYTES, VerifyKey, cache::VerifiedCache,
    keys::is_plain_kid, now_secs, reload, revocation::Revocations,
};
use arc_swap::ArcSwap;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

mod header;
mod key_reload;
mod policy;
mod setup;

use header::{read_header, signature_was_verified};
pub use policy::Policy;

/// A token that verified: its claims and the key that verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The claims.
    pub claims: Claims,
    /// The `kid` of the key (`None`: the legacy HS256 secret).
    pub kid: Option<String>,
    /// The algorithm.
    pub alg: KeyAlg,
    /// What the request path derives from the token once (its identity
    /// headers for the core), kept with it.
    pub memo: HeaderMemo,
}

/// Headers derived once from a verified token and kept beside it: a token
/// remembered by the cache costs no formatting nor allocation per call.
/// Not part of the token: any two compare equal.
#[derive(Debug, Clone, Default)]
pub struct HeaderMemo(OnceLock<Vec<(http::HeaderName, http::HeaderValue)>>);

impl HeaderMemo {
    /// The headers, made by `make` on first use.
    pub fn get_or_init(
        &self,
        make: impl FnOnce() -> Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> &[(http::HeaderName, http::HeaderValue)] {
        self.0.get_or_init(make)
    }
}

impl PartialEq for HeaderMemo {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for HeaderMemo {}

/// One decision, with what the audit log may say about the token. Cheap
/// to clone (shared parts): a remembered decision is handed out per call.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Accepted, or why not.
    pub verdict: Result<Arc<Verified>, AuthError>,
    /// The header's `kid`, when it is a plain identifier.
    pub kid: Option<Arc<str>>,
    /// `sub` and `jti`, only when the signature verified (so they are
    /// authentic even if the token was refused, e.g. as revoked).
    pub sub: Option<Arc<str>>,
    /// See `sub`.
    pub jti: Option<Arc<str>>,
}

/// Verifies tokens; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct TokenVerifier {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) policy: Policy,
    legacy: Option<Arc<VerifyKey>>,
    default_kid: Option<String>,
    pub(crate) keys: ArcSwap<KeySet>,
    pub(crate) jwks_path: Option<PathBuf>,
    pub(crate) state_dir: Option<PathBuf>,
    /// Digest of the last file refused, so a bad file is logged once.
    bad_digest: Mutex<Option<[u8; 32]>>,
    pub(crate) revocations: Revocations,
    pub(crate) reload_interval: Duration,
    /// Tokens that verified (per key set, until `exp`).
    cache: VerifiedCache,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.shared.policy.issuer)
            .field("default_kid", &self.shared.default_kid)
            .field("keys", &self.shared.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The key set in force.
    pub fn key_set(&self) -> Arc<KeySet> {
        self.shared.keys.load_full()
    }

    /// The default `kid`, if one is configured.
    pub fn default_kid(&self) -> Option<&str> {
        self.shared.default_kid.as_deref()
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_token(token).map(|v| v.claims)
    }

    /// Verifies `token`: its claims and key.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        self.decide(token).verdict.map(Arc::unwrap_or_clone)
    }

    /// Verifies `token`, keeping what the audit log may show. A token
    /// accepted before under the same key set and not yet expired is not
    /// verified again; its revocation is checked on every call.
    pub fn decide(&self, token: &str) -> Decision {
        let shared = &self.shared;
        let keys = shared.keys.load();
        let now = now_secs();
        if let Some(mut hit) = shared.cache.get(token, &keys, now) {
            if let Some(jti) = &hit.jti
                && let Err(error) = shared.revocations.check(jti)
            {
                hit.verdict = Err(error);
            }
            return hit;
        }
        let mut decision = Decision {
            verdict: Err(AuthError::Malformed),
            kid: None,
            sub: None,
            jti: None,
        };
        // Verified under `keys`, the same snapshot the cache entry is tagged
        // with: a reload in between cannot mix two key sets.
        decision.verdict = self.decide_into(token, &keys, &mut decision).map(Arc::new);
        shared
            .cache
            .insert(token, arc_swap::Guard::into_inner(keys), &decision, now);
        decision
    }

    fn decide_into(
        &self,
        token: &str,
        keys: &KeySet,
        d: &mut Decision,
    ) -> Result<Verified, AuthError> {
        let mut kid = None;
        let key = self.header_and_key(token, keys, &mut kid);
        d.kid = kid.map(Arc::from);
        let key = key?;
        let policy = &self.shared.policy;
        let claims = match jsonwebtoken::decode::<Claims>(
            token,
            &key.decoding,
            policy.validation(key.alg),
        ) {
            Ok(data) => data.claims,
            Err(e) => {
                let error = self.shared.policy.classify(e.kind());
                if signature_was_verified(e.kind()) {
                    // The claims are authentic: the audit may name them.
                    if let Ok(c) = jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
                    {
                        d.sub = Some(c.sub.into());
                        d.jti = c.jti.map(Arc::from);
                    }
                }
                return Err(error);
            }
        };
        d.sub = Some(claims.sub.as_str().into());
        d.jti = claims.jti.as_deref().map(Arc::from);
        self.check_claims(&claims)?;
        Ok(Verified {
            claims,
            kid: key.kid.clone(),
            alg: key.alg,
            memo: HeaderMemo::default(),
        })
    }

    /// The checks before the signature: size, header (`alg: none`,
    /// `crit`), the key by `kid` and its pinned `alg`. `kid` gets the
    /// header's `kid` when it is a plain identifier.
    pub(super) fn header_and_key(
        &self,
        token: &str,
        keys: &KeySet,
        kid: &mut Option<String>,
    ) -> Result<Arc<VerifyKey>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let header = read_header(token)?;
        *kid = header.kid.clone().filter(|k| is_plain_kid(k));
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::Unsigned);
        }
        if header.crit.is_some() {
            return Err(AuthError::UnsupportedHeader);
        }
        let key = self.select_key(keys, header.kid.as_deref())?;
        if header.alg != key.alg.name() {
            return Err(AuthError::WrongAlgorithm {
                expected: key.alg.name().to_owned(),
            });
        }
        Ok(key)
    }

    fn select_key(&self, keys: &KeySet, kid: Option<&str>) -> Result<Arc<VerifyKey>, AuthError> {
        let from_set = |kid: &str| match keys.get(kid) {
            None => Err(AuthError::UnknownKey {
                kid: kid.to_owned(),
            }),
            Some(key) if key.status == KeyStatus::Retired => Err(AuthError::KeyRetired {
                kid: kid.to_owned(),
            }),
            Some(key) => Ok(key.clone()),
        };
        match (kid, &self.shared.default_kid, &self.shared.legacy) {
            (Some(kid), _, _) => from_set(kid),
            (None, Some(default), _) => from_set(default).map_err(|e| match e {
                AuthError::UnknownKey { .. } => AuthError::NoDefaultKey,
                other => other,
            }),
            (None, None, Some(legacy)) => Ok(legacy.clone()),
            (None, None, None) => Err(AuthError::NoDefaultKey),
        }
    }

    pub(super) fn check_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        self.shared.policy.check_claims(claims)?;
        if let Some(jti) = &claims.jti {
            self.shared.revocations.check(jti)?;
        }
        Ok(())
    }

    pub(super) fn wrong_issuer(&self) -> AuthError {
        self.shared.policy.wrong_issuer()
    }

    pub(super) fn wrong_audience(&self) -> AuthError {
        self.shared.policy.wrong_audience()
    }

    /// Re-reads the key set and revocation files now (the background task
    /// calls this on every file-system event and every `jwt.reload_interval`).
    /// A missing or invalid key set file keeps the last good set.
    pub fn reload(&self) {
        self.shared.reload_keys();
        self.shared.revocations.reload_file();
    }

    /// Reads the Redis revocation set once now (when Redis is configured);
    /// one-shot commands use it instead of the background poll.
    pub async fn sync_redis_once(&self) {
        let revocations = &self.shared.revocations;
        let Some(target) = &revocations.redis else {
            return;
        };
        match target.read().await {
            Ok(jtis) => revocations.store_redis(jtis),
            Err(error) => tracing::warn!(%error, "cannot read token revocations from Redis"),
        }
    }

    /// Starts the background work (file watching and periodic re-checks,
    /// Redis revocation sync) on the current tokio runtime, if there is one.
    /// It stops by itself when the last clone of this verifier is dropped.
    pub fn spawn_background(&self) -> bool {
        let shared = &self.shared;
        reload::spawn(
            Arc::downgrade(shared),
            &[shared.jwks_path.as_deref(), shared.revocations.file()],
            shared.reload_interval,
            shared.revocations.redis.clone(),
        )
    }
}
