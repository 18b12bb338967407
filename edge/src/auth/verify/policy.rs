//! [`Policy`]: what a token must satisfy besides its signature (`[jwt]`
//! issuer, audience, leeway, lifetime, the `models` claim), and what a
//! jsonwebtoken error means for the client.

use crate::auth::{
    AuthError, Claims, KeyAlg,
    claims::{check_subject, is_valid_model_name},
    now_secs,
};
use jsonwebtoken::{Validation, errors::ErrorKind};
use std::time::Duration;
use vibectl_config::JwtConfig;

/// Most entries a `models` claim may list.
const MAX_MODELS: usize = 100;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `jwt.issuer` (empty: not checked).
    pub issuer: String,
    /// `jwt.audience` (absent: not checked).
    pub audience: Option<String>,
    /// `jwt.leeway`.
    pub leeway: Duration,
    /// `jwt.max_lifetime`.
    pub max_lifetime: Option<Duration>,
    /// `jwt.failure_budget` (0: off).
    pub failure_budget: u32,
    /// `jwt.failure_window`.
    pub failure_window: Duration,
    /// The claim checks of each algorithm, built once (not per request).
    validations: [Validation; 4],
}

impl Policy {
    /// The policy of `[jwt]`.
    pub fn from_config(jwt: &JwtConfig) -> Self {
        let issuer = jwt.issuer.clone();
        let audience = jwt.audience.clone().filter(|a| !a.is_empty());
        let leeway = jwt.leeway;
        let validations = [KeyAlg::HS256, KeyAlg::ES256, KeyAlg::RS256, KeyAlg::EdDSA]
            .map(|alg| Self::build_validation(&issuer, audience.as_deref(), leeway, alg));
        Self {
            issuer,
            audience,
            leeway,
            max_lifetime: jwt.max_lifetime(),
            failure_budget: jwt.failure_budget,
            failure_window: jwt.failure_window,
            validations,
        }
    }

    pub(super) fn validation(&self, alg: KeyAlg) -> &Validation {
        let index = match alg {
            KeyAlg::HS256 => 0,
            KeyAlg::ES256 => 1,
            KeyAlg::RS256 => 2,
            KeyAlg::EdDSA => 3,
        };
        &self.validations[index]
    }

    fn build_validation(
        issuer: &str,
        audience: Option<&str>,
        leeway: Duration,
        alg: KeyAlg,
    ) -> Validation {
        let mut validation = Validation::new(alg.algorithm());
        let mut required = vec!["exp", "sub"];
        if !issuer.is_empty() {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.validate_aud = true;
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation
    }

    /// The claim checks jsonwebtoken does not do: `sub`'s form,
    /// `jwt.max_lifetime`, the `models` list.
    pub(super) fn check_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        let policy = self;
        check_subject(&claims.sub).map_err(|why| AuthError::InvalidSubject { why })?;
        if let Some(max) = policy.max_lifetime {
            let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(0);
            let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            // From `iat`, or from now when `iat` is absent or in the future.
            let start = claims.iat.map_or(now_secs(), |iat| iat.min(now_secs()));
            if claims.exp.saturating_sub(start) > max_secs.saturating_add(leeway) {
                return Err(AuthError::LifetimeTooLong {
                    max: humantime::format_duration(max).to_string(),
                });
            }
        }
        if let Some(models) = &claims.models
            && (models.len() > MAX_MODELS || !models.iter().all(|m| is_valid_model_name(m)))
        {
            return Err(AuthError::InvalidClaim {
                claim: "models".into(),
            });
        }
        Ok(())
    }

    /// What a jsonwebtoken error means for the client.
    pub(super) fn classify(&self, kind: &ErrorKind) -> AuthError {
        match kind {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
            ErrorKind::InvalidIssuer => self.wrong_issuer(),
            ErrorKind::InvalidAudience => self.wrong_audience(),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Malformed,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => self.wrong_issuer(),
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => self.wrong_audience(),
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim {
                claim: claim.clone(),
            },
            ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim {
                claim: claim.clone(),
            },
            // A claims object without `exp`/`sub` fails deserialisation
            // before validation; report the missing claim, not "malformed".
            ErrorKind::Json(e) => match super::header::missing_field(&e.to_string()) {
                Some(claim) => AuthError::MissingClaim { claim },
                None => AuthError::Malformed,
            },
            _ => AuthError::Malformed,
        }
    }

    pub(super) fn wrong_issuer(&self) -> AuthError {
        AuthError::WrongIssuer {
            expected: self.issuer.clone(),
        }
    }

    pub(super) fn wrong_audience(&self) -> AuthError {
        AuthError::WrongAudience {
            expected: self.audience.clone().unwrap_or_default(),
        }
    }
}
