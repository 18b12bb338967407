//! JWT: the tokens the edge verifies and `generate-token` mints.
//!
//! - HS256 with the legacy secret ([`secret`]), the format the Python
//!   vibectl-server mints (PyJWT): its tokens verify here unchanged. A token
//!   without `kid` uses it, unless `jwt.default_kid` names a key of the set.
//! - A key set ([`keys`], a JWKS file, hot-reloaded by [`reload`]) of ES256,
//!   RS256, EdDSA (public keys only: the private key need not live on the
//!   edge host) and HS256 keys, by `kid`. Each key pins its algorithm: a
//!   token never picks its own, `alg: none` is never accepted, and a public
//!   key can never serve as an HMAC secret. A retired key verifies nothing.
//! - Claims `sub` and `exp` are required; `iss` (when `jwt.issuer` is set),
//!   `aud` (when `jwt.audience` is set), `nbf`, `jwt.max_lifetime` and the
//!   revocation list ([`revocation`], by `jti`, a file and optionally Redis)
//!   are checked; an optional `models` claim restricts the models a token
//!   may use (the core enforces it).
//!
//! [`TokenVerifier`] does all of it; [`budget`] slows down addresses that
//! keep failing; [`fingerprint`] warns when a key in use changes.

pub mod budget;
mod cache;
mod claims;
mod fingerprint;
mod key_error;
pub(crate) mod key_set;
pub mod keygen;
pub(crate) mod keys;
mod pem;
mod precheck;
mod reload;
pub(crate) mod revocation;
mod secret;
mod sign;
mod verify;

pub use claims::{Audience, Claims};
pub use key_error::KeyError;
pub use key_set::KeySet;
pub use keys::{KeyAlg, KeyStatus, VerifyKey};
pub use secret::{SecretEnv, SecretError, lookup_existing_secret, lookup_secret};
#[cfg(any(test, feature = "test-support"))]
pub use sign::mint_token;
pub use sign::{SigningKey, TokenSpec, mint};
pub use verify::{Decision, TokenVerifier, Verified};

/// Seconds since the Unix epoch (the unit of `exp`, `iat`, `created`).
pub(crate) fn now_secs() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// What a client whose token is refused can do.
pub const ASK_FOR_A_TOKEN: &str = "ask the server's operator for a new token \
(`vibectl-edge generate-token SUBJECT`)";

/// How a client sends a token; the refusals of a missing or unreadable
/// token end with it.
pub const HOW_TO_SEND: &str = "send gRPC metadata `authorization: Bearer <jwt>` \
(e.g. `vibectl setup-proxy configure PROFILE_NAME vibectl-server://HOST:PORT --jwt-path FILE`; \
tokens come from `vibectl-edge generate-token SUBJECT`)";

/// The longest token the edge reads (a JWT is a few hundred bytes; an RS256
/// one with many claims well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a request was refused. Messages say what is wrong and how to send a
/// token; none ever contains the token (a `kid` is shown only when it is a
/// plain identifier).
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
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is too long")]
    TooLong,
    /// `alg: none` (an unsigned token).
    #[error("unsigned tokens (`alg: none`) are never accepted")]
    Unsigned,
    /// The header's `alg` is not the one pinned for the token's key.
    #[error("the token is not signed with {expected}, the algorithm of its key")]
    WrongAlgorithm {
        /// The key's algorithm.
        expected: String,
    },
    /// The header names extensions that must be understood (`crit`).
    #[error("the token's header has critical extensions (`crit`) this server does not support")]
    UnsupportedHeader,
    /// The `kid` is not in the key set.
    #[error("the token's key {} is not known to this server", show_kid(kid))]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The `kid` names a retired key.
    #[error(
        "the token's key {} has been retired; ask for a new token",
        show_kid(kid)
    )]
    KeyRetired {
        /// The header's `kid`.
        kid: String,
    },
    /// No `kid`, and no default key to verify it with.
    #[error("the token has no `kid` and this server has no default key")]
    NoDefaultKey,
    /// The signature does not verify with the key.
    #[error("the token's signature is invalid (was it made with another key or secret?)")]
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
    /// `aud` is absent or does not name the configured audience.
    #[error("the token's audience is wrong (expected `{expected}`)")]
    WrongAudience {
        /// The configured `jwt.audience`.
        expected: String,
    },
    /// A required claim is absent.
    #[error("the token has no `{claim}` claim (`sub` and `exp` are required)")]
    MissingClaim {
        /// The claim.
        claim: String,
    },
    /// A claim has the wrong shape (e.g. `models` is not a list of names).
    #[error("the token's `{claim}` claim is invalid")]
    InvalidClaim {
        /// The claim.
        claim: String,
    },
    /// `sub` breaks the subject rules ([`claims::check_subject`]).
    #[error("the token's `sub` claim {why}")]
    InvalidSubject {
        /// What is wrong with it ("is empty", …).
        why: &'static str,
    },
    /// `exp - iat` exceeds `jwt.max_lifetime`.
    #[error("the token lives longer than this server allows ({max}); ask for a shorter one")]
    LifetimeTooLong {
        /// `jwt.max_lifetime`, human-readable.
        max: String,
    },
    /// The token's `jti` is on the revocation list.
    #[error("token revoked; ask for a new one")]
    Revoked,
    /// Redis holds revocations, cannot be read, and the operator chose
    /// `limits.on_backend_failure = "fail_closed"`.
    #[error("cannot check whether the token is revoked right now; retry shortly")]
    RevocationUnknown,
    /// This address failed too often; refused without verification work.
    #[error("too many failed authentications, retry in {retry_in_secs} s")]
    TooManyFailures {
        /// Seconds until the address's window ends.
        retry_in_secs: u64,
    },
}

