//! `[tls.files]` / `serve-custom`: the operator's PEM chain and key, checked
//! to belong together before the edge starts.

use crate::tls::{TlsError, crypto_provider};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;

/// Reads a PEM certificate chain (leaf first) and its private key (PKCS#8,
/// PKCS#1 or SEC1), and checks that the key is the leaf's.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(cert_file)?;
    let key = read_key(key_file)?;
    certified_key(chain, key, cert_file, key_file)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    readable(path)?;
    let bad = |e: rustls_pki_types::pem::Error| TlsError::BadPem {
        path: path.to_owned(),
        what: "certificate chain",
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    readable(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        what: "private key",
        message: e.to_string(),
    })
}

/// Turns I/O errors into a message naming the file (the PEM parser's own
/// message for a missing file is less clear).
fn readable(path: &Path) -> Result<(), TlsError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|source| TlsError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
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
}
