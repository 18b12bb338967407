//! Self-signed mode: a small local CA and a server certificate it signs,
//! generated with rcgen on first run and persisted, so clients configured
//! with `ca-bundle.crt` keep trusting the edge across restarts. Later runs
//! reuse both; only the leaf is re-issued, when the host names changed or it
//! expires within [`SELF_SIGNED_RENEW_BEFORE_DAYS`] days.
//!
//! Files, in the certificate directory (0700): `ca.crt`, `ca.key` (0600),
//! `ca-bundle.crt` (the CA certificate, for clients), `server.crt` (leaf then
//! CA) and `server.key` (0600).

use crate::{fsutil, tls::TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
};
use time::OffsetDateTime;
use vibectl_config::defaults::{SELF_SIGNED_CA_VALIDITY_DAYS, SELF_SIGNED_RENEW_BEFORE_DAYS};

/// Where the self-signed files are and what happened to them on this run.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate directory.
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca_cert_path: PathBuf,
    /// The CA private key.
    pub ca_key_path: PathBuf,
    /// The file to give clients (`--ca-bundle`): the CA certificate.
    pub ca_bundle_path: PathBuf,
    /// The server certificate chain (leaf, then CA).
    pub cert_path: PathBuf,
    /// The server private key.
    pub key_path: PathBuf,
    /// SHA-256 fingerprint of the CA certificate, `AB:CD:…`.
    pub ca_fingerprint: String,
    /// True when the CA was made on this run (clients must fetch the bundle).
    pub ca_generated: bool,
    /// True when the server certificate was (re-)issued on this run.
    pub leaf_generated: bool,
}

/// The names every generated certificate carries, beside `hostnames`.
const ALWAYS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Makes sure `dir` holds a CA and a server certificate for `hostnames`
/// (plus `localhost`, `127.0.0.1`, `::1`), generating what is missing, stale
/// or (with `force`) everything. Returns the paths and the CA fingerprint.
pub fn ensure(
    dir: &Path,
    hostnames: &[String],
    validity_days: u32,
    force: bool,
) -> Result<SelfSigned, TlsError> {
    let paths = SelfSigned::paths(dir);
    fsutil::create_private_dir(dir).map_err(|source| TlsError::File {
        action: "cannot create directory",
        path: dir.to_owned(),
        source,
    })?;
    let gen_err = |source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    };
    let wanted = wanted_names(hostnames)?;

    let reuse_ca = !force && paths.ca_cert_path.exists() && paths.ca_key_path.exists();
    let (ca_pem, ca_key) = if reuse_ca {
        let pem = read(&paths.ca_cert_path)?;
        let key = KeyPair::from_pem(&read(&paths.ca_key_path)?).map_err(gen_err)?;
        (pem, key)
    } else {
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = ca_params().self_signed(&key).map_err(gen_err)?;
        write_private(&paths.ca_key_path, key.serialize_pem().as_bytes())?;
        write_public(&paths.ca_cert_path, cert.pem().as_bytes())?;
        tracing::info!(dir = %dir.display(), "generated a new local CA");
        (cert.pem(), key)
    };
    // An issuer for rcgen: the persisted CA's subject and key identifier,
    // re-signed in memory only (never written), so the leaf chains to the
    // CA certificate clients already trust.
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem).map_err(gen_err)?;
    let ca_der = pem_to_der(&paths.ca_cert_path, &ca_pem)?;
    let issuer = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    if !reuse_ca || !paths.ca_bundle_path.exists() {
        write_public(&paths.ca_bundle_path, ca_pem.as_bytes())?;
    }

    let leaf_reason = if !reuse_ca {
        Some("new CA")
    } else {
        stale_leaf_reason(&paths, &wanted, &ca_der)
    };
    if let Some(reason) = leaf_reason {
        let key = KeyPair::generate().map_err(gen_err)?;
        let params = leaf_params(&wanted, validity_days)?;
        let leaf = params.signed_by(&key, &issuer, &ca_key).map_err(gen_err)?;
        write_private(&paths.key_path, key.serialize_pem().as_bytes())?;
        write_public(
            &paths.cert_path,
            format!("{}{}", leaf.pem(), ca_pem).as_bytes(),
        )?;
        tracing::info!(reason, names = ?wanted, "issued a new server certificate");
    }

    Ok(SelfSigned {
        ca_fingerprint: fingerprint(&ca_der),
        ca_generated: !reuse_ca,
        leaf_generated: leaf_reason.is_some(),
        ..paths
    })
}

