//! The private CA on disk, behind `vibectl-edge ca …` and `serve-ca`.
//! `init` makes a root CA and an intermediate CA; only the intermediate
//! signs, so the root key can be moved offline once `init` is done.
//! `create_server_cert` and `create_client_cert` issue leaves; `status`,
//! `expiring` and `bundle` report.
//!
//! A CA directory (0700; every key 0600; every file written atomically):
//!
//! | file | what |
//! | --- | --- |
//! | `root-ca.crt`, `root-ca.key` | the root (move the key offline) |
//! | `intermediate-ca.crt`, `intermediate-ca.key` | the signing CA |
//! | `ca-bundle.crt` | what clients trust: root, then intermediate |
//! | `server.crt`, `server.key` | the server chain (leaf, intermediate) and key |
//! | `clients/NAME.crt`, `clients/NAME.key` | client certificates for mutual TLS |

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
use vibectl_config::defaults;

/// File names inside a CA directory.
pub mod files {
    /// Root CA certificate.
    pub const ROOT_CRT: &str = "root-ca.crt";
    /// Root CA key (move it offline after `init`).
    pub const ROOT_KEY: &str = "root-ca.key";
    /// Intermediate CA certificate.
    pub const INTERMEDIATE_CRT: &str = "intermediate-ca.crt";
    /// Intermediate CA key (signs every leaf).
    pub const INTERMEDIATE_KEY: &str = "intermediate-ca.key";
    /// What clients trust: the root, then the intermediate.
    pub const BUNDLE: &str = "ca-bundle.crt";
    /// The server chain: leaf, then intermediate.
    pub const SERVER_CRT: &str = "server.crt";
    /// The server key.
    pub const SERVER_KEY: &str = "server.key";
    /// Client certificates (`NAME.crt`, `NAME.key`).
    pub const CLIENTS: &str = "clients";
}

/// The files a complete CA has. The root key is not among them: it may
/// have been moved offline.
const REQUIRED: [&str; 4] = [
    files::ROOT_CRT,
    files::INTERMEDIATE_CRT,
    files::INTERMEDIATE_KEY,
    files::BUNDLE,
];

/// The common names of the CA certificates `init` makes.
const ROOT_NAME: &str = "vibectl LLM proxy root CA";
const INTERMEDIATE_NAME: &str = "vibectl LLM proxy intermediate CA";

/// Validity periods of new certificates, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Root CA.
    pub root_days: u32,
    /// Intermediate CA.
    pub intermediate_days: u32,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            root_days: defaults::CA_ROOT_VALIDITY_DAYS,
            intermediate_days: defaults::CA_INTERMEDIATE_VALIDITY_DAYS,
        }
    }
}

/// Whether a command made something or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Made now.
    Created,
    /// Made now, replacing what was there (`--force`).
    Replaced,
    /// Already there and complete; nothing was written.
    Kept,
}

/// What `init` did, and what to publish.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Made, replaced or kept.
    pub outcome: Outcome,
    /// The bundle to give clients (`--ca-bundle`).
    pub bundle: PathBuf,
    /// The root key, while it is still in the directory.
    pub root_key: Option<PathBuf>,
    /// SHA-256 fingerprint of the root CA certificate (publish it).
    pub root_sha256: String,
    /// SHA-256 fingerprint of the intermediate CA certificate.
    pub intermediate_sha256: String,
    /// Leaves in the directory that the replaced CA had issued (`--force`):
    /// clients trusting the new bundle will not accept them.
    pub orphaned: Vec<PathBuf>,
}

/// What a `create-*` command did.
#[derive(Debug, Clone)]
pub struct LeafReport {
    /// Made, replaced or kept.
    pub outcome: Outcome,
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// The leaf.
    pub info: CertInfo,
}

