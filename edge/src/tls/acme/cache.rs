//! The ACME cache on disk: the account key and the certificate (its private
//! key, then the chain, as one PEM) for a set of domains and a directory
//! URL. rustls-acme's own `DirCache` writes them 0644 and in place; this
//! one writes every file 0600 from its first byte, atomically, in a 0700
//! directory — and hands each certificate it loads or stores to the
//! [`Deployer`], which checks it and swaps it into the served
//! [`CertResolver`](crate::tls::CertResolver).
//!
//! File names are rustls-acme's (`cached_account_<hash>`,
//! `cached_cert_<hash>`, the hash over the contacts or domains *and the
//! directory URL*): a restart finds its certificate only with the same
//! domains and the same directory URL.

use super::{AcmeError, Deployer, Source};
use crate::tls::store;
use async_trait::async_trait;
use base64::Engine;
use rustls_acme::{AccountCache, CertCache};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

/// The cache directory, and what to do with certificates it sees.
pub(super) struct AcmeCache {
    dir: PathBuf,
    deployer: Arc<Deployer>,
}

impl AcmeCache {
    pub(super) fn new(dir: PathBuf, deployer: Arc<Deployer>) -> Self {
        Self { dir, deployer }
    }
}

/// `cached_cert_<base64url(sha256(domain \0 … directory_url))>`, as rustls-acme names it.
pub(super) fn cert_file(dir: &Path, domains: &[String], directory_url: &str) -> PathBuf {
    dir.join(format!("cached_cert_{}", hash(domains, directory_url)))
}

/// `cached_account_<base64url(sha256(contact \0 … directory_url))>`.
fn account_file(dir: &Path, contacts: &[String], directory_url: &str) -> PathBuf {
    dir.join(format!("cached_account_{}", hash(contacts, directory_url)))
}

fn hash(items: &[String], directory_url: &str) -> String {
    let mut sha = Sha256::new();
    for item in items {
        sha.update(item.as_bytes());
        sha.update([0]);
    }
    sha.update(directory_url.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha.finalize())
}

async fn read(path: PathBuf) -> Result<Option<Vec<u8>>, AcmeError> {
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

async fn write(path: PathBuf, bytes: Vec<u8>) -> Result<(), AcmeError> {
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

#[async_trait]
impl CertCache for AcmeCache {
    type EC = AcmeError;

    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, AcmeError> {
        let path = cert_file(&self.dir, domains, directory_url);
        let pem = read(path.clone()).await?;
        if let Some(pem) = &pem {
            self.deployer.deploy(pem, &path, Source::Cache);
        }
        Ok(pem)
    }

    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> Result<(), AcmeError> {
        let path = cert_file(&self.dir, domains, directory_url);
        let written = write(path.clone(), cert.to_vec()).await;
        // Served even if it could not be kept (a full disk must not keep a
        // new certificate off the wire); cached first, so a status that
        // says "issued" means "on disk" too.
        self.deployer.deploy(cert, &path, Source::Issued);
        written
    }
}

#[async_trait]
impl AccountCache for AcmeCache {
    type EA = AcmeError;

    async fn load_account(
        &self,
        contacts: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, AcmeError> {
        read(account_file(&self.dir, contacts, directory_url)).await
    }

    async fn store_account(
        &self,
        contacts: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), AcmeError> {
        write(
            account_file(&self.dir, contacts, directory_url),
            account.to_vec(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_acme::caches::DirCache;

    #[tokio::test]
    async fn file_names_are_rustls_acmes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let domains = vec!["a.example".to_owned(), "b.example".to_owned()];
        let contacts = vec!["mailto:ops@example.com".to_owned()];
        let theirs = DirCache::new(tmp.path().to_owned());
        theirs
            .store_cert(&domains, "https://ca/dir", b"cert")
            .await
            .expect("store cert");
        theirs
            .store_account(&contacts, "https://ca/dir", b"account")
            .await
            .expect("store account");
        assert!(cert_file(tmp.path(), &domains, "https://ca/dir").is_file());
        assert!(account_file(tmp.path(), &contacts, "https://ca/dir").is_file());
        assert!(
            !cert_file(tmp.path(), &domains, "https://other/dir").exists(),
            "the directory URL is part of the name"
        );
    }
}
