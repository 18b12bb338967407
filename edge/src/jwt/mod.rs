//! JWT: HS256 tokens with claims `sub`, `iss`, `iat`, `exp`, `jti`, the
//! format the Python vibectl-server mints (PyJWT), so its tokens verify here
//! with the same secret. `exp` is required (the reference accepts tokens
//! without it forever; we do not). [`secret`] finds the HS256 secret.

pub mod secret;

pub use secret::{SecretEnv, SecretError, SecretSource, lookup_secret};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vibectl_config::{JwtConfig, Secret};

/// How a client sends a token; every authentication error ends with it.
pub const HOW_TO_SEND: &str = "send gRPC metadata `authorization: Bearer <jwt>` \
(e.g. `vibectl setup-proxy configure vibectl-server://HOST:PORT --jwt-path FILE`; \
tokens come from `vibectl-edge generate-token SUBJECT`)";

/// The claims of a vibectl token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Who the token is for; rate limits and logs key on it.
    pub sub: String,
    /// Who minted it (checked against `jwt.issuer` when that is non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Expires at, Unix seconds. Required.
    pub exp: i64,
    /// Unique token id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a request was refused. Messages say what is wrong and how to send a
/// token; none ever contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing `authorization` metadata")]
    MissingHeader,
    /// `authorization` is there but not `Bearer <token>`.
    #[error("the `authorization` metadata is not a Bearer token")]
    NotBearer,
    /// The token is not a well-formed JWT.
    #[error("the token is malformed (not a JWT of three base64url parts with JSON claims)")]
    Malformed,
    /// The token is signed with another algorithm than HS256.
    #[error("the token is not signed with HS256")]
    WrongAlgorithm,
    /// The signature does not verify with this server's secret.
    #[error("the token's signature is invalid (was it made with another secret?)")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired; ask for a new one")]
    TokenExpired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf)")]
    TokenNotYetValid,
    /// `iss` is absent or not the configured issuer.
    #[error("the token's issuer is wrong (expected `{expected}`)")]
    WrongIssuer {
        /// The configured `jwt.issuer`.
        expected: String,
    },
    /// A required claim is absent.
    #[error("the token has no `{claim}` claim (`sub` and `exp` are required)")]
    MissingClaim {
        /// The claim.
        claim: String,
    },
}

impl AuthError {
    /// The `grpc-message` a client gets: what is wrong, then how to send a token.
    pub fn client_message(&self) -> String {
        format!("unauthenticated: {self}; {HOW_TO_SEND}")
    }
}

/// Verifies tokens with one secret and one policy.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`, checked against
    /// `jwt.issuer` (when non-empty) with `jwt.leeway`.
    pub fn new(secret: &Secret, jwt: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        if !jwt.issuer.is_empty() {
            validation.set_issuer(&[&jwt.issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = jwt.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            issuer: jwt.issuer.clone(),
        }
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| self.classify(e.kind()))
    }

    fn classify(&self, kind: &ErrorKind) -> AuthError {
        match kind {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
            ErrorKind::InvalidIssuer => self.wrong_issuer(),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => self.wrong_issuer(),
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim {
                claim: claim.clone(),
            },
            // A claims object without `exp`/`sub` fails deserialisation
            // before validation; report the missing claim, not "malformed".
            ErrorKind::Json(e) => match missing_field(&e.to_string()) {
                Some(claim) => AuthError::MissingClaim { claim },
                None => AuthError::Malformed,
            },
            _ => AuthError::Malformed,
        }
    }

    fn wrong_issuer(&self) -> AuthError {
        AuthError::WrongIssuer {
            expected: self.issuer.clone(),
        }
    }
}

/// `missing field `exp`` → `exp` (serde's wording).
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Mints an HS256 token for `subject` valid for `lifetime`, with `iss` (when
/// `issuer` is non-empty), `iat`, `exp` and a fresh UUID `jti`.
pub fn mint_token(
    secret: &Secret,
    issuer: &str,
    subject: &str,
    lifetime: Duration,
) -> Result<String, crate::EdgeError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let to_i64 = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX);
    let claims = Claims {
        sub: subject.to_owned(),
        iss: (!issuer.is_empty()).then(|| issuer.to_owned()),
        iat: Some(to_i64(now)),
        exp: to_i64(now.saturating_add(lifetime.as_secs())),
        jti: Some(uuid::Uuid::new_v4().to_string()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(|e| crate::EdgeError::TokenSigning(e.to_string()))
}

#[cfg(test)]
mod tests;