/// Creates the root and intermediate CA in `dir`. On a complete CA
/// (root certificate, intermediate certificate and key, bundle; the root key
/// may be gone) it changes nothing and reports [`Outcome::Kept`], so an init
/// container can run again; a partial CA is an error; `force` replaces
/// whatever is there with a new CA.
pub fn init(dir: &Path, validity: Validity, force: bool) -> Result<InitReport, TlsError> {
    let present: Vec<&str> = REQUIRED
        .iter()
        .chain(&[files::ROOT_KEY])
        .copied()
        .filter(|f| dir.join(f).exists())
        .collect();
    let complete = REQUIRED.iter().all(|f| present.contains(f));
    if !force && complete {
        let issuer = intermediate(dir)?;
        let report = describe_ca(dir, &issuer, Outcome::Kept)?;
        return Ok(report);
    }
    if !force && !present.is_empty() {
        let missing = REQUIRED
            .iter()
            .filter(|f| !present.contains(f))
            .map(|f| (*f).to_owned())
            .collect();
        return Err(TlsError::CaIncomplete {
            dir: dir.to_owned(),
            present: present.iter().map(|f| (*f).to_owned()).collect(),
            missing,
        });
    }
    store::private_dir(dir)?;
    let gen_err = |source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    };
    let root = pki::root_ca(ROOT_NAME, validity.root_days).map_err(gen_err)?;
    let root_issuer = Issuer::from_issued(&root).map_err(gen_err)?;
    let inter = pki::intermediate_ca(&root_issuer, INTERMEDIATE_NAME, validity.intermediate_days)
        .map_err(gen_err)?;
    // Keys first: a certificate is never on disk without its key.
    store::write_key(&dir.join(files::ROOT_KEY), &root.key_pem)?;
    store::write_cert(&dir.join(files::ROOT_CRT), &root.cert_pem)?;
    store::write_key(&dir.join(files::INTERMEDIATE_KEY), &inter.key_pem)?;
    store::write_cert(&dir.join(files::INTERMEDIATE_CRT), &inter.cert_pem)?;
    store::write_cert(
        &dir.join(files::BUNDLE),
        &format!("{}{}", root.cert_pem, inter.cert_pem),
    )?;
    let issuer = Issuer::from_issued(&inter).map_err(gen_err)?;
    let outcome = if present.is_empty() {
        Outcome::Created
    } else {
        Outcome::Replaced
    };
    let mut report = describe_ca(dir, &issuer, outcome)?;
    if outcome == Outcome::Replaced {
        let inter_der = first_der(&dir.join(files::INTERMEDIATE_CRT), &inter.cert_pem)?;
        report.orphaned = leaf_files(dir)?
            .into_iter()
            .filter(|path| {
                store::read(path)
                    .ok()
                    .and_then(|pem| inspect::chain_ders(&pem).ok())
                    .is_some_and(|chain| !inspect::issued_by(&chain[0], &inter_der))
            })
            .collect();
    }
    Ok(report)
}

fn describe_ca(dir: &Path, issuer: &Issuer, outcome: Outcome) -> Result<InitReport, TlsError> {
    let root_path = dir.join(files::ROOT_CRT);
    let root_pem = store::read(&root_path)?;
    let root_der = first_der(&root_path, &root_pem)?;
    let inter_path = dir.join(files::INTERMEDIATE_CRT);
    let inter_der = first_der(&inter_path, &issuer.cert_pem)?;
    if !inspect::issued_by(&inter_der, &root_der) {
        return Err(TlsError::CaInconsistent {
            dir: dir.to_owned(),
            reason: format!(
                "{} was not issued by {}",
                files::INTERMEDIATE_CRT,
                files::ROOT_CRT
            ),
        });
    }
    let bundle = dir.join(files::BUNDLE);
    let bundle_ders =
        inspect::chain_ders(&store::read(&bundle)?).map_err(|source| TlsError::Certificate {
            path: bundle.clone(),
            source,
        })?;
    if !bundle_ders
        .iter()
        .any(|der| der.as_ref() == root_der.as_slice())
    {
        return Err(TlsError::CaInconsistent {
            dir: dir.to_owned(),
            reason: format!("{} does not contain {}", files::BUNDLE, files::ROOT_CRT),
        });
    }
    let root_key = dir.join(files::ROOT_KEY);
    Ok(InitReport {
        outcome,
        bundle,
        root_key: root_key.exists().then_some(root_key),
        root_sha256: inspect::fingerprint(&root_der),
        intermediate_sha256: inspect::fingerprint(&inter_der),
        orphaned: Vec::new(),
    })
}

