//! Minting: a [`SigningKey`] (the legacy HS256 secret, or a private key file
//! of the key set, by `kid`) and a [`TokenSpec`] make a token with `sub`,
//! `iss`, `iat`, `exp`, a fresh UUID `jti`, and optionally `aud`, `nbf` and
//! `models`. The private key file never needs to be on the edge host.

use crate::auth::now_secs;
use crate::auth::{Audience, Claims, JwtError, KeyAlg, KeyError, claims::is_valid_model_name};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header};
use std::{path::Path, time::Duration};
use vibectl_config::Secret;

/// A key to sign with. Its `Debug` shows no key material.
pub struct SigningKey {
    /// The `kid` put in the header (`None`: the legacy secret, no `kid`).
    pub kid: Option<String>,
    /// The algorithm.
    pub alg: KeyAlg,
    key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The legacy HS256 secret (tokens without `kid`, as vibectl-server's).
    pub fn legacy(secret: &Secret) -> Self {
        Self {
            kid: None,
            alg: KeyAlg::HS256,
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    /// Reads the private key of `kid` from `path`: PKCS#8 PEM (or PKCS#1
    /// for RSA), or for HS256 the base64url secret.
    pub fn from_file(path: &Path, kid: &str, alg: KeyAlg) -> Result<Self, JwtError> {
        let bytes = std::fs::read(path).map_err(|source| JwtError::File {
            action: "cannot read the private key",
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: KeyError| JwtError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let key = match alg {
            KeyAlg::HS256 => {
                let text =
                    String::from_utf8(bytes).map_err(|_| bad(KeyError::Secret("not text")))?;
                let raw = URL_SAFE_NO_PAD
                    .decode(text.trim())
                    .map_err(|_| bad(KeyError::Secret("an HS256 key file holds base64url text")))?;
                if raw.len() < 32 {
                    return Err(bad(KeyError::Secret(
                        "an HS256 key needs at least 32 bytes",
                    )));
                }
                EncodingKey::from_secret(&raw)
            }
            _ => crate::auth::pem::signing_key(&bytes, alg).map_err(bad)?,
        };
        Ok(Self {
            kid: Some(kid.to_owned()),
            alg,
            key,
        })
    }
}

/// What goes into a token.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// `sub`.
    pub subject: String,
    /// `exp - iat`.
    pub lifetime: Duration,
    /// `iss` (empty: none).
    pub issuer: String,
    /// `aud`.
    pub audience: Option<String>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `models`: the models the token may use (absent: any).
    pub models: Option<Vec<String>>,
}

/// Mints a token for `spec` with `key`: header `alg` (and `kid` when the
/// key has one), a fresh UUID `jti`.
pub fn mint(key: &SigningKey, spec: &TokenSpec) -> Result<String, crate::EdgeError> {
    let refuse = |m: &str| crate::EdgeError::TokenSigning(m.to_owned());
    if spec.subject.trim().is_empty() {
        return Err(refuse("the subject must not be empty"));
    }
    if let Some(bad) = spec
        .models
        .iter()
        .flatten()
        .find(|m| !is_valid_model_name(m))
    {
        return Err(crate::EdgeError::TokenSigning(format!(
            "model name {bad:?} cannot be put in a token (visible ASCII, no comma)"
        )));
    }
    let now = now_secs();
    let lifetime = i64::try_from(spec.lifetime.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        sub: spec.subject.clone(),
        iss: (!spec.issuer.is_empty()).then(|| spec.issuer.clone()),
        iat: Some(now),
        exp: now.saturating_add(lifetime),
        jti: Some(uuid::Uuid::new_v4().to_string()),
        nbf: spec.not_before,
        aud: spec.audience.clone().map(Audience::One),
        models: spec.models.clone(),
    };
    let mut header = Header::new(key.alg.algorithm());
    header.kid = key.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key.key)
        .map_err(|e| crate::EdgeError::TokenSigning(e.to_string()))
}

/// Mints an HS256 token with the legacy secret for `subject` valid for
/// `lifetime`, with `iss` (when `issuer` is non-empty), `iat`, `exp` and a
/// fresh UUID `jti` — exactly what vibectl-server's `generate-token` makes.
#[cfg(any(test, feature = "test-support"))]
pub fn mint_token(
    secret: &Secret,
    issuer: &str,
    subject: &str,
    lifetime: Duration,
) -> Result<String, crate::EdgeError> {
    mint(
        &SigningKey::legacy(secret),
        &TokenSpec {
            subject: subject.to_owned(),
            lifetime,
            issuer: issuer.to_owned(),
            ..TokenSpec::default()
        },
    )
}
