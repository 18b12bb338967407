//! PEM keys for signing and for `keys import`, read with rustls-pki-types
//! and the `spki`/`pkcs1`/`pkcs8` crates `rsa` brings (jsonwebtoken's own
//! PEM reader is a feature we leave off). Each key is checked against the
//! algorithm it is meant for: an EC key never passes for an RSA one.

use crate::auth::{KeyAlg, KeyError};
use jsonwebtoken::EncodingKey;
use rsa::pkcs8::{ObjectIdentifier, spki::SubjectPublicKeyInfoRef};
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer, pem::PemObject};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A private key for `alg` from PEM: PKCS#8 (`PRIVATE KEY`), or PKCS#1
/// (`RSA PRIVATE KEY`) for RS256. Proven by signing a probe message.
pub(crate) fn signing_key(pem: &[u8], alg: KeyAlg) -> Result<EncodingKey, KeyError> {
    let bad = KeyError::Pem;
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("no PEM private key found ({e})")))?;
    let key = match (alg, &der) {
        (KeyAlg::ES256, PrivateKeyDer::Pkcs8(der)) => {
            EncodingKey::from_ec_der(der.secret_pkcs8_der())
        }
        (KeyAlg::ES256, PrivateKeyDer::Sec1(_)) => {
            return Err(bad(
                "an `EC PRIVATE KEY` (SEC1): convert it to PKCS#8 with \
                            `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            ));
        }
        (KeyAlg::EdDSA, PrivateKeyDer::Pkcs8(der)) => {
            EncodingKey::from_ed_der(der.secret_pkcs8_der())
        }
        (KeyAlg::RS256, PrivateKeyDer::Pkcs1(der)) => {
            EncodingKey::from_rsa_der(der.secret_pkcs1_der())
        }
        (KeyAlg::RS256, PrivateKeyDer::Pkcs8(der)) => {
            use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::DecodePrivateKey};
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der())
                .map_err(|e| bad(format!("not an RSA private key ({e})")))?;
            let pkcs1 = key.to_pkcs1_der().map_err(|e| bad(e.to_string()))?;
            EncodingKey::from_rsa_der(pkcs1.as_bytes())
        }
        _ => return Err(bad(format!("not a {alg} private key"))),
    };
    jsonwebtoken::crypto::sign(b"vibectl key probe", &key, alg.algorithm())
        .map_err(|_| bad(format!("not a usable {alg} private key")))?;
    Ok(key)
}

/// The public key material of a PEM public key for `alg`: the SEC1 point
/// (ES256), the 32 bytes (EdDSA), or the PKCS#1 `RSAPublicKey` DER (RS256).
pub(crate) fn public_key(pem: &[u8], alg: KeyAlg) -> Result<Vec<u8>, KeyError> {
    let bad = KeyError::Pem;
    if alg == KeyAlg::RS256
        && let Ok(text) = std::str::from_utf8(pem)
        && text.contains("BEGIN RSA PUBLIC KEY")
    {
        use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
        let key = rsa::RsaPublicKey::from_pkcs1_pem(text)
            .map_err(|e| bad(format!("not an RSA public key ({e})")))?;
        return Ok(key
            .to_pkcs1_der()
            .map_err(|e| bad(e.to_string()))?
            .into_vec());
    }
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
        .map_err(|e| bad(format!("no PEM `PUBLIC KEY` found ({e})")))?;
    let spki = SubjectPublicKeyInfoRef::try_from(der.as_ref())
        .map_err(|e| bad(format!("not a public key ({e})")))?;
    let oid = spki.algorithm.oid;
    let fits = match alg {
        KeyAlg::ES256 => {
            oid == OID_EC_PUBLIC_KEY
                && spki
                    .algorithm
                    .parameters_oid()
                    .is_ok_and(|curve| curve == OID_P256)
        }
        KeyAlg::EdDSA => oid == OID_ED25519,
        KeyAlg::RS256 => oid == OID_RSA,
        KeyAlg::HS256 => false,
    };
    if !fits {
        return Err(bad(format!("this public key is not a {alg} key")));
    }
    spki.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad("the public key has unused bits".to_owned()))
}