/// The intermediate CA of `dir`, loaded for signing.
fn intermediate(dir: &Path) -> Result<Issuer, TlsError> {
    for file in [files::INTERMEDIATE_CRT, files::INTERMEDIATE_KEY] {
        if !dir.join(file).exists() {
            return Err(TlsError::CaNotInitialized {
                dir: dir.to_owned(),
                missing: file,
            });
        }
    }
    let cert = store::read(&dir.join(files::INTERMEDIATE_CRT))?;
    let key = store::read(&dir.join(files::INTERMEDIATE_KEY))?;
    Issuer::from_pem(&cert, &key).map_err(|source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    })
}

fn first_der(path: &Path, pem: &str) -> Result<Vec<u8>, TlsError> {
    inspect::chain_ders(pem)
        .map(|chain| chain[0].to_vec())
        .map_err(|source| TlsError::Certificate {
            path: path.to_owned(),
            source,
        })
}

/// Issues `server.crt` (chain: leaf, intermediate) and `server.key` for
/// `hosts` (DNS names and IP addresses), valid `days`. If a server
/// certificate exists: one for the same names from this CA, not expiring
/// within a third of `days`, is kept ([`Outcome::Kept`], so an init
/// container can run again); any other is only replaced with `force`.
pub fn create_server_cert(
    dir: &Path,
    hosts: &[String],
    days: u32,
    force: bool,
) -> Result<LeafReport, TlsError> {
    let (cert, key) = (dir.join(files::SERVER_CRT), dir.join(files::SERVER_KEY));
    let issuer = intermediate(dir)?;
    let gen_err = |source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    };
    let wanted: BTreeSet<String> = hosts
        .iter()
        .map(|h| pki::normalize_host(h))
        .collect::<Result<_, _>>()
        .map_err(gen_err)?;
    let exists = cert.exists() || key.exists();
    if exists && !force {
        match reusable_server_cert(&cert, &key, &issuer, &wanted, days) {
            Ok(info) => {
                return Ok(LeafReport {
                    outcome: Outcome::Kept,
                    cert,
                    key,
                    info,
                });
            }
            Err(reason) => {
                return Err(TlsError::ServerCertExists { path: cert, reason });
            }
        }
    }
    let issued = pki::server_cert(&issuer, hosts, days).map_err(gen_err)?;
    store::write_key(&key, &issued.key_pem)?;
    store::write_cert(&cert, &issued.cert_pem)?;
    let info = inspect::describe_pem(&issued.cert_pem).map_err(|source| TlsError::Certificate {
        path: cert.clone(),
        source,
    })?;
    Ok(LeafReport {
        outcome: if exists {
            Outcome::Replaced
        } else {
            Outcome::Created
        },
        cert,
        key,
        info,
    })
}

/// `Ok` with the existing leaf if it is what `create-server-cert` would
/// make now; else why it is not.
fn reusable_server_cert(
    cert: &Path,
    key: &Path,
    issuer: &Issuer,
    wanted: &BTreeSet<String>,
    days: u32,
) -> Result<CertInfo, String> {
    let loaded = crate::tls::files::load(cert, key).map_err(|e| e.to_string())?;
    let info = inspect::describe(&loaded.cert[0]).map_err(|e| e.to_string())?;
    let inter = inspect::chain_ders(&issuer.cert_pem).map_err(|e| e.to_string())?;
    if !inspect::issued_by(&loaded.cert[0], &inter[0]) {
        return Err("it was issued by another CA".to_owned());
    }
    let have: BTreeSet<String> = info.sans.iter().cloned().collect();
    if &have != wanted {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        return Err(format!(
            "it is for {} instead of {}",
            list(&have),
            list(wanted)
        ));
    }
    if info.expires_within(days / 3, inspect::now_unix()) {
        return Err(format!(
            "it expires in {} days",
            info.days_left(inspect::now_unix())
        ));
    }
    Ok(info)
}

