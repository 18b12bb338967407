//! Reading certificates back: subject, SANs, issuer, serial, SHA-256
//! fingerprint and validity, for `ca status`, `ca check-expiry`, the
//! rotation checks, the logs and the metrics. The one place that parses
//! X.509 (x509-parser); issuing is [`crate::tls::pki`]'s job.

use rustls_pki_types::{CertificateDer, pem::PemObject};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// What one certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `O=vibectl LLM proxy, CN=proxy.example.com`.
    pub subject: String,
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names (lower-case) and IP addresses (canonical form).
    pub sans: Vec<String>,
    /// Serial number, colon-separated upper-case hex.
    pub serial: String,
    /// SHA-256 of the DER, colon-separated upper-case hex (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// True for a CA certificate (basic constraints `CA:TRUE`).
    pub is_ca: bool,
}

impl CertInfo {
    /// Seconds until expiry (negative once expired).
    pub fn seconds_left(&self, now_unix: i64) -> i64 {
        self.not_after - now_unix
    }

    /// Whole days until expiry, rounded down (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        self.seconds_left(now_unix).div_euclid(86_400)
    }

    /// True when the certificate expires within `days` days of `now_unix`
    /// (or has expired).
    pub fn expires_within(&self, days: u32, now_unix: i64) -> bool {
        self.seconds_left(now_unix) < i64::from(days) * 86_400
    }
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No `CERTIFICATE` block in the PEM.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// A PEM block that is not valid, or a certificate that is not X.509.
    #[error("not a valid PEM/X.509 certificate: {0}")]
    Invalid(String),
}

/// The SHA-256 fingerprint of DER bytes, as `AB:CD:…` (95 characters).
pub fn fingerprint(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der))
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Every certificate of a PEM text, in order (a chain: leaf first).
pub fn chain_ders(pem: &str) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    let ders: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| InspectError::Invalid(e.to_string()))?;
    if ders.is_empty() {
        return Err(InspectError::NoCertificate);
    }
    Ok(ders)
}

/// Describes one DER certificate.
pub fn describe(der: &[u8]) -> Result<CertInfo, InspectError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| InspectError::Invalid(e.to_string()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => sans.push(ip_string(bytes)),
                _ => {}
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        common_name,
        issuer: cert.issuer().to_string(),
        sans,
        serial: colon_hex(cert.raw_serial()),
        sha256: fingerprint(der),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
    })
}

/// Describes the first (leaf) certificate of a PEM text.
pub fn describe_pem(pem: &str) -> Result<CertInfo, InspectError> {
    describe(&chain_ders(pem)?[0])
}

/// True when `issuer` issued `child`: `child` names `issuer`'s subject as
/// its issuer (raw bytes, as webpki compares them) *and* its signature
/// verifies with `issuer`'s public key (two CAs may share a name).
pub fn issued_by(child: &[u8], issuer: &[u8]) -> bool {
    match (
        X509Certificate::from_der(child),
        X509Certificate::from_der(issuer),
    ) {
        (Ok((_, child)), Ok((_, issuer))) => {
            child.issuer().as_raw() == issuer.subject().as_raw()
                && child.verify_signature(Some(issuer.public_key())).is_ok()
        }
        _ => false,
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    let hex = hex::encode_upper(bytes);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_string(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return IpAddr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return IpAddr::from(v6).to_string();
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_names_fingerprint_and_validity() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["Proxy.Example.com".into(), "10.0.0.1".into()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "proxy");
        let params_again = params.clone();
        let cert = params.self_signed(&key).expect("cert");
        let info = describe_pem(&cert.pem()).expect("describe");
        assert_eq!(info.sans, ["proxy.example.com", "10.0.0.1"]);
        assert_eq!(info.common_name.as_deref(), Some("proxy"));
        assert_eq!(info.sha256, fingerprint(cert.der()));
        assert_eq!(info.sha256.len(), 95);
        assert!(info.not_before < now_unix() && info.not_after > now_unix());
        assert!(!info.serial.is_empty());
        assert!(issued_by(cert.der(), cert.der()), "self-signed");
        // Same name, another key: not the issuer.
        let other = params_again
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("other");
        assert!(!issued_by(cert.der(), other.der()));
    }

    #[test]
    fn expiry_arithmetic() {
        let info = CertInfo {
            subject: String::new(),
            common_name: None,
            issuer: String::new(),
            sans: Vec::new(),
            serial: String::new(),
            sha256: String::new(),
            not_before: 0,
            not_after: 10 * 86_400,
            is_ca: false,
        };
        assert_eq!(info.days_left(0), 10);
        assert_eq!(info.days_left(1), 9);
        assert!(info.expires_within(11, 0));
        assert!(!info.expires_within(10, 0));
        assert!(info.expires_within(10, 1));
        assert!(info.expires_within(0, 11 * 86_400));
        assert_eq!(info.days_left(11 * 86_400), -1);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(describe_pem("hello"), Err(InspectError::NoCertificate));
        assert!(describe(b"\x30\x03\x02\x01\x00").is_err());
    }
}
