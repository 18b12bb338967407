//! The one ACME task: serves the stored certificate, then orders when no
//! certificate is served, or inside the CA's ARI window ([`ari`]), or
//! else when a third of its lifetime is left; one order at a time
//! ([`super::flow::Flow`], under the lock of [`super::guarded`]). A
//! failed order is followed by a pause that doubles (30 s, 1 min, … at
//! most 12 h) or, after `rateLimited`, by the time the CA named. With
//! Redis storage, a certificate another replica stored (deployed by
//! [`super::follow`]) resets the schedule. The status says when the
//! served certificate has expired.

use super::{
    ari,
    driver::Driver,
    flow::Issued,
    guarded::Outcome,
    orders::{self, OrderRate},
    resolver::{Deployed, Source},
    steps::OrderError,
};
use instant_acme::Account;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vibectl_config::defaults::ACME_ORDERS_PER_HOUR_WARN;

/// How often a replica that found the lock held tries again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

fn at_unix(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

/// Why the task wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// To order (no certificate, renewal due).
    Order,
    /// To ask the CA for the renewal window.
    Ari,
    /// The served certificate expires.
    Expiry,
}

fn unix_of(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// a third of its lifetime before it expires.
pub(super) fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before) / 3
}

impl Driver {
    /// Runs until `shutdown`; `_ephemeral` (a temporary cache) lives as long.
    pub(super) async fn drive(
        mut self,
        _ephemeral: Option<tempfile::TempDir>,
        shutdown: CancellationToken,
    ) {
        let mut followed = self.followed.take();
        let mut served = match self.storage.certificate().await {
            Ok(Some(pem)) => {
                let location = self.storage.cert_location();
                let deployed = self.deployer.deploy(&pem, &location, Source::Cache);
                if deployed.is_some() {
                    self.set_served_pem(crate::tls::inspect::fingerprint(&pem));
                }
                deployed
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "ACME: the stored certificate cannot be read");
                self.storage_failed(error);
                None
            }
        };
        let mut account: Option<Account> = None;
        let mut failures = 0u32;
        let mut not_before: Option<SystemTime> = None;
        let mut rate = OrderRate::new(ACME_ORDERS_PER_HOUR_WARN);
        // ARI: the CA's window for the served certificate, and when to ask.
        let mut window: Option<ari::Window> = None;
        let mut ari_check = served.as_ref().map(|_| SystemTime::now());
        loop {
            let now = SystemTime::now();
            let due = match (&served, &window) {
                (None, _) => now,
                (Some(_), Some(window)) => window.renew_at,
                (Some(d), None) => at_unix(renew_at(d.not_before, d.not_after)),
            };
            let mut wake = due.max(not_before.unwrap_or(now));
            let mut why = Wake::Order;
            if let Some(check) = ari_check.filter(|c| *c < wake) {
                (wake, why) = (check, Wake::Ari);
            }
            // Wake at expiry too, so `/ready` says the certificate expired.
            if let Some(expiry) = served
                .as_ref()
                .map(|d| at_unix(d.not_after))
                .filter(|e| *e < wake && !self.status.borrow().expired)
            {
                (wake, why) = (expiry, Wake::Expiry);
            }
            let pause = wake.duration_since(now).unwrap_or(Duration::ZERO);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(deployed) = next(&mut followed) => {
                    // Another replica ordered it: renew from its dates.
                    served = Some(deployed);
                    (window, ari_check) = (None, Some(SystemTime::now()));
                    (failures, not_before) = (0, None);
                    continue;
                }
                () = tokio::time::sleep(pause) => {}
            }
            match why {
                Wake::Expiry => {
                    tracing::error!(
                        "ACME: the served certificate has expired; not ready until a new one is issued"
                    );
                    self.status.send_modify(|s| s.expired = true);
                    continue;
                }
                Wake::Ari => {
                    let leaf = served.as_ref().map(|d| d.leaf.clone()).unwrap_or_default();
                    let checked = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        checked = self.renewal_info(&mut account, &leaf) => checked,
                    };
                    (window, ari_check) = checked;
                    continue;
                }
                Wake::Order => {}
            }
            let renewal = served.is_some();
            let started = Instant::now();
            // ARI (RFC 9773 §5): a renewal inside the CA's window names
            // the certificate it replaces.
            let replaces = window
                .and(served.as_ref())
                .and_then(|d| ari::certificate_id(&d.leaf));
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                result = self.guarded_order(&mut account, replaces) => result,
            };
            let result = match result {
                Ok(Outcome::Busy) => {
                    not_before = Some(SystemTime::now() + BUSY_RETRY);
                    continue;
                }
                Ok(Outcome::Shared(deployed)) => {
                    served = Some(deployed);
                    (window, ari_check) = (None, Some(SystemTime::now()));
                    (failures, not_before) = (0, None);
                    continue;
                }
                Ok(Outcome::Issued(issued)) => Ok(issued),
                Err(error) => Err(error),
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
                    failures = 0;
                    not_before = None;
                    let deployed = self.serve_issued(issued, started.elapsed(), renewal).await;
                    if deployed.is_some() {
                        served = deployed;
                        window = None;
                        ari_check = Some(SystemTime::now());
                    }
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
                        s.rate_limited_until = limited.then(|| unix_of(after));
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

    /// Caches and serves a new certificate; records it in the status.
    async fn serve_issued(
        &self,
        issued: Issued,
        took: Duration,
        renewal: bool,
    ) -> Option<Deployed> {
        let downloaded_ms = issued
            .downloaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.status.send_modify(|s| {
            s.orders += 1;
            s.renewals += u64::from(renewal);
            s.last_order_url = Some(issued.order_url.clone());
            s.rate_limited_until = None;
            s.issue_millis = Some(took.as_millis() as u64);
            s.downloaded_at_unix_ms = Some(downloaded_ms);
        });
        self.set_served_pem(crate::tls::inspect::fingerprint(issued.pem.as_bytes()));
        let location = self.storage.cert_location();
        let deployed = self
            .deployer
            .deploy(issued.pem.as_bytes(), &location, Source::Issued);
        tracing::info!(order = %issued.order_url, ?took, renewal, "ACME: new certificate served");
        deployed
    }

    /// Asks the CA for the served certificate's renewal window (ARI):
    /// the window (if the CA has one) and when to ask again (`None`: never).
    async fn renewal_info(
        &self,
        account: &mut Option<Account>,
        leaf: &[u8],
    ) -> (Option<ari::Window>, Option<SystemTime>) {
        let account = match account {
            Some(account) => account,
            None => match self.source.account(&self.steps).await {
                Ok(found) => account.insert(found),
                Err(error) => {
                    tracing::warn!(%error, "ACME: no account to ask for the renewal window; asking again in 1 h");
                    return (None, Some(SystemTime::now() + Duration::from_secs(3600)));
                }
            },
        };
        match ari::fetch(account, leaf).await {
            Ok(Some(window)) => {
                tracing::info!(
                    start = %httpdate::fmt_http_date(window.start),
                    end = %httpdate::fmt_http_date(window.end),
                    renew_at = %httpdate::fmt_http_date(window.renew_at),
                    next_check = %httpdate::fmt_http_date(window.next_check),
                    "ACME: renewal window (ARI)"
                );
                self.status.send_modify(|s| {
                    s.ari_window_start = Some(unix_of(window.start));
                    s.renew_at = Some(unix_of(window.renew_at));
                });
                (Some(window), Some(window.next_check))
            }
            Ok(None) => {
                tracing::debug!(
                    "ACME: the CA offers no renewal information; renewing at a third of the lifetime left"
                );
                (None, None)
            }
            Err(error) => {
                tracing::warn!(%error, "ACME: renewal window (ARI) unavailable; asking again in 1 h");
                (None, Some(SystemTime::now() + Duration::from_secs(3600)))
            }
        }
    }
}

/// The next certificate the follower deployed; never, without a follower.
async fn next(followed: &mut Option<mpsc::UnboundedReceiver<Deployed>>) -> Option<Deployed> {
    match followed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
