//! The claims of a vibectl token: PyJWT's `sub`, `iss`, `iat`, `exp`, `jti`,
//! plus the optional `nbf`, `aud` and `models` this edge understands.
//! Unknown claims are ignored (tokens of other minters verify).

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
