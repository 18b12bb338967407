//! `token inspect`: a token's header and claims, and whether this edge
//! would accept it and why, by a verifier built as `serve` builds it.

use super::*;
use crate::{
    EdgeError,
    auth::{JwtError, SecretEnv, TokenVerifier, Verified, lookup_existing_secret},
    shared_redis::SharedRedis,
    tls::files::unix_to_rfc3339,
};
use serde_json::Value;
use vibectl_config::Config;

/// What `token inspect` found.
#[derive(Debug)]
pub struct Inspection {
    /// The header (unverified).
    pub header: Value,
    /// The claims (unverified).
    pub claims: Value,
    /// This edge's decision, by the real verifier.
    pub verdict: Result<Verified, crate::auth::AuthError>,
    /// What the edge verifies with: the state dir, the HS256 secret's
    /// source (or none), the key set file.
    pub keys: String,
}

impl Inspection {
    /// True when the edge would accept the token.
    pub fn accepted(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        writeln!(f, "header: {}", show(&self.header))?;
        writeln!(f, "claims: {}", show(&self.claims))?;
        for claim in ["iat", "nbf", "exp"] {
            if let Some(t) = self.claims.get(claim).and_then(Value::as_i64) {
                writeln!(f, "  {claim}: {}", unix_to_rfc3339(t))?;
            }
        }
        match &self.verdict {
            Ok(v) => writeln!(
                f,
                "this edge would ACCEPT it: sub `{}`, {} key {}",
                v.claims.sub,
                v.alg,
                v.kid
                    .as_deref()
                    .map_or("(legacy HS256 secret, no kid)".to_owned(), |k| format!(
                        "`{k}`"
                    ))
            ),
            Err(e) => writeln!(f, "this edge would REFUSE it: {e} [{}]", e.reason()),
        }?;
        writeln!(f, "{}", self.keys)
    }
}

/// Inspects a token: header, claims, and the decision of a verifier built
/// exactly as `serve` builds it (key set, default key, revocations — Redis
/// read once when configured). Never generates a secret.
pub async fn inspect(
    config: &Config,
    env: &SecretEnv,
    token: &str,
) -> Result<Inspection, EdgeError> {
    let (header, claims) = unverified_parts(token)?;
    let state_dir = config.edge.state_dir();
    let found = lookup_existing_secret(env, &config.jwt, &state_dir)?;
    let jwks = config.jwt.jwks_path(&state_dir);
    let keys = format!(
        "this edge (state dir {}) verifies with: HS256 secret from {}; key set {}{}",
        state_dir.display(),
        found.as_ref().map_or(
            "(none: no secret configured or saved yet)".to_owned(),
            |(_, source)| { source.to_string() }
        ),
        jwks.display(),
        if jwks.exists() { "" } else { " (absent)" },
    );
    let secret = found.map(|(s, _)| s);
    let redis = SharedRedis::from_limits(&config.limits).map_err(JwtError::from)?;
    let verdict = match TokenVerifier::from_config(config, secret.as_ref(), redis) {
        Ok(verifier) => {
            verifier.sync_redis_once().await;
            verifier.verify_token(token)
        }
        Err(e) => {
            return Err(refused(format!("cannot build this edge's verifier: {e}")));
        }
    };
    Ok(Inspection {
        header,
        claims,
        verdict,
        keys,
    })
}
