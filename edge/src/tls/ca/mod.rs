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

mod leaf;
mod listing;

pub use leaf::{NotReusable, create_client_cert, create_server_cert};
pub use listing::{bundle, expiring, status};

use crate::tls::{
    TlsError,
    inspect::{self, CertInfo},
    pki::{self, Issuer},
    store,
};
use std::path::{Path, PathBuf};
use vibectl_config::defaults;

/// Why a `vibectl-edge ca …` command failed: the CLI's own refusals, and
/// the file, PEM and key failures it shares with serving ([`TlsError`]).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written, a PEM block parsed, a key made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `ca create-*` before `ca init`.
    #[error(
        "no CA in {dir} (missing {missing}); run `vibectl-edge ca init --dir {dir}` first",
        dir = dir.display()
    )]
    NotInitialized {
        /// The directory.
        dir: PathBuf,
        /// The first missing file.
        missing: &'static str,
    },
    /// Some CA files exist, others do not.
    #[error(
        "{} holds an incomplete CA (has {}; lacks {}): restore the missing files, or pass --force to replace it with a new CA (clients then need the new ca-bundle.crt)",
        dir.display(), present.join(", "), missing.join(", ")
    )]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// CA files present.
        present: Vec<String>,
        /// CA files missing.
        missing: Vec<String>,
    },
    /// The CA files do not belong together.
    #[error("the CA in {} is inconsistent: {reason}", dir.display())]
    Inconsistent {
        /// The directory.
        dir: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A file exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it", path.display())]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// A server certificate exists that is not the one asked for.
    #[error("{} already exists and {reason}; pass --force to replace it", path.display())]
    ServerCertExists {
        /// The certificate file.
        path: PathBuf,
        /// How it differs from what was asked.
        reason: NotReusable,
    },
    /// `ca check-expiry`: certificates expire within the window.
    #[error("{count} certificate(s) in {} expire within {days} days (or have expired)", dir.display())]
    Expiring {
        /// The CA directory.
        dir: PathBuf,
        /// How many.
        count: usize,
        /// The window, in days.
        days: u32,
    },
}

/// A certificate or key could not be made in `dir`.
fn generate_error(dir: &Path) -> impl Fn(pki::PkiError) -> CaError + Copy + '_ {
    move |source| {
        TlsError::Generate {
            dir: dir.to_owned(),
            source,
        }
        .into()
    }
}

/// A PEM block of `path` that is not a certificate.
fn certificate_error(path: &Path) -> impl Fn(inspect::InspectError) -> CaError + Copy + '_ {
    move |source| {
        TlsError::Certificate {
            path: path.to_owned(),
            source,
        }
        .into()
    }
}

/// Fails with [`CaError::FileExists`] if any of `paths` exists and `force`
/// is false. Callers check everything before writing anything, so a refused
/// command leaves nothing half-done.
fn check_free(paths: &[&Path], force: bool) -> Result<(), CaError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) if !force => Err(CaError::FileExists {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

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
pub fn init(dir: &Path, validity: Validity, force: bool) -> Result<InitReport, CaError> {
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
        return Err(CaError::Incomplete {
            dir: dir.to_owned(),
            present: present.iter().map(|f| (*f).to_owned()).collect(),
            missing,
        });
    }
    store::private_dir(dir)?;
    let gen_err = generate_error(dir);
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
        report.orphaned = listing::leaf_files(dir)?
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

fn describe_ca(dir: &Path, issuer: &Issuer, outcome: Outcome) -> Result<InitReport, CaError> {
    let root_path = dir.join(files::ROOT_CRT);
    let root_pem = store::read(&root_path)?;
    let root_der = first_der(&root_path, &root_pem)?;
    let inter_path = dir.join(files::INTERMEDIATE_CRT);
    let inter_der = first_der(&inter_path, &issuer.cert_pem)?;
    if !inspect::issued_by(&inter_der, &root_der) {
        return Err(CaError::Inconsistent {
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
        inspect::chain_ders(&store::read(&bundle)?).map_err(certificate_error(&bundle))?;
    if !bundle_ders
        .iter()
        .any(|der| der.as_ref() == root_der.as_slice())
    {
        return Err(CaError::Inconsistent {
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
fn intermediate(dir: &Path) -> Result<Issuer, CaError> {
    for file in [files::INTERMEDIATE_CRT, files::INTERMEDIATE_KEY] {
        if !dir.join(file).exists() {
            return Err(CaError::NotInitialized {
                dir: dir.to_owned(),
                missing: file,
            });
        }
    }
    let cert = store::read(&dir.join(files::INTERMEDIATE_CRT))?;
    let key = store::read(&dir.join(files::INTERMEDIATE_KEY))?;
    Issuer::from_pem(&cert, &key).map_err(generate_error(dir))
}

fn first_der(path: &Path, pem: &str) -> Result<Vec<u8>, CaError> {
    inspect::chain_ders(pem)
        .map(|chain| chain[0].to_vec())
        .map_err(certificate_error(path))
}

#[cfg(test)]
mod tests;
