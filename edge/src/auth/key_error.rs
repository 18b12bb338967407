//! [`KeyError`]: why key material cannot be used (an algorithm name, a JWK
//! or JWKS document, a PEM key, a new key). The callers add the file
//! ([`super::JwtError::KeySet`], [`super::JwtError::KeyFile`]); no message
//! ever holds key material.

use crate::auth::KeyAlg;

/// Why key material cannot be used; each message says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An algorithm name that is not one of the four.
    #[error("`{0}` is not one of ES256, RS256, EdDSA, HS256")]
    UnknownAlg(String),
    /// The key set document is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The document has no `keys` array.
    #[error("not a JWKS: no `keys` array")]
    NotJwks,
    /// An entry of `keys` is not an object.
    #[error("a key is not a JSON object")]
    NotObject,
    /// Two keys share a `kid`.
    #[error("kid `{0}` appears twice")]
    DuplicateKid(String),
    /// A key has no `kid`.
    #[error("a key has no `kid`")]
    NoKid,
    /// A `kid` that is not a plain identifier.
    #[error("kid {0:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -")]
    BadKid(String),
    /// One key of a set is not usable.
    #[error("key `{kid}`: {problem}")]
    Jwk {
        /// The key's `kid`.
        kid: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A PEM key is not a usable key of the algorithm.
    #[error("{0}")]
    Pem(String),
    /// A private key was given where only a public one belongs.
    #[error(
        "this is a PRIVATE key; import the public key only (the private key \
         stays on the host that signs tokens)"
    )]
    PrivateKey,
    /// `keys import` of an HS256 key.
    #[error("HS256 keys are shared secrets: make them with `keys generate --alg HS256`")]
    SharedSecretImport,
    /// An HS256 key file that is not a usable secret.
    #[error("{0}")]
    Secret(&'static str),
    /// A new key could not be made.
    #[error("cannot generate the {alg} key: {reason}")]
    Generate {
        /// The algorithm asked for.
        alg: KeyAlg,
        /// Why.
        reason: String,
    },
}

impl KeyError {
    /// A problem of the key `kid`.
    pub(crate) fn jwk(kid: &str, problem: impl Into<String>) -> Self {
        Self::Jwk {
            kid: kid.to_owned(),
            problem: problem.into(),
        }
    }
}
