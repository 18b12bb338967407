//! What the ACME task holds ([`Driver`]), shared by the task's loop
//! ([`super::task`]) and the order under the lock ([`super::guarded`]).

use super::{
    AcmeError, AcmeStatus,
    account::AccountSource,
    answers::Answers,
    resolver::{Deployed, Deployer},
    steps::{OrderError, Steps},
    storage::Storage,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use vibectl_config::AcmeChallenge;

/// Everything the task needs.
pub(super) struct Driver {
    pub(super) source: AccountSource,
    pub(super) domains: Vec<String>,
    pub(super) challenge: AcmeChallenge,
    pub(super) answers: Answers,
    /// DNS-01's server, zone and key (with `challenge = "dns-01"`).
    pub(super) dns01: Option<Arc<super::dns01::Dns01>>,
    pub(super) steps: Steps,
    pub(super) storage: Arc<dyn Storage>,
    /// The ordering lock's lease.
    pub(super) lease: Duration,
    /// The fingerprint of the certificate PEM served now (shared with the
    /// follower).
    pub(super) served_pem: Arc<Mutex<Option<String>>>,
    /// Certificates the follower deployed (another replica ordered them).
    pub(super) followed: Option<mpsc::UnboundedReceiver<Deployed>>,
    pub(super) deployer: Arc<Deployer>,
    pub(super) status: watch::Sender<AcmeStatus>,
}

impl Driver {
    /// Records the fingerprint of the PEM served now.
    pub(super) fn set_served_pem(&self, fingerprint: String) {
        if let Ok(mut served) = self.served_pem.lock() {
            *served = Some(fingerprint);
        }
    }

    /// Counts a storage failure; returns it as an order error.
    pub(super) fn storage_failed(&self, error: AcmeError) -> OrderError {
        self.status.send_modify(|s| {
            s.storage_errors += 1;
            if self.storage.shared() {
                s.storage_error = Some(error.to_string());
            }
        });
        OrderError::Cache(error)
    }
}
