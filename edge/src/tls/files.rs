//! Certificate files (`[tls.files]` / `serve-custom`, and the private CA's
//! `server.crt`/`server.key` for `serve-ca`): the PEM chain and key, checked
//! to be servable and to belong together — at start-up, and by
//! [`crate::tls::rotation`] before any new pair is swapped in.

use crate::tls::{TlsError, crypto_provider, inspect};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;

/// How far in the future a leaf's `notBefore` may be and still be served
/// (clocks differ a little between the issuer and this machine).
pub const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// Reads a PEM certificate chain (leaf first) and its private key (PKCS#8,
/// PKCS#1 or SEC1), and checks that they can be served: every certificate
/// parses as X.509, each one is issued by the next, the leaf is valid now
/// (not expired; `notBefore` at most [`NOT_BEFORE_SKEW_SECS`] ahead), and
/// the key is the leaf's. Every error names the file and the reason.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_bytes(cert_file)?;
    let key_pem = read_bytes(key_file)?;
    parse(&cert_pem, &key_pem, cert_file, key_file)
}

/// As [`load`], from the files' contents (already read); the paths only
/// label errors.
pub fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_chain(cert_pem, cert_file)?;
    check_chain(&chain, cert_file, inspect::now_unix())?;
    let key = parse_key(key_pem, key_file)?;
    certified_key(chain, key, cert_file, key_file)
}

/// Reads a file, naming it on error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })
}

fn check_chain(
    chain: &[CertificateDer<'static>],
    cert_file: &Path,
    now: i64,
) -> Result<(), TlsError> {
    let infos = chain
        .iter()
        .map(|der| inspect::describe(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Certificate {
            path: cert_file.to_owned(),
            source,
        })?;
    let leaf = &infos[0];
    if leaf.not_after <= now {
        return Err(TlsError::CertificateExpired {
            path: cert_file.to_owned(),
            not_after: unix_to_rfc3339(leaf.not_after),
        });
    }
    if leaf.not_before > now + NOT_BEFORE_SKEW_SECS {
        return Err(TlsError::CertificateNotYetValid {
            path: cert_file.to_owned(),
            not_before: unix_to_rfc3339(leaf.not_before),
        });
    }
    for (i, pair) in chain.windows(2).enumerate() {
        if !inspect::issued_by(&pair[0], &pair[1]) {
            return Err(TlsError::ChainOutOfOrder {
                path: cert_file.to_owned(),
                position: i + 2,
            });
        }
    }
    Ok(())
}

/// `2026-01-31T12:00:00Z`, for messages and logs.
pub fn unix_to_rfc3339(unix: i64) -> String {
    u64::try_from(unix)
        .ok()
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .map_or_else(
            || unix.to_string(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

fn parse_chain(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |e: rustls_pki_types::pem::Error| TlsError::BadPem {
        path: path.to_owned(),
        what: "certificate chain",
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        what: "private key",
        message: e.to_string(),
    })
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::UnsupportedKey {
            path: key_file.to_owned(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyDoesNotMatchCertificate {
                cert_file: cert_file.to_owned(),
                key_file: key_file.to_owned(),
            })
        }
        // The key type cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::BadPem {
            path: cert_file.to_owned(),
            what: "certificate chain",
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::self_signed;

    #[test]
    fn loads_a_matching_pair() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = self_signed::ensure(tmp.path(), &[], 30, false).expect("generate");
        let key = load(&made.cert_path, &made.key_path).expect("load");
        assert_eq!(key.cert.len(), 2, "leaf and CA");
    }

    #[test]
    fn key_mismatch_names_both_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = self_signed::ensure(tmp.path(), &[], 30, false).expect("generate");
        // The CA's key is a valid key, but not the leaf's.
        let err = load(&made.cert_path, &made.ca_key_path).expect_err("mismatch");
        assert!(
            matches!(err, TlsError::KeyDoesNotMatchCertificate { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("ca.key") && msg.contains("server.crt"),
            "{msg}"
        );
        assert!(msg.contains("does not match"), "{msg}");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nope.crt");
        let msg = load(&missing, &missing).expect_err("missing").to_string();
        assert!(msg.contains("nope.crt"), "{msg}");
        let empty = tmp.path().join("empty.crt");
        std::fs::write(&empty, "not pem\n").expect("write");
        let err = load(&empty, &empty).expect_err("empty");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("empty.crt"));
    }

    /// A leaf from a throw-away CA, valid from `from` to `to` days from now.
    fn leaf(dir: &Path, from: i64, to: i64) -> (std::path::PathBuf, std::path::PathBuf) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf");
        let (crt, pem) = (dir.join("leaf.crt"), dir.join("leaf.key"));
        std::fs::write(&crt, format!("{}{}", cert.pem(), ca.pem())).expect("write");
        std::fs::write(&pem, key.serialize_pem()).expect("write");
        (crt, pem)
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (crt, key) = leaf(tmp.path(), -30, -1);
        let err = load(&crt, &key).expect_err("expired");
        assert!(
            matches!(err, TlsError::CertificateExpired { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("leaf.crt expired at"), "{err}");
        let (crt, key) = leaf(tmp.path(), 2, 30);
        let err = load(&crt, &key).expect_err("future");
        assert!(err.to_string().contains("not valid before"), "{err}");
        let (crt, key) = leaf(tmp.path(), -1, 30);
        load(&crt, &key).expect("valid now");
    }

    #[test]
    fn a_chain_out_of_order_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (crt, key) = leaf(tmp.path(), -1, 30);
        let pem = std::fs::read_to_string(&crt).expect("read");
        let certs: Vec<_> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
        // An unrelated certificate between the leaf and its issuer.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let (other, _) = leaf(other_dir.path(), -1, 30);
        let stranger = std::fs::read_to_string(other).expect("read");
        let stranger = stranger
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .expect("leaf");
        std::fs::write(&crt, format!("{}{}{}", certs[0], stranger, certs[1])).expect("write");
        let err = load(&crt, &key).expect_err("out of order");
        assert!(
            matches!(err, TlsError::ChainOutOfOrder { position: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_der_inside_pem_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (crt, key) = leaf(tmp.path(), -1, 30);
        std::fs::write(
            &crt,
            "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = load(&crt, &key).expect_err("garbage");
        assert!(matches!(err, TlsError::Certificate { .. }), "{err:?}");
        assert!(err.to_string().contains("leaf.crt"), "{err}");
    }
}
