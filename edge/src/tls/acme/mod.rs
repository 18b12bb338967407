//! ACME certificates (`[tls.acme]`, `serve-acme`) with rustls-acme:
//! TLS-ALPN-01 on the TLS listener or HTTP-01 on the plain HTTP listener
//! ([`crate::http01`]), the account key and certificates cached on disk
//! (0700/0600) and reused across restarts, renewal in the background, and
//! the self-signed fallback ([`crate::tls::self_signed`]) served until the
//! first ACME certificate is.
//!
//! - **One `ServerConfig`** from [`crate::tls::server_config`] (the edge's
//!   versions, suites and client-certificate policy), whose
//!   [`AcmeResolver`] answers `acme-tls/1` hellos with the challenge
//!   certificate and everything else with the served certificate. ALPN is
//!   `h2`, plus `acme-tls/1` with TLS-ALPN-01; the accept loop closes an
//!   `acme-tls/1` connection right after its handshake.
//! - **One task** polls rustls-acme's `AcmeState` until shutdown (nothing
//!   is ordered or renewed otherwise) and logs every event.
//! - **Renewal** starts when two thirds of the certificate's lifetime have
//!   passed (a 90-day certificate: 30 days before expiry); the new
//!   certificate is swapped in for new handshakes, live connections keep
//!   theirs. A failed order is retried after `2^n` s (n failures in a row,
//!   capped at 2^16 s ≈ 18 h); `Retry-After` is honoured only through that
//!   backoff. rustls-acme does not retry a request the CA refused with
//!   `badNonce` (RFC 8555 §6.5 says a client should): the whole order fails
//!   and waits for the backoff. The edge instead starts a fresh order at
//!   once, up to [`BAD_NONCE_RETRIES`] times in a row. More than
//!   [`ACME_ORDERS_PER_HOUR_WARN`] orders in an hour log a warning.
//! - **Readiness**: [`AcmeStatus`] says whether an ACME certificate is
//!   served, and the last error; `serve-acme` turns it into `/ready`.
//! - **Start-up**: a kept cache must be usable (its parent exists, it is
//!   writable); unless the cache holds a valid certificate, the directory
//!   URL must answer (3 tries, ~10 s at most).
//!
//! rustls-acme limits: ECDSA P-256 keys, one certificate for all domains,
//! no DNS-01 (so no wildcards), no external account binding, no ARI.

mod cache;
pub mod directory;
mod orders;
mod prepare;
mod resolver;
mod task;

pub use directory::ProbePolicy;
pub use resolver::AcmeResolver;

use crate::tls::{CertResolver, ServedCert, TlsError, files, server_config};
use arc_swap::ArcSwap;
use resolver::{Deployer, Source};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use task::{Challenges, StateFactory};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, AcmeTls, ClientAuth, Config, TlsMode};

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = rustls_acme::acme::ACME_TLS_ALPN_NAME;
/// Orders failed by `badNonce` that are started again at once (after
/// [`BAD_NONCE_PAUSE`]) instead of after rustls-acme's backoff, in a row.
pub const BAD_NONCE_RETRIES: u32 = 5;
/// The pause before such a fresh order.
const BAD_NONCE_PAUSE: Duration = Duration::from_millis(200);
/// The ACME error type of a refused nonce.
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

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
}

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
    /// Orders that finished (issued or failed) since start.
    pub orders: u64,
    /// Of those, failed.
    pub failed_orders: u64,
    /// The last error, until the next certificate is served.
    pub last_error: Option<String>,
}

