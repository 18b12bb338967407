//! The single-node storage: the cache directory ([`super::super::cache`]
//! names and writes the files). One edge per directory: the lock is always
//! free, answers stay in the process, nothing is followed.

use super::{AcmeError, Answer, OrderRecord, Storage, Versions};
use crate::tls::acme::cache;
use std::{path::PathBuf, time::Duration};

/// The account and certificate files of one cache directory.
#[derive(Debug)]
pub(crate) struct DirStorage {
    dir: PathBuf,
    account: PathBuf,
    cert: PathBuf,
}

impl DirStorage {
    pub(crate) fn new(
        dir: PathBuf,
        domains: &[String],
        contact: &str,
        directory_url: &str,
    ) -> Self {
        Self {
            account: cache::account_file(&dir, &[contact.to_owned()], directory_url),
            cert: cache::cert_file(&dir, domains, directory_url),
            dir,
        }
    }
}

#[async_trait::async_trait]
impl Storage for DirStorage {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn cert_location(&self) -> PathBuf {
        self.cert.clone()
    }

    fn shared(&self) -> bool {
        false
    }

    async fn account(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        cache::read(self.account.clone()).await
    }

    async fn store_account(&self, bytes: Vec<u8>) -> Result<(), AcmeError> {
        cache::write(self.account.clone(), bytes).await
    }

    async fn certificate(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        cache::read(self.cert.clone()).await
    }

    async fn store_certificate(&self, pem: Vec<u8>, _token: &str) -> Result<bool, AcmeError> {
        cache::write(self.cert.clone(), pem).await.map(|()| true)
    }

    async fn try_lock(&self, _token: &str, _lease: Duration) -> Result<bool, AcmeError> {
        Ok(true)
    }

    async fn renew_lock(&self, _token: &str, _lease: Duration) -> Result<bool, AcmeError> {
        Ok(true)
    }

    async fn unlock(&self, _token: &str) -> Result<(), AcmeError> {
        Ok(())
    }

    async fn order_record(&self) -> Result<Option<OrderRecord>, AcmeError> {
        Ok(None)
    }

    async fn save_order_record(&self, _record: &OrderRecord) -> Result<(), AcmeError> {
        Ok(())
    }

    async fn clear_order_record(&self) -> Result<(), AcmeError> {
        Ok(())
    }

    async fn publish_answers(&self, _answers: &[Answer]) -> Result<u64, AcmeError> {
        Ok(0)
    }

    async fn withdraw_answers(&self, _answers: &[Answer]) -> Result<(), AcmeError> {
        Ok(())
    }

    async fn answers(&self) -> Result<Vec<Answer>, AcmeError> {
        Ok(Vec::new())
    }

    async fn heartbeat(&self, _replica: &str, _alive: Duration) -> Result<Versions, AcmeError> {
        Ok(Versions::default())
    }

    async fn ack_answers(&self, _replica: &str, _version: u64) -> Result<(), AcmeError> {
        Ok(())
    }

    async fn replicas_behind(&self, _version: u64) -> Result<u64, AcmeError> {
        Ok(0)
    }
}
