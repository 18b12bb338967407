//! The JWS header as the edge reads it before choosing a key, and what
//! jsonwebtoken's errors say about the signature.

use crate::auth::AuthError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

/// The header members the edge reads (`alg` as a string, so `none` and
/// unknown names get their own answer).
#[derive(Debug, Deserialize)]
pub(super) struct RawHeader {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) crit: Option<serde_json::Value>,
}

/// Errors jsonwebtoken reports only after the signature verified.
pub(super) fn signature_was_verified(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ExpiredSignature
            | ErrorKind::ImmatureSignature
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidAudience
            | ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
    )
}

/// The header of a compact JWS of exactly three non-empty parts.
pub(super) fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(AuthError::Malformed);
    }
    let json = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
}

/// `missing field `exp`` → `exp` (serde's wording).
pub(super) fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}
