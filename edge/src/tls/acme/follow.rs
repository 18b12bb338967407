//! What every replica sharing Redis does besides ordering: every
//! [`EVERY`] it says it is alive (a heartbeat with a short expiry) and
//! reads two versions. When the pending answers changed it serves the new
//! set (TLS-ALPN-01 certificates made from the key authorizations, HTTP-01
//! key authorizations) and acknowledges the version, so the replica that
//! orders responds to the challenge only once every live replica answers
//! it. When the certificate changed it serves the new one. While Redis
//! cannot be reached the served certificate stays, the error is in the
//! status (and `/ready`'s message, `vibectl_acme_storage_errors_total`),
//! and the heartbeat is retried with a growing pause (at most 30 s).

use super::{
    AcmeStatus,
    answers::Answers,
    resolver::{Deployed, Deployer, Source},
    storage::Storage,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The pause between heartbeats.
pub(super) const EVERY: Duration = Duration::from_millis(500);
/// A replica not heard from for this long is not waited for.
pub(super) const ALIVE_FOR: Duration = Duration::from_secs(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// The follower of one replica.
pub(super) struct Follower {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) replica: String,
    /// The answers of other replicas' orders, served by this one.
    pub(super) remote: Answers,
    pub(super) deployer: Arc<Deployer>,
    /// The fingerprint of the certificate PEM served now.
    pub(super) served_pem: Arc<Mutex<Option<String>>>,
    /// Certificates deployed from the storage, for the ordering task.
    pub(super) deployed: mpsc::UnboundedSender<Deployed>,
    pub(super) status: watch::Sender<AcmeStatus>,
}

impl Follower {
    /// Follows until `shutdown`.
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut answers_seen = 0u64;
        let mut pause = Duration::ZERO;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            match self.step(&mut answers_seen).await {
                Ok(()) => {
                    pause = EVERY;
                    if self.status.borrow().storage_error.is_some() {
                        tracing::info!("ACME: the shared storage answers again");
                        self.status.send_modify(|s| s.storage_error = None);
                    }
                }
                Err(error) => {
                    pause = (pause * 2).min(LONGEST_PAUSE);
                    tracing::warn!(%error, retry_in = ?pause, "ACME: the shared storage cannot be read; serving the current certificate");
                    self.status.send_modify(|s| {
                        s.storage_errors += 1;
                        s.storage_error = Some(error.to_string());
                    });
                }
            }
        }
    }

    async fn step(&self, answers_seen: &mut u64) -> Result<(), super::AcmeError> {
        let versions = self.storage.heartbeat(&self.replica, ALIVE_FOR).await?;
        if versions.answers != *answers_seen {
            let answers = self.storage.answers().await?;
            self.remote.replace(&answers)?;
            self.storage
                .ack_answers(&self.replica, versions.answers)
                .await?;
            tracing::debug!(
                version = versions.answers,
                pending = answers.len(),
                "ACME: serving the shared challenge answers"
            );
            *answers_seen = versions.answers;
        }
        let served = self.served_pem.lock().map(|s| s.clone()).unwrap_or(None);
        if let Some(version) = versions.certificate.filter(|v| Some(v) != served.as_ref()) {
            let Some(pem) = self.storage.certificate().await? else {
                return Ok(());
            };
            let fingerprint = crate::tls::inspect::fingerprint(&pem);
            if let Ok(mut served) = self.served_pem.lock() {
                *served = Some(fingerprint.clone());
            }
            tracing::info!(%version, "ACME: a replica stored a new certificate");
            let location = self.storage.cert_location();
            if let Some(deployed) = self.deployer.deploy(&pem, &location, Source::Shared) {
                let _ = self.deployed.send(deployed);
            }
        }
        Ok(())
    }
}
