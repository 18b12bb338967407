//! The one task that polls rustls-acme's state: every event logged, orders
//! counted, a fresh state (and order) at once after a `badNonce`.

use super::{
    AcmeError, AcmeStatus, BAD_NONCE, BAD_NONCE_PAUSE, BAD_NONCE_RETRIES, cache, orders,
    resolver::Deployer,
};
use arc_swap::ArcSwap;
use futures::StreamExt;
use rustls_acme::{
    AcmeConfig, AcmeState, EventError, EventOk, ResolvesServerCertAcme, UseChallenge,
};
use std::{path::PathBuf, sync::Arc, time::Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, defaults::ACME_ORDERS_PER_HOUR_WARN};

/// The challenge answers of the ACME state in use (a fresh state replaces
/// them after a `badNonce`).
pub(super) type Challenges = Arc<ArcSwap<ResolvesServerCertAcme>>;

/// Makes rustls-acme states: one at start, a fresh one after a `badNonce`
/// (it reads the cached account and certificate again, and orders at once
/// when the certificate is missing or due).
pub(super) struct StateFactory {
    pub(super) domains: Vec<String>,
    pub(super) client: Arc<rustls::ClientConfig>,
    pub(super) contact: String,
    pub(super) directory_url: String,
    pub(super) challenge: AcmeChallenge,
    pub(super) cache_dir: PathBuf,
    pub(super) deployer: Arc<Deployer>,
}

impl StateFactory {
    pub(super) fn state(&self) -> AcmeState<AcmeError> {
        AcmeConfig::new_with_client_config(self.domains.clone(), self.client.clone())
            .contact_push(&self.contact)
            .directory(&self.directory_url)
            .challenge_type(match self.challenge {
                AcmeChallenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
                AcmeChallenge::Http01 => UseChallenge::Http01,
            })
            .cache(cache::AcmeCache::new(
                self.cache_dir.clone(),
                self.deployer.clone(),
            ))
            .state()
    }
}

/// Polls the ACME state until `shutdown`, logging every event and keeping
/// the order count; `_ephemeral` (a temporary cache) lives as long.
pub(super) async fn drive(
    factory: StateFactory,
    mut state: AcmeState<AcmeError>,
    challenges: Challenges,
    status: watch::Sender<AcmeStatus>,
    _ephemeral: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
) {
    let mut rate = orders::OrderRate::new(ACME_ORDERS_PER_HOUR_WARN);
    let mut failures_in_row = 0u32;
    let mut bad_nonces_in_row = 0u32;
    // `error`: why it failed; recorded with the count in one update.
    let mut order_finished = |error: Option<String>| {
        let (last_hour, too_many) = rate.record(Instant::now());
        status.send_modify(|s| {
            s.orders += 1;
            if let Some(error) = error {
                s.failed_orders += 1;
                s.last_error = Some(error);
            }
        });
        if too_many {
            tracing::warn!(
                last_hour,
                limit = ACME_ORDERS_PER_HOUR_WARN,
                "ACME: many certificate orders in the last hour: the CA may start refusing (rate limits); check the errors above and that the cache is kept"
            );
        }
    };
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            event = state.next() => event,
        };
        match event {
            None => break,
            Some(Ok(EventOk::DeployedCachedCert)) => {
                tracing::info!("ACME: cached certificate read; renewal at 2/3 of its lifetime");
            }
            Some(Ok(EventOk::DeployedNewCert)) => {
                failures_in_row = 0;
                bad_nonces_in_row = 0;
                order_finished(None);
                tracing::info!("ACME: new certificate issued");
            }
            Some(Ok(EventOk::CertCacheStore)) => tracing::debug!("ACME: certificate cached"),
            Some(Ok(EventOk::AccountCacheStore)) => tracing::info!("ACME: account key cached"),
            Some(Err(EventError::Order(error))) => {
                let error = error.to_string();
                order_finished(Some(format!("order failed: {error}")));
                if error.contains(BAD_NONCE) && bad_nonces_in_row < BAD_NONCE_RETRIES {
                    bad_nonces_in_row += 1;
                    tracing::warn!(
                        %error,
                        retry = bad_nonces_in_row,
                        of = BAD_NONCE_RETRIES,
                        "ACME: the CA refused a nonce (badNonce); ordering again at once"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(BAD_NONCE_PAUSE) => {}
                    }
                    // A fresh state: no backoff, same cache (account, certificate).
                    state = factory.state();
                    challenges.store(state.resolver());
                    continue;
                }
                failures_in_row += 1;
                let retry_in = orders::backoff(failures_in_row);
                tracing::warn!(
                    %error,
                    failures_in_row,
                    ?retry_in,
                    "ACME: order failed; retrying after the backoff"
                );
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "ACME: cache or certificate error");
                status.send_modify(|s| s.last_error = Some(error.to_string()));
            }
        }
    }
    tracing::debug!("ACME task stopped");
}
