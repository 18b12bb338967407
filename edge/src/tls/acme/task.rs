//! The one ACME task: serves the cached certificate, then orders when no
//! certificate is served or a third of its lifetime is left, one order at
//! a time ([`Flow`]). A failed order is followed by a pause that doubles
//! (30 s, 1 min, … at most 12 h) or, after `rateLimited`, by the time the
//! CA named. The status says when the served certificate has expired.

use super::{
    AcmeStatus,
    account::AccountSource,
    answers::Answers,
    cache,
    flow::{Flow, Issued},
    orders::{self, OrderRate},
    resolver::{Deployer, Source},
    steps::{OrderError, Steps},
};
use instant_acme::Account;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, defaults::ACME_ORDERS_PER_HOUR_WARN};

/// Everything the task needs.
pub(super) struct Driver {
    pub(super) source: AccountSource,
    pub(super) domains: Vec<String>,
    pub(super) challenge: AcmeChallenge,
    pub(super) answers: Answers,
    pub(super) steps: Steps,
    pub(super) cert_path: PathBuf,
    pub(super) deployer: Arc<Deployer>,
    pub(super) status: watch::Sender<AcmeStatus>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn at_unix(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// a third of its lifetime before it expires.
pub(super) fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before) / 3
}

impl Driver {
    /// Runs until `shutdown`; `_ephemeral` (a temporary cache) lives as long.
    pub(super) async fn drive(
        self,
        _ephemeral: Option<tempfile::TempDir>,
        shutdown: CancellationToken,
    ) {
        let mut validity = match cache::read(self.cert_path.clone()).await {
            Ok(Some(pem)) => self.deployer.deploy(&pem, &self.cert_path, Source::Cache),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "ACME: the cached certificate cannot be read");
                None
            }
        };
        let mut account: Option<Account> = None;
        let mut failures = 0u32;
        let mut not_before: Option<SystemTime> = None;
        let mut rate = OrderRate::new(ACME_ORDERS_PER_HOUR_WARN);
        loop {
            let now = unix_now();
            let due = validity.map_or(now, |(from, to)| renew_at(from, to));
            let mut wake = at_unix(due.max(now));
            if let Some(after) = not_before {
                wake = wake.max(after);
            }
            // Wake at expiry too, so `/ready` says the certificate expired.
            let expiry = validity
                .map(|(_, to)| at_unix(to))
                .filter(|_| !self.status.borrow().expired);
            let expiring = expiry.is_some_and(|e| e < wake);
            if expiring {
                wake = expiry.unwrap_or(wake);
            }
            let pause = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            if expiring {
                tracing::error!(
                    "ACME: the served certificate has expired; not ready until a new one is issued"
                );
                self.status.send_modify(|s| s.expired = true);
                continue;
            }
            self.status.send_modify(|s| s.orders_started += 1);
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                result = self.order(&mut account) => result,
            };
            let (last_hour, too_many) = rate.record(Instant::now());
            if too_many {
                tracing::warn!(
                    last_hour,
                    limit = ACME_ORDERS_PER_HOUR_WARN,
                    "ACME: many certificate orders in the last hour: the CA may start refusing (rate limits); check the errors above and that the cache is kept"
                );
            }
            match result {
                Ok(issued) => {
                    let (pem, order_url) = (issued.pem, issued.order_url);
                    let downloaded_ms = issued
                        .downloaded_at
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    failures = 0;
                    not_before = None;
                    if let Err(error) =
                        cache::write(self.cert_path.clone(), pem.clone().into_bytes()).await
                    {
                        // Served even if it could not be kept.
                        tracing::error!(%error, "ACME: the new certificate could not be cached");
                    }
                    let took = started.elapsed();
                    self.status.send_modify(|s| {
                        s.orders += 1;
                        s.last_order_url = Some(order_url.clone());
                        s.rate_limited_until = None;
                        s.issue_millis = Some(took.as_millis() as u64);
                        s.downloaded_at_unix_ms = Some(downloaded_ms);
                    });
                    validity =
                        self.deployer
                            .deploy(pem.as_bytes(), &self.cert_path, Source::Issued);
                    tracing::info!(order = %order_url, ?took, "ACME: new certificate served");
                }
                Err(error) => {
                    failures += 1;
                    let after = match &error {
                        OrderError::RateLimited { until, .. } => *until,
                        _ => SystemTime::now() + orders::backoff(failures),
                    };
                    not_before = Some(after);
                    let limited = matches!(error, OrderError::RateLimited { .. });
                    self.status.send_modify(|s| {
                        s.orders += 1;
                        s.failed_orders += 1;
                        *s.failures_by_reason.entry(error.reason()).or_default() += 1;
                        s.last_error = Some(format!("order failed: {error}"));
                        s.rate_limited_until = limited.then(|| {
                            after
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs() as i64)
                        });
                    });
                    tracing::warn!(
                        %error,
                        reason = error.reason(),
                        failures_in_row = failures,
                        next_order = %httpdate::fmt_http_date(after),
                        "ACME: order failed"
                    );
                }
            }
        }
        tracing::debug!("ACME task stopped");
    }

    /// The account (registered once), then one order.
    async fn order(&self, account: &mut Option<Account>) -> Result<Issued, OrderError> {
        let account = match account {
            Some(account) => account,
            None => account.insert(self.source.account(&self.steps).await?),
        };
        Flow {
            account,
            domains: &self.domains,
            challenge: self.challenge,
            answers: &self.answers,
            steps: &self.steps,
        }
        .run()
        .await
    }
}
