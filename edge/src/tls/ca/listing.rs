//! What the private CA holds: the clients' bundle, every certificate with
//! its expiry (`ca status`, `ca check-expiry`), the leaf files.

use super::{CaError, certificate_error, files};
use crate::tls::{
    TlsError,
    inspect::{self, CertInfo},
    store,
};
use std::path::{Path, PathBuf};

/// The bundle clients trust (root, then intermediate), checked to hold
/// certificates.
pub fn bundle(dir: &Path) -> Result<String, CaError> {
    let path = dir.join(files::BUNDLE);
    if !path.exists() {
        return Err(CaError::NotInitialized {
            dir: dir.to_owned(),
            missing: files::BUNDLE,
        });
    }
    let pem = store::read(&path)?;
    inspect::chain_ders(&pem).map_err(certificate_error(&path))?;
    Ok(pem)
}

/// Every certificate file under `dir` (`*.crt` but the bundle, recursively,
/// hidden names skipped, sorted), each described by its first certificate.
pub fn status(dir: &Path) -> Result<Vec<(PathBuf, CertInfo)>, CaError> {
    if !dir.is_dir() {
        return Err(CaError::NotInitialized {
            dir: dir.to_owned(),
            missing: files::ROOT_CRT,
        });
    }
    let mut out = Vec::new();
    for path in cert_files(dir)? {
        let info = inspect::describe_pem(&store::read(&path)?).map_err(certificate_error(&path))?;
        out.push((path, info));
    }
    Ok(out)
}

/// The certificates under `dir` that expire within `days` days of
/// `now_unix` (or have expired).
pub fn expiring(dir: &Path, days: u32, now_unix: i64) -> Result<Vec<(PathBuf, CertInfo)>, CaError> {
    Ok(status(dir)?
        .into_iter()
        .filter(|(_, info)| info.expires_within(days, now_unix))
        .collect())
}

/// `*.crt` files under `dir` except the bundle; hidden entries (temporary
/// files, Kubernetes' `..data`) skipped.
fn cert_files(dir: &Path) -> Result<Vec<PathBuf>, CaError> {
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
pub(super) fn leaf_files(dir: &Path) -> Result<Vec<PathBuf>, CaError> {
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
