//! One order under the ordering lock ([`Lock`]): with Redis, only the
//! replica holding it orders; the others wait for the certificate it
//! stores. Under the lock the storage is read again (another replica may
//! have just stored a certificate: it is served, nothing is ordered), an
//! order left behind by a replica whose lease expired is resumed (a
//! takeover), and the new certificate is stored only while the lock is
//! still held (fencing). The order is given up when the lock is lost.

use super::{
    driver::Driver,
    flow::{Flow, Issued},
    lock::Lock,
    resolver::{Deployed, Source},
    steps::OrderError,
};
use instant_acme::{Account, CertificateIdentifier};

/// What an attempt to order came to.
pub(super) enum Outcome {
    /// A certificate was issued (and stored).
    Issued(Issued),
    /// Another replica holds the lock.
    Busy,
    /// Another replica stored a certificate: now served.
    Shared(Deployed),
}

impl Driver {
    /// Orders under the lock; see the module doc.
    pub(super) async fn guarded_order(
        &self,
        account: &mut Option<Account>,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Outcome, OrderError> {
        let lock = Lock::try_take(&self.storage, self.lease)
            .await
            .map_err(|e| self.storage_failed(e))?;
        let Some(lock) = lock else {
            return Ok(Outcome::Busy);
        };
        self.status.send_modify(|s| s.lock_held = true);
        let result = self.locked_order(&lock, account, replaces).await;
        lock.release().await;
        self.status.send_modify(|s| s.lock_held = false);
        result
    }

    async fn locked_order(
        &self,
        lock: &Lock,
        account: &mut Option<Account>,
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<Outcome, OrderError> {
        let mut resume = None;
        if self.storage.shared() {
            let stored = self.storage.certificate().await;
            let stored = stored.map_err(|e| self.storage_failed(e))?;
            if let Some(pem) = stored {
                let fingerprint = crate::tls::inspect::fingerprint(&pem);
                let served = self.served_pem.lock().map(|s| s.clone()).unwrap_or(None);
                if served.as_ref() != Some(&fingerprint) {
                    let location = self.storage.cert_location();
                    if let Some(deployed) = self.deployer.deploy(&pem, &location, Source::Shared) {
                        self.set_served_pem(fingerprint);
                        return Ok(Outcome::Shared(deployed));
                    }
                }
            }
            resume = self
                .storage
                .order_record()
                .await
                .map_err(|e| self.storage_failed(e))?;
            if let Some(record) = &resume {
                tracing::warn!(order = %record.url, "ACME: taking over the order of a replica whose lease expired");
                self.status.send_modify(|s| s.takeovers += 1);
            }
        }
        self.status.send_modify(|s| s.orders_started += 1);
        let account = match account {
            Some(account) => account,
            None => account.insert(self.source.account(&self.steps).await?),
        };
        let flow = Flow {
            account,
            domains: &self.domains,
            challenge: self.challenge,
            answers: &self.answers,
            steps: &self.steps,
            storage: self.storage.as_ref(),
            resume,
            dns01: self.dns01.as_deref(),
            replaces,
        };
        let issued = tokio::select! {
            biased;
            () = lock.lost() => Err(OrderError::Local(LOCK_LOST.to_owned())),
            issued = flow.run() => issued,
        };
        let issued = match issued {
            Ok(issued) => issued,
            Err(error) => {
                // A lost lock leaves the order to the replica that took over.
                if !lock_lost(&error) {
                    let _ = self.storage.clear_order_record().await;
                }
                return Err(error);
            }
        };
        let pem = issued.pem.clone().into_bytes();
        self.set_served_pem(crate::tls::inspect::fingerprint(&pem));
        match self.storage.store_certificate(pem, lock.token()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                order = %issued.order_url,
                "ACME: the ordering lock was lost before the certificate was stored; serving it here only"
            ),
            Err(error) => {
                tracing::error!(%error, "ACME: the new certificate could not be stored; serving it here only");
                self.storage_failed(error);
            }
        }
        Ok(Outcome::Issued(issued))
    }
}

const LOCK_LOST: &str = "the ordering lock was lost (another replica takes the order over)";

fn lock_lost(error: &OrderError) -> bool {
    matches!(error, OrderError::Local(message) if message == LOCK_LOST)
}
