//! Making keys for the key set: a private key (PKCS#8 PEM for ES256 and
//! EdDSA, made with rcgen/ring; PKCS#1 PEM for RS256, 2048 bits, made with
//! the `rsa` crate; 32 random bytes as base64url for HS256) and its public
//! JWK (`kid`, pinned `alg`, `use: sig`, `created`). [`public_jwk_from_pem`]
//! turns a public key made elsewhere into a JWK (`keys import`), so the
//! private key never has to come to the edge host.

use crate::auth::{KeyAlg, KeyError};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::{Map, Value, json};

/// Bits of a generated RSA key.
pub const RSA_BITS: usize = 2048;

/// A new key: the private part (to write 0600) and the public JWK.
pub struct Generated {
    /// PEM, or for HS256 the base64url secret, with a final newline.
    pub private: String,
    /// The JWK for the key set (for HS256 it holds the secret: `k`).
    pub jwk: Map<String, Value>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("kid", &self.jwk.get("kid"))
            .finish_non_exhaustive()
    }
}

/// A `kid` for a new key: `<alg>-<YYYYMMDD>-<6 hex>`, e.g. `es256-20250101-1a2b3c`.
pub fn new_kid(alg: KeyAlg, now: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| "00000000".into());
    let mut tag = [0u8; 3];
    rand::rng().fill_bytes(&mut tag);
    format!(
        "{}-{date}-{}",
        alg.name().to_ascii_lowercase(),
        hex::encode(tag)
    )
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(kid: &str, alg: KeyAlg, now: i64, members: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("kid".into(), kid.into());
    map.insert("alg".into(), alg.name().into());
    map.insert("use".into(), "sig".into());
    if let Value::Object(members) = members {
        map.extend(members);
    }
    map.insert("status".into(), "active".into());
    map.insert("created".into(), now.into());
    map
}

/// Makes a new key pair for `alg` named `kid`.
pub fn generate(alg: KeyAlg, kid: &str, now: i64) -> Result<Generated, KeyError> {
    let failed = |reason: String| KeyError::Generate { alg, reason };
    match alg {
        KeyAlg::ES256 | KeyAlg::EdDSA => {
            let (sig_alg, public) = if alg == KeyAlg::ES256 {
                (&rcgen::PKCS_ECDSA_P256_SHA256, true)
            } else {
                (&rcgen::PKCS_ED25519, false)
            };
            let pair = rcgen::KeyPair::generate_for(sig_alg).map_err(|e| failed(e.to_string()))?;
            let raw = pair.public_key_raw();
            let members = if public {
                // SEC1 uncompressed: 0x04 || x || y.
                if raw.len() != 65 || raw[0] != 0x04 {
                    return Err(failed("unexpected P-256 public key encoding".into()));
                }
                json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])})
            } else {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
            };
            Ok(Generated {
                private: pair.serialize_pem(),
                jwk: jwk(kid, alg, now, members),
            })
        }
        KeyAlg::RS256 => {
            use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
            let key =
                rsa::RsaPrivateKey::new(&mut Rng06, RSA_BITS).map_err(|e| failed(e.to_string()))?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| failed(e.to_string()))?;
            let members = json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())});
            Ok(Generated {
                private: pem.to_string(),
                jwk: jwk(kid, alg, now, members),
            })
        }
        KeyAlg::HS256 => {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            Ok(Generated {
                private: format!("{}\n", b64(&secret)),
                jwk: jwk(kid, alg, now, json!({"kty": "oct", "k": b64(&secret)})),
            })
        }
    }
}

/// The JWK of a public key in PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY`),
/// pinned to `alg`. A private key is refused: it must stay where tokens are
/// signed.
pub fn public_jwk_from_pem(
    pem: &[u8],
    alg: KeyAlg,
    kid: &str,
    now: i64,
) -> Result<Map<String, Value>, KeyError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY") {
        return Err(KeyError::PrivateKey);
    }
    let members = match alg {
        KeyAlg::ES256 => {
            let point = crate::auth::pem::public_key(pem, alg)?;
            if point.len() != 65 || point[0] != 0x04 {
                return Err(KeyError::Pem("not an uncompressed P-256 public key".into()));
            }
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
        }
        KeyAlg::EdDSA => {
            let x = crate::auth::pem::public_key(pem, alg)?;
            if x.len() != 32 {
                return Err(KeyError::Pem("not an Ed25519 public key".into()));
            }
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)})
        }
        KeyAlg::RS256 => {
            use rsa::{pkcs1::DecodeRsaPublicKey, traits::PublicKeyParts};
            let der = crate::auth::pem::public_key(pem, alg)?;
            let public = rsa::RsaPublicKey::from_pkcs1_der(&der)
                .map_err(|e| KeyError::Pem(format!("not an RSA public key ({e})")))?;
            json!({"kty": "RSA", "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())})
        }
        KeyAlg::HS256 => {
            return Err(KeyError::SharedSecretImport);
        }
    };
    Ok(jwk(kid, alg, now, members))
}

/// rand 0.9's thread RNG (a CSPRNG seeded from the OS) behind the
/// rand_core 0.6 traits the `rsa` crate asks for.
struct Rng06;

impl rsa::rand_core::RngCore for Rng06 {
    fn next_u32(&mut self) -> u32 {
        rand::rng().next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        rand::rng().next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand::rng().fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        rand::rng().fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for Rng06 {}
