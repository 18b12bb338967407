//! A CA loaded for signing ([`Issuer`]) and what issuing returns
//! ([`Issued`]): PEM certificates with their keys, which `Debug` redacts.

use super::{PkiError, rc};
use rcgen::{CertificateParams, KeyPair};
use std::fmt;

/// A certificate (or chain, leaf first) with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate; for leaves, the chain a server or client sends:
    /// the leaf, then its issuer.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A CA loaded for signing: its certificate (as rcgen needs it) and key.
pub struct Issuer {
    pub(super) cert: rcgen::Certificate,
    pub(super) key: KeyPair,
    /// The CA certificate exactly as it was read (the one that is shipped in
    /// chains and bundles).
    pub cert_pem: String,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Issuer {
    /// Loads an issuer from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rc("read the CA key"))?;
        let params =
            CertificateParams::from_ca_cert_pem(cert_pem).map_err(rc("read the CA certificate"))?;
        let der: rustls_pki_types::CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).map_err(
                |_| PkiError::Rcgen {
                    what: "read the CA certificate",
                    source: rcgen::Error::CouldNotParseCertificate,
                },
            )?;
        let cert_key = x509_parser::parse_x509_certificate(&der)
            .map(|(_, c)| c.public_key().subject_public_key.data.to_vec())
            .map_err(|_| PkiError::Rcgen {
                what: "read the CA certificate",
                source: rcgen::Error::CouldNotParseCertificate,
            })?;
        if cert_key != key.public_key_raw() {
            return Err(PkiError::CaKeyMismatch);
        }
        // Re-signing with the same key reproduces the subject and key
        // identifier (from_ca_cert_pem keeps both) that children must name;
        // it stays in memory, the original PEM is what gets shipped.
        let cert = params
            .self_signed(&key)
            .map_err(rc("load the CA certificate"))?;
        Ok(Self {
            cert,
            key,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// Loads an issued CA (as [`super::root_ca`] or [`super::intermediate_ca`] return it).
    pub fn from_issued(issued: &Issued) -> Result<Self, PkiError> {
        Self::from_pem(&issued.cert_pem, &issued.key_pem)
    }
}
