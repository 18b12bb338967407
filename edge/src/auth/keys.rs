//! The verification key set: a JWKS file (`{"keys": [...]}`) of ES256
//! (EC P-256), RS256 (RSA ≥ 2048 bits), EdDSA (OKP Ed25519) and HS256
//! (`oct`, ≥ 32 bytes) keys. Every key must name its `kid` and its `alg`,
//! and the `alg` must fit the key type: that `alg` is the only one a token
//! signed with the key may use. vibectl adds two members standard readers
//! ignore: `status` (`active` or `retired`) and `created` (Unix seconds).
//!
//! This file reads one key ([`VerifyKey::from_jwk`]); [`super::key_set`]
//! holds the whole set and the file the `keys` commands edit.

use crate::auth::KeyError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::{fmt, str::FromStr};

/// The algorithms a key may be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// HMAC-SHA256 with a shared secret (vibectl-server's).
    HS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl KeyAlg {
    /// Every supported algorithm.
    pub const ALL: [KeyAlg; 4] = [Self::HS256, Self::ES256, Self::RS256, Self::EdDSA];

    /// The JOSE name (`ES256`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }

    /// Whether the key is a shared secret (its JWK is secret too).
    pub fn is_symmetric(self) -> bool {
        self == Self::HS256
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlg {
    type Err = KeyError;

    /// Case-insensitive JOSE name; `Ed25519` is taken for `EdDSA`.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .or_else(|| s.eq_ignore_ascii_case("ed25519").then_some(Self::EdDSA))
            .ok_or_else(|| KeyError::UnknownAlg(s.to_owned()))
    }
}

/// Whether a key verifies tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyStatus {
    /// Tokens signed with it verify.
    #[default]
    Active,
    /// Tokens signed with it are refused (`keys retire`).
    Retired,
}

impl KeyStatus {
    /// `active` or `retired`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// One verification key, pinned to its algorithm. Its `Debug` shows no
/// key material.
#[derive(Clone)]
pub struct VerifyKey {
    /// The key id (`None` only for the legacy HS256 secret).
    pub kid: Option<String>,
    /// The one algorithm tokens signed with it may use.
    pub alg: KeyAlg,
    /// Active or retired.
    pub status: KeyStatus,
    /// When it was made (Unix seconds), if recorded.
    pub created: Option<i64>,
    /// SHA-256 thumbprint (RFC 7638 members), first 16 hex digits: safe to
    /// show and log.
    pub thumbprint: String,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// The legacy HS256 key: the secret's UTF-8 bytes, as PyJWT uses them.
    pub fn legacy(secret: &str) -> Self {
        Self {
            kid: None,
            alg: KeyAlg::HS256,
            status: KeyStatus::Active,
            created: None,
            thumbprint: short_hash(&[b"hs256-secret:", secret.as_bytes()]),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// Reads one JWK of a key set (see the module doc for what is required).
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let kid = text("kid").ok_or(KeyError::NoKid)?;
        if !is_plain_kid(kid) {
            return Err(KeyError::BadKid(kid.to_owned()));
        }
        let bad = |problem: String| KeyError::jwk(kid, problem);
        let alg: KeyAlg = text("alg")
            .ok_or_else(|| bad("has no `alg` (its algorithm must be pinned)".into()))?
            .parse()
            .map_err(|e: KeyError| bad(e.to_string()))?;
        if let Some(usage) = text("use").filter(|u| *u != "sig") {
            return Err(bad(format!(
                "has `use: {usage}`; only signature keys belong here"
            )));
        }
        let status = match text("status") {
            None | Some("active") => KeyStatus::Active,
            Some("retired") => KeyStatus::Retired,
            Some(other) => return Err(bad(format!("has unknown status `{other}`"))),
        };
        let created = jwk.get("created").and_then(Value::as_i64);
        let field = |name: &str| -> Result<Vec<u8>, KeyError> {
            let value = text(name).ok_or_else(|| bad(format!("has no `{name}`")))?;
            URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| bad(format!("`{name}` is not base64url")))
        };
        let kty = text("kty").ok_or_else(|| bad("has no `kty`".into()))?;
        let expect = |want: &str| {
            if kty == want {
                Ok(())
            } else {
                Err(bad(format!(
                    "alg {alg} needs kty `{want}`, the key is `{kty}` \
                     (a key serves exactly one algorithm)"
                )))
            }
        };
        let (decoding, thumb_input) = match alg {
            KeyAlg::ES256 => {
                expect("EC")?;
                if text("crv") != Some("P-256") {
                    return Err(bad("ES256 needs crv `P-256`".into()));
                }
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(bad("x and y must be 32 bytes each".into()));
                }
                let mut point = vec![0x04];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (DecodingKey::from_ec_der(&point), point)
            }
            KeyAlg::EdDSA => {
                expect("OKP")?;
                if text("crv") != Some("Ed25519") {
                    return Err(bad("EdDSA needs crv `Ed25519`".into()));
                }
                let x = field("x")?;
                if x.len() != 32 {
                    return Err(bad("x must be 32 bytes".into()));
                }
                (DecodingKey::from_ed_der(&x), x)
            }
            KeyAlg::RS256 => {
                expect("RSA")?;
                let (n, e) = (field("n")?, field("e")?);
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(bad(format!(
                        "RSA modulus of {bits} bits; at least 2048 needed"
                    )));
                }
                if e.is_empty() {
                    return Err(bad("empty RSA exponent".into()));
                }
                let mut input = n.clone();
                input.extend_from_slice(&e);
                (DecodingKey::from_rsa_raw_components(&n, &e), input)
            }
            KeyAlg::HS256 => {
                expect("oct")?;
                let k = field("k")?;
                if k.len() < 32 {
                    return Err(bad("an HS256 key needs at least 32 bytes".into()));
                }
                (DecodingKey::from_secret(&k), k)
            }
        };
        Ok(Self {
            kid: Some(kid.to_owned()),
            alg,
            status,
            created,
            thumbprint: short_hash(&[alg.name().as_bytes(), b":", &thumb_input]),
            decoding,
        })
    }
}

