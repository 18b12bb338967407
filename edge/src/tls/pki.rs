//! Issuing certificates with rcgen: CAs (the self-signed mode's local CA;
//! the private CA's root and intermediate) and leaves (server, client).
//! Pure functions, PEM in and PEM out; writing files is
//! [`crate::tls::store`]'s job, reading them back [`crate::tls::inspect`]'s.
//! Every key is ECDSA P-256; every serial number is 128 random bits.

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::{fmt, net::IpAddr};
use time::{Duration, OffsetDateTime};

/// The organization name in every certificate the edge issues.
pub const ORGANIZATION: &str = "vibectl LLM proxy";

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("cannot {what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A host name that is neither a DNS name nor an IP address.
    #[error("host name `{name}` cannot go into a certificate: {reason}")]
    BadHost {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A client name that cannot be a certificate's common name and file name.
    #[error("client name `{name}` is not usable: {reason}")]
    BadClientName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA key is not the key of the CA certificate.
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// A server certificate needs at least one name.
    #[error("a server certificate needs at least one host name or IP address")]
    NoHosts,
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

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
    cert: rcgen::Certificate,
    key: KeyPair,
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

    /// Loads an issued CA (as [`root_ca`] or [`intermediate_ca`] return it).
    pub fn from_issued(issued: &Issued) -> Result<Self, PkiError> {
        Self::from_pem(&issued.cert_pem, &issued.key_pem)
    }
}

/// Normalises a host name for a certificate: an IP address in canonical
/// form, or a DNS name in lower case (letters, digits, `-`, `.`, `_`, and a
/// leading `*.` wildcard label).
pub fn normalize_host(name: &str) -> Result<String, PkiError> {
    let trimmed = name.trim();
    let bad = |reason| PkiError::BadHost {
        name: name.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let lower = trimmed.to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    for label in body.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "only letters, digits, '-', '_' and '.' (and a leading '*.') are allowed",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
    }
    Ok(lower)
}

/// Checks a client name (it becomes the common name and `clients/NAME.crt`).
pub fn check_client_name(name: &str) -> Result<(), PkiError> {
    let bad = |reason| PkiError::BadClientName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("it must have 1 to 64 characters"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("it must not start with '.' or '-'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(bad(
            "only letters, digits, '-', '_', '.' and '@' are allowed",
        ));
    }
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and exactly 16 bytes long (RFC 5280: at most 20 octets).
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // Backdated a little, so clients with a slow clock accept a fresh one.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days.max(1)));
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(common_name: &str, days: u32, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    params
}

/// A new self-signed CA. `path_len` 0 signs leaves only (the self-signed
/// mode's local CA); 1 signs one level of intermediates (a root).
pub fn self_signed_ca(common_name: &str, days: u32, path_len: u8) -> Result<Issued, PkiError> {
    let key = KeyPair::generate().map_err(rc("generate a CA key"))?;
    let cert = ca_params(common_name, days, path_len)
        .self_signed(&key)
        .map_err(rc("sign the CA certificate"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new root CA (path length 1: it signs intermediates only).
pub fn root_ca(common_name: &str, days: u32) -> Result<Issued, PkiError> {
    self_signed_ca(common_name, days, 1)
}

/// A new intermediate CA signed by `root` (path length 0: it signs leaves
/// only). `cert_pem` is the intermediate alone.
pub fn intermediate_ca(root: &Issuer, common_name: &str, days: u32) -> Result<Issued, PkiError> {
    let key = KeyPair::generate().map_err(rc("generate the intermediate key"))?;
    let mut params = ca_params(common_name, days, 0);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &root.cert, &root.key)
        .map_err(rc("sign the intermediate CA"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn leaf_params(common_name: &str, sans: Vec<SanType>, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    params
}

/// A server certificate for `hosts` (DNS names and IP addresses; normalised
/// with [`normalize_host`], duplicates dropped), signed by `issuer`. The
/// common name is the first DNS name (else the first host). `cert_pem` is
/// the chain the server sends: the leaf, then `issuer`'s certificate.
pub fn server_cert(issuer: &Issuer, hosts: &[String], days: u32) -> Result<Issued, PkiError> {
    let mut names: Vec<String> = Vec::new();
    for host in hosts {
        let name = normalize_host(host)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let first = names.first().ok_or(PkiError::NoHosts)?;
    let common_name = names
        .iter()
        .find(|n| n.parse::<IpAddr>().is_err())
        .unwrap_or(first);
    let sans = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => rcgen::Ia5String::try_from(name.as_str())
                .map(SanType::DnsName)
                .map_err(|_| PkiError::BadHost {
                    name: name.clone(),
                    reason: "it is not ASCII",
                }),
        })
        .collect::<Result<_, _>>()?;
    let mut params = leaf_params(common_name, sans, days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(rc("generate the server key"))?;
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(rc("sign the server certificate"))?;
    Ok(Issued {
        cert_pem: format!("{}{}", cert.pem(), issuer.cert_pem),
        key_pem: key.serialize_pem(),
    })
}

/// A client certificate (mutual TLS) with common name `name`, signed by
/// `issuer`; `cert_pem` is the chain: the leaf, then `issuer`'s certificate.
pub fn client_cert(issuer: &Issuer, name: &str, days: u32) -> Result<Issued, PkiError> {
    check_client_name(name)?;
    let mut params = leaf_params(name, Vec::new(), days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(rc("generate the client key"))?;
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(rc("sign the client certificate"))?;
    Ok(Issued {
        cert_pem: format!("{}{}", cert.pem(), issuer.cert_pem),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::inspect;

    #[test]
    fn hosts_are_normalised_and_checked() {
        assert_eq!(
            normalize_host(" Proxy.Example.COM ").expect("dns"),
            "proxy.example.com"
        );
        assert_eq!(normalize_host("::0001").expect("ip"), "::1");
        assert_eq!(
            normalize_host("*.example.com").expect("wildcard"),
            "*.example.com"
        );
        for bad in ["", "bad host", "a..b", "-a.b", "é.example", "a/b", "*"] {
            let err = normalize_host(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn chain_of_root_intermediate_and_leaves() {
        let root = root_ca("root", 30).expect("root");
        let root_issuer = Issuer::from_issued(&root).expect("load root");
        let inter = intermediate_ca(&root_issuer, "intermediate", 20).expect("intermediate");
        let inter_issuer = Issuer::from_issued(&inter).expect("load intermediate");
        let server = server_cert(
            &inter_issuer,
            &[
                "10.1.2.3".into(),
                "Proxy.Example".into(),
                "proxy.example".into(),
            ],
            10,
        )
        .expect("server");
        let chain = inspect::chain_ders(&server.cert_pem).expect("chain");
        assert_eq!(chain.len(), 2, "leaf and intermediate");
        let leaf = inspect::describe(&chain[0]).expect("leaf");
        assert_eq!(leaf.sans, ["10.1.2.3", "proxy.example"]);
        assert_eq!(leaf.common_name.as_deref(), Some("proxy.example"));
        assert!(!leaf.is_ca);
        let root_der = &inspect::chain_ders(&root.cert_pem).expect("root")[0];
        assert!(inspect::issued_by(&chain[0], &chain[1]));
        assert!(inspect::issued_by(&chain[1], root_der));
        let client = client_cert(&inter_issuer, "alice", 10).expect("client");
        let info = inspect::describe_pem(&client.cert_pem).expect("client");
        assert_eq!(info.common_name.as_deref(), Some("alice"));
        assert!(format!("{client:?}").contains("<redacted>"));
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn serials_differ_and_names_are_checked() {
        let root = root_ca("root", 30).expect("root");
        let issuer = Issuer::from_issued(&root).expect("load");
        let a = server_cert(&issuer, &["a.example".into()], 1).expect("a");
        let b = server_cert(&issuer, &["a.example".into()], 1).expect("b");
        let serial = |pem: &str| inspect::describe_pem(pem).expect("describe").serial;
        assert_ne!(serial(&a.cert_pem), serial(&b.cert_pem));
        assert!(matches!(
            server_cert(&issuer, &[], 1),
            Err(PkiError::NoHosts)
        ));
        for bad in ["", "../x", ".hidden", "a b"] {
            assert!(client_cert(&issuer, bad, 1).is_err(), "{bad}");
        }
    }
}
