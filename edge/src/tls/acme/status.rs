//! What the ACME task reports ([`AcmeStatus`]): for `/ready`, the
//! `vibectl_acme_*` metrics, logs and tests.

use crate::tls::ServedCert;
use std::collections::BTreeMap;

/// Where the ACME certificate stands, for `/ready`, logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcmeStatus {
    /// The ACME certificate served now; `None` while the self-signed
    /// fallback is.
    pub served: Option<ServedCert>,
    /// Certificates swapped in since start (from the cache or new).
    pub deployed: u64,
    /// Of those, newly issued by the CA.
    pub issued: u64,
    /// Orders started since start.
    pub orders_started: u64,
    /// Orders that finished (issued or failed) since start.
    pub orders: u64,
    /// Of those, failed.
    pub failed_orders: u64,
    /// Failed orders by reason (`bad_nonce`, `rate_limited`, `validation`,
    /// `refused`, `network`, `timeout`, `cache`, `local`, `dns`).
    pub failures_by_reason: BTreeMap<&'static str, u64>,
    /// The last error, until the next certificate is served.
    pub last_error: Option<String>,
    /// The URL of the last order that issued a certificate.
    pub last_order_url: Option<String>,
    /// No order before this time (Unix seconds): the CA said `rateLimited`.
    pub rate_limited_until: Option<i64>,
    /// How long the last successful order took, in milliseconds.
    pub issue_millis: Option<u64>,
    /// When its certificate was downloaded (Unix milliseconds).
    pub downloaded_at_unix_ms: Option<u64>,
    /// The served ACME certificate has expired (and none replaced it yet).
    pub expired: bool,
    /// Certificates issued to replace a served one.
    pub renewals: u64,
    /// The start of the CA's ARI renewal window (Unix seconds), if it gave one.
    pub ari_window_start: Option<i64>,
    /// When the ARI window says to renew (Unix seconds).
    pub renew_at: Option<i64>,
    /// This replica holds the ordering lock (Redis storage).
    pub lock_held: bool,
    /// Orders this replica resumed after the lock holder's lease expired.
    pub takeovers: u64,
    /// Failed reads and writes of the ACME storage.
    pub storage_errors: u64,
    /// The shared storage cannot be reached now: why.
    pub storage_error: Option<String>,
}

impl AcmeStatus {
    /// True while an ACME certificate is served and has not expired.
    pub fn serving(&self) -> bool {
        self.served.is_some() && !self.expired
    }
}