impl AuthError {
    /// The `grpc-message` a client gets: what is wrong, then what to do:
    /// how to send a token when none (or no readable one) came; to ask
    /// for a new one when the token sent is refused; nothing more when
    /// the refusal is not the token's fault (retry later).
    pub fn client_message(&self) -> String {
        match self {
            Self::MissingHeader | Self::NotBearer | Self::Malformed | Self::TooLong => {
                format!("unauthenticated: {self}; {HOW_TO_SEND}")
            }
            // Not the token's fault (retry later), or its own message
            // already says what to ask for.
            Self::RevocationUnknown
            | Self::TooManyFailures { .. }
            | Self::TokenExpired
            | Self::Revoked
            | Self::LifetimeTooLong { .. } => format!("unauthenticated: {self}"),
            _ => format!("unauthenticated: {self}; {ASK_FOR_A_TOKEN}"),
        }
    }

    /// A short stable name for logs and metrics (`bad_signature`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::NotBearer => "not_bearer",
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::Unsigned => "alg_none",
            Self::WrongAlgorithm { .. } => "wrong_algorithm",
            Self::UnsupportedHeader => "unsupported_header",
            Self::UnknownKey { .. } => "unknown_kid",
            Self::KeyRetired { .. } => "retired_kid",
            Self::NoDefaultKey => "no_default_key",
            Self::BadSignature => "bad_signature",
            Self::TokenExpired => "expired",
            Self::TokenNotYetValid => "not_yet_valid",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::InvalidSubject { .. } => "invalid_sub",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::Revoked => "revoked",
            Self::RevocationUnknown => "revocation_unknown",
            Self::TooManyFailures { .. } => "too_many_failures",
        }
    }
}

/// A `kid` as messages show it: quoted when it is a plain identifier (as
/// `keys generate` makes them), else not at all (it came from the client).
pub fn show_kid(kid: &str) -> String {
    if keys::is_plain_kid(kid) {
        format!("`{kid}`")
    } else {
        "(an invalid key id)".to_owned()
    }
}

/// Errors of key sets, key files, revocation lists and the token commands.
/// Messages name the file, never a key or token.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key set file is not a valid JWKS of supported keys.
    #[error("key set {}: {reason}", path.display())]
    KeySet {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: KeyError,
    },
    /// A private or public key file cannot be used.
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: KeyError,
    },
    /// The configuration asks for something inconsistent.
    #[error("{key}: {reason}")]
    Config {
        /// The dotted configuration key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A new key could not be made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A command was asked for something it refuses to do.
    #[error("{0}")]
    Refused(String),
    /// Redis could not record or read revocations.
    #[error("redis: {0}")]
    Redis(#[from] crate::shared_redis::RedisError),
}

#[cfg(test)]
mod tests;