/// A `kid` as `keys generate` makes them and as logs may show them.
pub fn is_plain_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// SHA-256 over the parts, first 16 hex digits.
pub(crate) fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::auth::KeySet;
    use serde_json::json;

    /// A public P-256 JWK (made-up coordinates) named `kid`.
    pub(crate) fn ec_jwk(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid, "use": "sig",
               "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])})
    }

    #[test]
    fn alg_must_be_pinned_and_fit_the_key_type() {
        let parse = |key: Value| {
            KeySet::parse(json!({ "keys": [key] }).to_string().as_bytes())
                .map_err(|e| e.to_string())
        };
        assert!(parse(ec_jwk("a")).is_ok());
        let mut no_alg = ec_jwk("a");
        no_alg.as_object_mut().expect("obj").remove("alg");
        assert!(parse(no_alg).expect_err("no alg").contains("pinned"));
        let mut as_hmac = ec_jwk("a");
        as_hmac["alg"] = "HS256".into();
        assert!(
            parse(as_hmac)
                .expect_err("EC key as HS256")
                .contains("exactly one algorithm")
        );
        let mut as_none = ec_jwk("a");
        as_none["alg"] = "none".into();
        assert!(parse(as_none).is_err());
        let small_rsa = json!({"kty": "RSA", "alg": "RS256", "kid": "r",
            "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
        assert!(parse(small_rsa).expect_err("1024 bits").contains("2048"));
        let short_secret = json!({"kty": "oct", "alg": "HS256", "kid": "h",
            "k": URL_SAFE_NO_PAD.encode([7u8; 16])});
        assert!(
            parse(short_secret)
                .expect_err("16 bytes")
                .contains("32 bytes")
        );
        let dup = json!({ "keys": [ec_jwk("a"), ec_jwk("a")] }).to_string();
        assert!(
            KeySet::parse(dup.as_bytes())
                .expect_err("dup")
                .to_string()
                .contains("twice")
        );
        let mut odd_kid = ec_jwk("a b");
        odd_kid["kid"] = "a b".into();
        assert!(parse(odd_kid).is_err());
    }
}