/// Issues `clients/NAME.crt` (chain: leaf, intermediate) and
/// `clients/NAME.key` for mutual TLS, valid `days`; an existing one is only
/// replaced with `force`.
pub fn create_client_cert(
    dir: &Path,
    name: &str,
    days: u32,
    force: bool,
) -> Result<LeafReport, TlsError> {
    let gen_err = |source| TlsError::Generate {
        dir: dir.to_owned(),
        source,
    };
    pki::check_client_name(name).map_err(gen_err)?;
    let issuer = intermediate(dir)?;
    let clients = dir.join(files::CLIENTS);
    let (cert, key) = (
        clients.join(format!("{name}.crt")),
        clients.join(format!("{name}.key")),
    );
    store::check_free(&[&cert, &key], force)?;
    let exists = cert.exists() || key.exists();
    let issued = pki::client_cert(&issuer, name, days).map_err(gen_err)?;
    store::private_dir(&clients)?;
    store::write_key(&key, &issued.key_pem)?;
    store::write_cert(&cert, &issued.cert_pem)?;
    let info = inspect::describe_pem(&issued.cert_pem).map_err(|source| TlsError::Certificate {
        path: cert.clone(),
        source,
    })?;
    Ok(LeafReport {
        outcome: if exists {
            Outcome::Replaced
        } else {
            Outcome::Created
        },
        cert,
        key,
        info,
    })
}

/// The bundle clients trust (root, then intermediate), checked to hold
/// certificates.
pub fn bundle(dir: &Path) -> Result<String, TlsError> {
    let path = dir.join(files::BUNDLE);
    if !path.exists() {
        return Err(TlsError::CaNotInitialized {
            dir: dir.to_owned(),
            missing: files::BUNDLE,
        });
    }
    let pem = store::read(&path)?;
    inspect::chain_ders(&pem).map_err(|source| TlsError::Certificate {
        path: path.clone(),
        source,
    })?;
    Ok(pem)
}

/// Every certificate file under `dir` (`*.crt` but the bundle, recursively,
/// hidden names skipped, sorted), each described by its first certificate.
pub fn status(dir: &Path) -> Result<Vec<(PathBuf, CertInfo)>, TlsError> {
    if !dir.is_dir() {
        return Err(TlsError::CaNotInitialized {
            dir: dir.to_owned(),
            missing: files::ROOT_CRT,
        });
    }
    let mut out = Vec::new();
    for path in cert_files(dir)? {
        let info = inspect::describe_pem(&store::read(&path)?).map_err(|source| {
            TlsError::Certificate {
                path: path.clone(),
                source,
            }
        })?;
        out.push((path, info));
    }
    Ok(out)
}

/// The certificates under `dir` that expire within `days` days of
/// `now_unix` (or have expired).
pub fn expiring(
    dir: &Path,
    days: u32,
    now_unix: i64,
) -> Result<Vec<(PathBuf, CertInfo)>, TlsError> {
    Ok(status(dir)?
        .into_iter()
        .filter(|(_, info)| info.expires_within(days, now_unix))
        .collect())
}

/// `*.crt` files under `dir` except the bundle; hidden entries (temporary
/// files, Kubernetes' `..data`) skipped.
fn cert_files(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| TlsError::File {
            action: "cannot list",
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".crt") && !(d == dir && name == files::BUNDLE) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Leaf certificate files (server and clients) under `dir`.
fn leaf_files(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    Ok(cert_files(dir)?
        .into_iter()
        .filter(|p| {
            !(p.parent() == Some(dir)
                && [files::ROOT_CRT, files::INTERMEDIATE_CRT]
                    .iter()
                    .any(|f| p.ends_with(f)))
        })
        .collect())
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
