//! The claims of a vibectl token: PyJWT's `sub`, `iss`, `iat`, `exp`, `jti`,
//! plus the optional `nbf`, `aud` and `models` this edge understands.
//! Unknown claims are ignored (tokens of other minters verify).
//!
//! Rules a verified token must also meet (besides `exp`, `iss`, `aud`):
//! `sub` is 1 to [`MAX_SUB_BYTES`] bytes with no control character
//! ([`check_subject`]; limits, metrics and logs key on it), and the token
//! lives at most `jwt.max_lifetime` (default one year).

use serde::{Deserialize, Serialize};

/// The claims of a vibectl token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
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
    /// Unique token id (a UUID); what revocation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Who the token is for (checked against `jwt.audience` when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The models (ids or aliases) the token may use; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// Longest `sub` accepted, in bytes.
pub const MAX_SUB_BYTES: usize = vibectl_config::defaults::JWT_MAX_SUB_BYTES;

/// Whether `sub` may name a caller: not empty, at most [`MAX_SUB_BYTES`]
/// bytes, no control characters. `Err` says what is wrong.
pub fn check_subject(sub: &str) -> Result<(), &'static str> {
    if sub.trim().is_empty() {
        return Err("is empty");
    }
    if sub.len() > MAX_SUB_BYTES {
        return Err("is longer than 256 bytes");
    }
    if sub.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `name` is (one of) the audience.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::One(one) => one == name,
            Self::Many(many) => many.iter().any(|a| a == name),
        }
    }
}

/// Whether `name` may travel in the `x-vibectl-allowed-models` header: no
/// comma (the separator), only visible ASCII, not empty, at most 200 bytes.
pub fn is_valid_model_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_rules() {
        assert_eq!(check_subject("alice"), Ok(()));
        assert_eq!(check_subject(""), Err("is empty"));
        assert_eq!(check_subject("  "), Err("is empty"));
        assert_eq!(
            check_subject(&"a".repeat(257)),
            Err("is longer than 256 bytes")
        );
        assert_eq!(check_subject(&"a".repeat(256)), Ok(()));
        assert_eq!(check_subject("a\nb"), Err("contains control characters"));
    }
}
