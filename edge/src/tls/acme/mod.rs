//! ACME certificates (`[tls.acme]`, `serve-acme`): the order flow runs on
//! instant-acme ([`flow`]); the challenge answers — TLS-ALPN-01 on the TLS
//! listener, HTTP-01 on the plain HTTP listener ([`crate::http01`]), DNS-01
//! as TXT records in the zone ([`dns01`]) — and the served certificate are
//! ours. The account and the certificate are stored ([`storage`]) in the
//! cache directory (0700/0600), or in Redis shared by replicas, and reused
//! across restarts; the self-signed fallback ([`crate::tls::self_signed`])
//! is served until the first ACME certificate is.
//!
//! - **One `ServerConfig`** from [`crate::tls::server_config`] (the edge's
//!   versions, suites and client-certificate policy), whose
//!   [`AcmeResolver`] answers `acme-tls/1` hellos with the pending
//!   challenge certificate and everything else with the served
//!   certificate. ALPN is `h2`, plus `acme-tls/1` with TLS-ALPN-01; the
//!   accept loop closes an `acme-tls/1` connection right after its
//!   handshake.
//! - **One task** ([`task`]) orders when no certificate is served, inside
//!   the CA's renewal window ([`ari`]), or else when a third of its
//!   lifetime is left, one order at a time (with Redis, only the replica
//!   holding the ordering lock orders: [`guarded`]); each request is
//!   retried on `badNonce` without starting over ([`steps`]); a failed
//!   order waits 30 s, doubling up to 12 h, or until the time a
//!   `rateLimited` answer names.
//! - **Readiness**: [`AcmeStatus`] says whether an ACME certificate is
//!   served (and not expired), and the last error; `serve-acme` turns it
//!   into `/ready`.
//! - **Start-up** ([`start()`]): a kept cache must be usable (its parent
//!   exists, it is writable); unless the storage holds a valid
//!   certificate, the directory URL must answer as an ACME directory (3
//!   tries, ~10 s at most).
//!
//! Why instant-acme rather than rustls-acme: docs/deployment.md ("ACME
//! order flow").

mod account;
mod answers;
mod ari;
mod cache;
mod client;
pub mod directory;
mod dns01;
mod dns_update;
mod driver;
mod flow;
mod flow_shared;
mod follow;
mod guarded;
mod lock;
mod orders;
mod prepare;
mod resolver;
mod start;
mod status;
mod steps;
mod storage;
mod task;

pub use answers::Answers;
pub use directory::ProbePolicy;
pub use resolver::AcmeResolver;
pub use start::start;
pub use status::AcmeStatus;

use crate::tls::{CertResolver, files};
#[cfg(any(test, feature = "test-support"))]
use std::path::Path;
use std::{path::PathBuf, sync::Arc};
use tokio::{sync::watch, task::JoinHandle};

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Why ACME cannot start (or a cache file could not be used).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// A setting that cannot work; `key` names the flag or key.
    #[error("{key}: {message}")]
    Invalid {
        /// The flag and/or configuration key.
        key: String,
        /// Why.
        message: String,
    },
    /// The cache directory cannot be used.
    #[error("ACME cache directory {}: {message}", dir.display())]
    Cache {
        /// The directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// A cache file could not be read or written.
    #[error("ACME cache: {action} {}: {message}", path.display())]
    CacheFile {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `--acme-ca-file` / `tls.acme.ca_file` cannot be used.
    #[error("ACME CA file (--acme-ca-file, tls.acme.ca_file) {}: {message}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The directory URL never answered as an ACME directory at start.
    #[error(
        "ACME directory URL {url} did not answer: {error} ({tries} tries; check --directory-url / tls.acme.directory_url, the network, and --acme-ca-file for a private CA)"
    )]
    DirectoryUnreachable {
        /// The URL.
        url: String,
        /// How many fetches were made.
        tries: usize,
        /// The last error.
        error: String,
    },
    /// The API client's TLS configuration was refused.
    #[error("ACME client TLS: {0}")]
    Tls(String),
    /// A blocking file task failed.
    #[error("ACME cache task failed: {0}")]
    Task(String),
    /// A challenge answer could not be made.
    #[error("ACME challenge: {0}")]
    Challenge(String),
    /// The shared storage (Redis) failed or did not answer.
    #[error("ACME storage (Redis): {0}")]
    Storage(String),
}

/// Answers HTTP-01 challenges: the key authorization for a token, if it is
/// the pending one.
pub type KeyAuthorizations = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// ACME as started: the TLS configuration to serve with, and the running
/// ACME task.
pub struct AcmeSetup {
    /// Pass to [`crate::Transport::Tls`].
    pub server_config: Arc<rustls::ServerConfig>,
    /// What is served (fallback, then ACME): for `/metrics` and logs.
    pub resolver: Arc<CertResolver>,
    /// The running ACME state.
    pub acme: Acme,
}

/// The running ACME task and what it reports.
pub struct Acme {
    status: watch::Receiver<AcmeStatus>,
    answers: Answers,
    /// Answers of orders other replicas run (Redis storage).
    remote: Answers,
    domains: Vec<String>,
    directory_url: String,
    cache_dir: PathBuf,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("domains", &self.domains)
            .field("directory_url", &self.directory_url)
            .field("cache_dir", &self.cache_dir)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// The status, updated as certificates are served and orders fail.
    pub fn status(&self) -> watch::Receiver<AcmeStatus> {
        self.status.clone()
    }

    /// The answers of the plain HTTP listener to HTTP-01 challenges.
    pub fn key_authorizations(&self) -> KeyAuthorizations {
        let (answers, remote) = (self.answers.clone(), self.remote.clone());
        Arc::new(move |token| answers.http(token).or_else(|| remote.http(token)))
    }

    /// Why `/ready` must wait, or `None` while an ACME certificate is
    /// served: "waiting for ACME certificate for D from URL (last error:
    /// …)", with "rate limited by the CA until T" or "the served
    /// certificate expired at T" when that is so.
    pub fn waiting_reason(&self, status: &AcmeStatus) -> Option<String> {
        self.waiting_reasons()(status)
    }

    /// [`Acme::waiting_reason`] as a function that outlives `self`.
    pub fn waiting_reasons(&self) -> impl Fn(&AcmeStatus) -> Option<String> + Send + 'static {
        let domains = self.domains.join(", ");
        let directory_url = self.directory_url.clone();
        move |status| {
            if status.serving() {
                return None;
            }
            let error = status.last_error.as_deref().unwrap_or("none yet");
            let mut reason = format!(
                "waiting for ACME certificate for {domains} from {directory_url} (last error: {error})"
            );
            if let Some(until) = status.rate_limited_until {
                reason.push_str(&format!(
                    "; rate limited by the CA until {}",
                    files::unix_to_rfc3339(until)
                ));
            }
            if let Some(error) = &status.storage_error {
                reason.push_str(&format!("; the shared ACME storage (Redis) fails: {error}"));
            }
            if let (true, Some(served)) = (status.expired, &status.served) {
                reason.push_str(&format!(
                    "; the served certificate expired at {}",
                    served.not_after()
                ));
            }
            Some(reason)
        }
    }

    /// The cache directory in use (a temporary one with `ephemeral_cache`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Waits until the task has ended (it ends when the shutdown token
    /// given to [`start()`] fires).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the ACME task failed");
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
