//! ACME certificates (`[tls.acme]`, `serve-acme`): the order flow runs on
//! instant-acme ([`flow`]); the challenge answers — TLS-ALPN-01 on the TLS
//! listener, HTTP-01 on the plain HTTP listener ([`crate::http01`]) — and
//! the served certificate are ours. The account and the certificate are
//! cached on disk (0700/0600) and reused across restarts; the self-signed
//! fallback ([`crate::tls::self_signed`]) is served until the first ACME
//! certificate is.
//!
//! - **One `ServerConfig`** from [`crate::tls::server_config`] (the edge's
//!   versions, suites and client-certificate policy), whose
//!   [`AcmeResolver`] answers `acme-tls/1` hellos with the pending
//!   challenge certificate and everything else with the served
//!   certificate. ALPN is `h2`, plus `acme-tls/1` with TLS-ALPN-01; the
//!   accept loop closes an `acme-tls/1` connection right after its
//!   handshake.
//! - **One task** ([`task`]) orders when no certificate is served or a
//!   third of its lifetime is left, one order at a time; each request is
//!   retried on `badNonce` without starting over ([`steps`]); a failed
//!   order waits 30 s, doubling up to 12 h, or until the time a
//!   `rateLimited` answer names.
//! - **Readiness**: [`AcmeStatus`] says whether an ACME certificate is
//!   served (and not expired), and the last error; `serve-acme` turns it
//!   into `/ready`.
//! - **Start-up**: a kept cache must be usable (its parent exists, it is
//!   writable); unless the cache holds a valid certificate, the directory
//!   URL must answer as an ACME directory (3 tries, ~10 s at most).
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
mod status;
mod steps;
mod storage;
mod task;

pub use answers::Answers;
pub use directory::ProbePolicy;
pub use resolver::AcmeResolver;
pub use status::AcmeStatus;

use crate::tls::{CertResolver, TlsError, files, server_config};
use resolver::Deployer;
#[cfg(any(test, feature = "test-support"))]
use std::path::Path;
use std::{path::PathBuf, sync::Arc};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, AcmeTls, ClientAuth, Config, TlsMode};

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
    redis: Option<&crate::shared_redis::SharedRedis>,
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
    let storage = storage::open(
        config,
        &opts,
        redis,
        cache_dir.clone(),
        &domains,
        &directory_url,
    )?;
    let cached = storage.cert_location();
    let stored = storage.certificate().await.ok().flatten();
    match stored.map(|pem| files::parse(&pem, &pem, &cached, &cached)) {
        Some(Ok(_)) => tracing::info!(
            storage = %storage.describe(),
            "ACME: a valid certificate is stored; the CA is not contacted at start"
        ),
        _ => directory::probe(&client, &directory_url, probe).await?,
    }

    let dns01 = dns01_setup(&opts).await?;
    let served = Arc::new(CertResolver::new(fallback));
    let (status_tx, status) = watch::channel(AcmeStatus::default());
    let deployer = Arc::new(Deployer {
        served: served.clone(),
        status: status_tx.clone(),
    });
    let (answers, remote) = (Answers::default(), Answers::default());
    let steps = steps::Steps::default();
    let served_pem = Arc::default();
    let (followed_tx, followed) = tokio::sync::mpsc::unbounded_channel();
    if storage.shared() {
        let follower = follow::Follower {
            storage: storage.clone(),
            replica: uuid::Uuid::new_v4().to_string(),
            remote: remote.clone(),
            deployer: deployer.clone(),
            served_pem: Arc::clone(&served_pem),
            deployed: followed_tx,
            status: status_tx.clone(),
        };
        tokio::spawn(follower.run(shutdown.clone()));
    }
    tracing::info!(storage = %storage.describe(), "ACME: state storage");
    let driver = driver::Driver {
        source: account::AccountSource {
            tls: client,
            retry_after: steps.retry_after.clone(),
            contact: format!("mailto:{}", opts.email),
            directory_url: directory_url.clone(),
            storage: storage.clone(),
        },
        domains: domains.clone(),
        challenge: opts.challenge,
        answers: answers.clone(),
        dns01,
        steps,
        lease: opts.lock_lease.unwrap_or(storage::DEFAULT_LEASE),
        storage,
        served_pem,
        followed: Some(followed),
        deployer,
        status: status_tx,
    };
    let resolver = Arc::new(AcmeResolver {
        answers: answers.clone(),
        remote: remote.clone(),
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
    let task = tokio::spawn(driver.drive(ephemeral, shutdown));
    Ok(AcmeSetup {
        server_config: Arc::new(server_config),
        resolver: served,
        acme: Acme {
            status,
            answers,
            remote,
            domains,
            directory_url,
            cache_dir,
            task,
        },
    })
}

/// DNS-01's updater, its TSIG key checked against the server: a key the
/// server refuses stops the start; a server that does not answer is
/// logged (each order checks again before it starts).
async fn dns01_setup(opts: &AcmeTls) -> Result<Option<Arc<dns01::Dns01>>, AcmeError> {
    let (AcmeChallenge::Dns01, Some(table)) = (opts.challenge, &opts.dns01) else {
        return Ok(None);
    };
    let dns = dns01::Dns01::from_config(table)?;
    match dns.check().await {
        Ok(()) => {
            tracing::info!(server = %table.server, zone = %table.zone, key = %table.key_name, "ACME: DNS-01 server takes this key's updates")
        }
        Err(error @ dns_update::DnsError::Unreachable { .. }) => {
            tracing::warn!(%error, "ACME: DNS-01 server not reachable at start; each order checks again");
        }
        Err(error) => return Err(invalid("tls.acme.dns01", &error.to_string())),
    }
    Ok(Some(Arc::new(dns)))
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
