//! The ordering lock of replicas sharing one ACME state: taken with a
//! random token and a lease (`SET NX PX` in Redis), renewed every third of
//! the lease while the order runs, freed with a compare-and-delete (only
//! by its token). A holder that stops renewing (crashed, or cut from
//! Redis for a whole lease) loses it: [`Lock::lost`] fires, the order is
//! abandoned, and the certificate is written only while the token still
//! holds the lock (the storage's fencing check). With the directory
//! storage the lock is always free.

use super::{AcmeError, storage::Storage};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A held lock; renewed in the background until released or lost.
pub(super) struct Lock {
    storage: Arc<dyn Storage>,
    token: String,
    lost: CancellationToken,
    renewer: JoinHandle<()>,
}

impl Lock {
    /// Takes the lock if nobody holds it (`None`: another replica does).
    pub(super) async fn try_take(
        storage: &Arc<dyn Storage>,
        lease: Duration,
    ) -> Result<Option<Self>, AcmeError> {
        let token = uuid::Uuid::new_v4().to_string();
        if !storage.try_lock(&token, lease).await? {
            return Ok(None);
        }
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(storage.clone(), token.clone(), lease, lost.clone()));
        Ok(Some(Self {
            storage: storage.clone(),
            token,
            lost,
            renewer,
        }))
    }

    /// The token that fences writes.
    pub(super) fn token(&self) -> &str {
        &self.token
    }

    /// Fires when the lock is no longer ours.
    pub(super) fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.lost.cancelled()
    }

    /// Stops renewing and frees the lock (if still ours).
    pub(super) async fn release(self) {
        self.renewer.abort();
        if let Err(error) = self.storage.unlock(&self.token).await {
            tracing::warn!(%error, "ACME: the ordering lock could not be freed; it expires with its lease");
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews every third of `lease`; cancels `lost` when the token no longer
/// holds the lock, or no renewal succeeded for a whole lease.
async fn renew(storage: Arc<dyn Storage>, token: String, lease: Duration, lost: CancellationToken) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        match storage.renew_lock(&token, lease).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!("ACME: the ordering lock was taken over by another replica");
                break;
            }
            Err(error) if renewed.elapsed() >= lease => {
                tracing::warn!(%error, "ACME: the ordering lock could not be renewed for a whole lease; giving the order up");
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "ACME: the ordering lock could not be renewed; retrying")
            }
        }
    }
    lost.cancel();
}