impl SelfSigned {
    fn paths(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ca_cert_path: dir.join("ca.crt"),
            ca_key_path: dir.join("ca.key"),
            ca_bundle_path: dir.join("ca-bundle.crt"),
            cert_path: dir.join("server.crt"),
            key_path: dir.join("server.key"),
            ca_fingerprint: String::new(),
            ca_generated: false,
            leaf_generated: false,
        }
    }
}

/// SHA-256 of a DER certificate as upper-case hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex = hex::encode_upper(digest);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The normalised set of names (DNS lower-case, IPs canonical) a leaf must carry.
fn wanted_names(hostnames: &[String]) -> Result<BTreeSet<String>, TlsError> {
    let mut names = BTreeSet::new();
    for name in hostnames.iter().map(|h| h.trim()).chain(ALWAYS) {
        if name.is_empty() {
            continue;
        }
        let normal = match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.to_ascii_lowercase(),
        };
        names.insert(normal);
    }
    // Reject names rcgen cannot encode now, with the name in the message.
    for name in &names {
        if name.parse::<IpAddr>().is_err() {
            rcgen::Ia5String::try_from(name.as_str()).map_err(|e| TlsError::BadHostname {
                name: name.clone(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(names)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vibectl-proxy");
    dn.push(DnType::CommonName, "vibectl-proxy local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_CA_VALIDITY_DAYS.into());
    params
}

fn leaf_params(
    names: &BTreeSet<String>,
    validity_days: u32,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => rcgen::Ia5String::try_from(name.as_str())
                .map(SanType::DnsName)
                .map_err(|e| TlsError::BadHostname {
                    name: name.clone(),
                    message: e.to_string(),
                }),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    let cn = names
        .iter()
        .find(|n| n.parse::<IpAddr>().is_err() && *n != "localhost")
        .map_or("localhost", String::as_str);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(validity_days.max(1).into());
    Ok(params)
}

/// Why the persisted leaf must be re-issued, or `None` if it can be reused.
fn stale_leaf_reason(
    paths: &SelfSigned,
    wanted: &BTreeSet<String>,
    ca_der: &[u8],
) -> Option<&'static str> {
    if !paths.cert_path.exists() || !paths.key_path.exists() {
        return Some("no server certificate yet");
    }
    let Ok(pem) = std::fs::read(&paths.cert_path) else {
        return Some("server certificate unreadable");
    };
    let Ok((_, leaf_pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Some("server certificate unparsable");
    };
    let Ok(leaf) = leaf_pem.parse_x509() else {
        return Some("server certificate unparsable");
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return Some("CA certificate unparsable");
    };
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Some("server certificate was issued by another CA");
    }
    let renew_at =
        OffsetDateTime::now_utc() + time::Duration::days(SELF_SIGNED_RENEW_BEFORE_DAYS.into());
    if leaf.validity().not_after.timestamp() < renew_at.unix_timestamp() {
        return Some("server certificate expires soon");
    }
    if &leaf_names(&leaf) != wanted {
        return Some("host names changed");
    }
    None
}

fn leaf_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> BTreeSet<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return BTreeSet::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })
}

fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            what: "certificate",
            message: e.to_string(),
        })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    fsutil::write_private(path, bytes).map_err(|source| TlsError::File {
        action: "cannot write",
        path: path.to_owned(),
        source,
    })
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    fsutil::write_public(path, bytes).map_err(|source| TlsError::File {
        action: "cannot write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[path = "self_signed_tests.rs"]
mod tests;
