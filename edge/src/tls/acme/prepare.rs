//! What ACME needs on disk before it starts: the self-signed fallback and
//! a usable cache directory.

use super::AcmeError;
use crate::tls::{TlsError, files, self_signed, store};
use std::path::PathBuf;
use vibectl_config::{
    AcmeTls, Config,
    defaults::{ACME_CACHE_DIR_NAME, SELF_SIGNED_VALIDITY_DAYS},
};

const EPHEMERAL_BANNER: &str = "\n\
################################################################################\n\
#  WARNING: --ephemeral-cache: the ACME account key and certificates live in a #\n\
#  temporary directory. EVERY RESTART ORDERS A NEW CERTIFICATE and can hit the #\n\
#  CA's rate limits (Let's Encrypt: 5 identical certificates per week). Use a  #\n\
#  kept --cache-dir (a persistent volume) in production.                       #\n\
################################################################################\n";
/// The self-signed certificate served until the ACME one is: the edge's
/// own (`<state_dir>/certs`), with the ACME domains among its names.
pub(super) fn fallback(
    config: &Config,
    domains: &[String],
) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let dir = config
        .tls
        .self_signed
        .as_ref()
        .and_then(|s| s.dir.clone())
        .unwrap_or_else(|| config.edge.state_dir().join("certs"));
    let mut names = config.edge.hostnames.clone();
    names.extend(domains.iter().cloned());
    let made = self_signed::ensure(&dir, &names, SELF_SIGNED_VALIDITY_DAYS, false)?;
    files::load(&made.cert_path, &made.key_path)
}

/// The cache directory, 0700 and writable; a temporary one (kept alive by
/// the returned guard) with `ephemeral_cache`.
pub(super) fn prepare_cache(
    config: &Config,
    opts: &AcmeTls,
) -> Result<(PathBuf, Option<tempfile::TempDir>), AcmeError> {
    if opts.ephemeral_cache {
        let temp = tempfile::Builder::new()
            .prefix("vibectl-acme-")
            .tempdir()
            .map_err(|e| AcmeError::Cache {
                dir: std::env::temp_dir(),
                message: format!("cannot create a temporary directory: {e}"),
            })?;
        eprintln!("{EPHEMERAL_BANNER}");
        tracing::warn!(
            dir = %temp.path().display(),
            "ACME cache is ephemeral: every restart orders a new certificate and may hit the CA's rate limits"
        );
        return Ok((temp.path().to_owned(), Some(temp)));
    }
    let (dir, explicit) = match &opts.cache_dir {
        Some(dir) => (dir.clone(), true),
        None => (config.edge.state_dir().join(ACME_CACHE_DIR_NAME), false),
    };
    let err = |message: String| AcmeError::Cache {
        dir: dir.clone(),
        message,
    };
    if explicit && !dir.exists() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|p| !p.is_dir()) {
            return Err(err(format!(
                "its parent {} does not exist (create it, fix --cache-dir / tls.acme.cache_dir, or pass --ephemeral-cache)",
                parent.display()
            )));
        }
    }
    store::private_dir(&dir).map_err(|e| err(e.to_string()))?;
    let probe = dir.join(".write-test");
    store::write_atomic(&probe, b"ok", store::KEY_MODE).map_err(|e| {
        err(format!(
            "is not writable ({e}); fix its owner or mode, or pass --ephemeral-cache"
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    // Files left by rustls-acme's own DirCache (0644) are tightened.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let _ = std::fs::set_permissions(
                entry.path(),
                std::os::unix::fs::PermissionsExt::from_mode(store::KEY_MODE),
            );
        }
    }
    Ok((dir, None))
}