impl AcmeStatus {
    /// True once an ACME certificate is served.
    pub fn serving(&self) -> bool {
        self.served.is_some()
    }
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
    challenges: Challenges,
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
        let challenges = self.challenges.clone();
        Arc::new(move |token| challenges.load().get_http_01_key_auth(token))
    }

    /// Why `/ready` must wait, or `None` once an ACME certificate is served:
    /// "waiting for ACME certificate for D from URL (last error: …)".
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
            Some(format!(
                "waiting for ACME certificate for {domains} from {directory_url} (last error: {error})"
            ))
        }
    }

    /// The cache directory in use (a temporary one with `ephemeral_cache`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Waits until the task has ended (it ends when the shutdown token
    /// given to [`start`] fires).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the ACME task failed");
        }
    }
}

/// Starts ACME as `config.tls` (`[tls.acme]`) says: prepares the fallback
/// and the cache, checks the directory URL (unless a valid certificate is
/// cached), then orders and renews in the background until `shutdown`.
/// Must run inside a tokio runtime.
pub async fn start(
    config: &Config,
    probe: &ProbePolicy,
    shutdown: CancellationToken,
) -> Result<AcmeSetup, TlsError> {
    crate::tls::install_crypto_provider();
    let TlsMode::Acme(opts) = config.tls.mode() else {
        return Err(invalid("tls.acme", "is not configured").into());
    };
    check_client_auth(config, &opts)?;
    let domains: Vec<String> = opts
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let directory_url = opts.directory().to_owned();

    let fallback = prepare::fallback(config, &domains)?;
    let (cache_dir, ephemeral) = prepare::prepare_cache(config, &opts)?;
    let client = directory::client_config(opts.ca_file.as_deref())?;
    let cached = cache::cert_file(&cache_dir, &domains, &directory_url);
    match files::load(&cached, &cached) {
        Ok(_) => tracing::info!(
            cache = %cached.display(),
            "ACME: a valid certificate is cached; the CA is not contacted at start"
        ),
        Err(_) => directory::probe(&client, &directory_url, probe).await?,
    }

    let served = Arc::new(CertResolver::new(fallback));
    let (status_tx, status) = watch::channel(AcmeStatus::default());
    let deployer = Arc::new(Deployer {
        served: served.clone(),
        status: status_tx.clone(),
    });
    let factory = StateFactory {
        domains: domains.clone(),
        client,
        contact: format!("mailto:{}", opts.email),
        directory_url: directory_url.clone(),
        challenge: opts.challenge,
        cache_dir: cache_dir.clone(),
        deployer,
    };
    let state = factory.state();
    let challenges: Challenges = Arc::new(ArcSwap::new(state.resolver()));
    let resolver = Arc::new(AcmeResolver {
        challenges: challenges.clone(),
        served: served.clone(),
    });
    let mut server_config = server_config(&config.tls, resolver)?;
    if opts.challenge == AcmeChallenge::TlsAlpn01 {
        server_config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    tracing::info!(
        domains = ?domains,
        directory = %directory_url,
        challenge = ?opts.challenge,
        cache = %cache_dir.display(),
        "ACME: serving the self-signed fallback until the ACME certificate is deployed"
    );
    let task = tokio::spawn(task::drive(
        factory,
        state,
        challenges.clone(),
        status_tx,
        ephemeral,
        shutdown,
    ));
    Ok(AcmeSetup {
        server_config: Arc::new(server_config),
        resolver: served,
        acme: Acme {
            status,
            challenges,
            domains,
            directory_url,
            cache_dir,
            task,
        },
    })
}

fn invalid(key: &str, message: &str) -> AcmeError {
    AcmeError::Invalid {
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

/// TLS-ALPN-01 validation connections carry no client certificate.
fn check_client_auth(config: &Config, opts: &AcmeTls) -> Result<(), AcmeError> {
    let required = config.tls.client_ca_file.is_some()
        && config.tls.client_auth.unwrap_or_default() == ClientAuth::Required;
    if required && opts.challenge == AcmeChallenge::TlsAlpn01 {
        return Err(invalid(
            "tls.client_auth",
            "mutual TLS is required, but the CA's TLS-ALPN-01 validation presents no client certificate: use the http-01 challenge, or client_auth = \"optional\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
