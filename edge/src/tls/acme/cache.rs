//! The ACME cache on disk: the account (instant-acme's credentials, JSON)
//! and the certificate (its private key, then the chain, as one PEM) for a
//! set of domains and a directory URL. Every file is written 0600 from its
//! first byte, atomically, in a 0700 directory.
//!
//! File names are those rustls-acme used (`cached_account_<hash>`,
//! `cached_cert_<hash>`, the hash over the contacts or domains *and the
//! directory URL*), so an edge upgraded from it keeps its certificate: a
//! restart finds its certificate only with the same domains and the same
//! directory URL.

use super::AcmeError;
use crate::tls::store;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `cached_cert_<base64url(sha256(domain \0 … directory_url))>`.
pub(super) fn cert_file(dir: &Path, domains: &[String], directory_url: &str) -> PathBuf {
    dir.join(format!("cached_cert_{}", hash(domains, directory_url)))
}

/// `cached_account_<base64url(sha256(contact \0 … directory_url))>`.
pub(super) fn account_file(dir: &Path, contacts: &[String], directory_url: &str) -> PathBuf {
    dir.join(format!("cached_account_{}", hash(contacts, directory_url)))
}

pub(super) fn hash(items: &[String], directory_url: &str) -> String {
    let mut sha = Sha256::new();
    for item in items {
        sha.update(item.as_bytes());
        sha.update([0]);
    }
    sha.update(directory_url.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha.finalize())
}

/// The file's bytes, `None` if it does not exist.
pub(super) async fn read(path: PathBuf) -> Result<Option<Vec<u8>>, AcmeError> {
    tokio::task::spawn_blocking(move || match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::CacheFile {
            action: "cannot read",
            path,
            message: source.to_string(),
        }),
    })
    .await
    .map_err(|e| AcmeError::Task(e.to_string()))?
}

/// Writes the file atomically, 0600.
pub(super) async fn write(path: PathBuf, bytes: Vec<u8>) -> Result<(), AcmeError> {
    tokio::task::spawn_blocking(move || {
        store::write_atomic(&path, &bytes, store::KEY_MODE).map_err(|e| AcmeError::CacheFile {
            action: "cannot write",
            path: path.clone(),
            message: e.to_string(),
        })
    })
    .await
    .map_err(|e| AcmeError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_hash_the_names_and_the_directory_url() {
        let dir = Path::new("/c");
        let domains = vec!["a.example".to_owned(), "b.example".to_owned()];
        // rustls-acme 0.15's name for these domains and URL.
        assert_eq!(
            cert_file(dir, &domains, "https://ca/dir"),
            dir.join(format!("cached_cert_{}", hash(&domains, "https://ca/dir")))
        );
        assert_ne!(
            cert_file(dir, &domains, "https://ca/dir"),
            cert_file(dir, &domains, "https://other/dir"),
            "the directory URL is part of the name"
        );
        assert_ne!(
            account_file(dir, &domains, "https://ca/dir"),
            cert_file(dir, &domains, "https://ca/dir")
        );
    }
}
