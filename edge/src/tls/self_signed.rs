//! Self-signed mode: a small local CA and a server certificate it signs,
//! generated with rcgen on first run and persisted, so clients configured
//! with `ca-bundle.crt` keep trusting the edge across restarts. Later runs
//! reuse both; only the leaf is re-issued, when the host names changed or it
//! expires within [`SELF_SIGNED_RENEW_BEFORE_DAYS`] days.
//!
//! Files, in the certificate directory (0700): `ca.crt`, `ca.key` (0600),
//! `ca-bundle.crt` (the CA certificate, for clients), `server.crt` (leaf then
//! CA) and `server.key` (0600), each written atomically.
//!
//! Issuing and reading go through [`crate::tls::pki`] and
//! [`crate::tls::inspect`], the same code as the private CA (`ca …`).

use crate::tls::{
    TlsError,
    inspect::{self, CertInfo},
    pki::{self, Issuer},
    store,
};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};
use vibectl_config::defaults::{SELF_SIGNED_CA_VALIDITY_DAYS, SELF_SIGNED_RENEW_BEFORE_DAYS};

pub use crate::tls::inspect::fingerprint;

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

/// The common name of the local CA.
const CA_NAME: &str = "vibectl-proxy local CA";

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
    store::private_dir(dir)?;
    let gen_err = |source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    };
    let names = wanted_names(hostnames).map_err(gen_err)?;

    let reuse_ca = !force && paths.ca_cert_path.exists() && paths.ca_key_path.exists();
    let issuer = if reuse_ca {
        let pem = store::read(&paths.ca_cert_path)?;
        let key = store::read(&paths.ca_key_path)?;
        Issuer::from_pem(&pem, &key).map_err(gen_err)?
    } else {
        // A local CA that signs leaves only (path length 0).
        let ca = pki::self_signed_ca(CA_NAME, SELF_SIGNED_CA_VALIDITY_DAYS, 0).map_err(gen_err)?;
        store::write_key(&paths.ca_key_path, &ca.key_pem)?;
        store::write_cert(&paths.ca_cert_path, &ca.cert_pem)?;
        tracing::info!(dir = %dir.display(), "generated a new local CA");
        Issuer::from_issued(&ca).map_err(gen_err)?
    };
    let ca_der = inspect::chain_ders(&issuer.cert_pem)
        .map(|chain| chain[0].to_vec())
        .map_err(|source| TlsError::Certificate {
            path: paths.ca_cert_path.clone(),
            source,
        })?;
    if !reuse_ca || !paths.ca_bundle_path.exists() {
        store::write_cert(&paths.ca_bundle_path, &issuer.cert_pem)?;
    }

    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    let leaf_reason = if !reuse_ca {
        Some("new CA")
    } else {
        stale_leaf_reason(&paths, &wanted, &ca_der)
    };
    if let Some(reason) = leaf_reason {
        let leaf = pki::server_cert(&issuer, &names, validity_days).map_err(gen_err)?;
        store::write_key(&paths.key_path, &leaf.key_pem)?;
        store::write_cert(&paths.cert_path, &leaf.cert_pem)?;
        tracing::info!(reason, names = ?names, "issued a new server certificate");
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

/// The names a leaf must carry, normalised (DNS lower-case, IPs canonical),
/// the configured ones first (the first DNS name becomes the common name).
fn wanted_names(hostnames: &[String]) -> Result<Vec<String>, pki::PkiError> {
    let mut names = Vec::new();
    for name in hostnames.iter().map(String::as_str).chain(ALWAYS) {
        if name.trim().is_empty() {
            continue;
        }
        let normal = pki::normalize_host(name)?;
        if !names.contains(&normal) {
            names.push(normal);
        }
    }
    Ok(names)
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
    let Ok(pem) = std::fs::read_to_string(&paths.cert_path) else {
        return Some("server certificate unreadable");
    };
    let Ok(chain) = inspect::chain_ders(&pem) else {
        return Some("server certificate unparsable");
    };
    let Ok(leaf): Result<CertInfo, _> = inspect::describe(&chain[0]) else {
        return Some("server certificate unparsable");
    };
    if !inspect::issued_by(&chain[0], ca_der) {
        return Some("server certificate was issued by another CA");
    }
    if leaf.expires_within(SELF_SIGNED_RENEW_BEFORE_DAYS, inspect::now_unix()) {
        return Some("server certificate expires soon");
    }
    if leaf.sans.iter().cloned().collect::<BTreeSet<_>>() != *wanted {
        return Some("host names changed");
    }
    if crate::tls::files::load(&paths.cert_path, &paths.key_path).is_err() {
        return Some("server key does not match the certificate");
    }
    None
}

#[cfg(test)]
#[path = "self_signed_tests.rs"]
mod tests;
