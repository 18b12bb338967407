//! Where the ACME state lives, behind one trait so the order flow does not
//! know which: the cache directory of a single edge ([`dir`]), or Redis,
//! shared by replicas ([`redis`]). The state is the account, the served
//! certificate (its key, then its chain), and — shared only in Redis — the
//! ordering lock, the order in flight (its URL and finalize key, so a
//! replica that takes over resumes it) and the pending challenge answers.
//!
//! Chosen by `[tls.acme] storage`, else `"redis"` when `[limits] backend =
//! "redis"`, else the directory.

mod dir;
mod redis;
mod redis_conn;

pub(crate) use dir::DirStorage;
pub(crate) use redis::RedisStorage;

use super::AcmeError;
use crate::shared_redis::SharedRedis;
use redis_conn::RedisConn;
use std::{path::PathBuf, sync::Arc, time::Duration};
use vibectl_config::{AcmeStorage, AcmeTls, Config, LimitsBackend};

/// Which kind of challenge answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// A TLS-ALPN-01 certificate, made from the key authorization; the
    /// name is the domain.
    TlsAlpn,
    /// An HTTP-01 key authorization; the name is the token.
    Http,
}

/// One pending challenge answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) kind: AnswerKind,
    pub(crate) name: String,
    pub(crate) key_authorization: String,
}

/// The order in flight, kept so that another replica can resume it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderRecord {
    /// The order's URL.
    pub(crate) url: String,
    /// The certificate key (PKCS#8 PEM) of the finalize request, once sent.
    pub(crate) key_pem: Option<String>,
}

/// What the storage said about the shared state (Redis only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Versions {
    /// Changes with every certificate stored.
    pub(crate) certificate: Option<String>,
    /// Changes with every change of the pending answers.
    pub(crate) answers: u64,
}

/// The ACME state's home. Every method is bounded in time; errors are
/// [`AcmeError::Storage`] (Redis) or [`AcmeError::CacheFile`] (directory).
#[async_trait::async_trait]
pub(crate) trait Storage: Send + Sync + 'static {
    /// Where, for logs: the directory, or "Redis, keys <prefix>…".
    fn describe(&self) -> String;
    /// The path (or pseudo-path) named in certificate errors.
    fn cert_location(&self) -> PathBuf;
    /// True when replicas share it (lock, answers and followers matter).
    fn shared(&self) -> bool;

    /// The account credentials, if stored.
    async fn account(&self) -> Result<Option<Vec<u8>>, AcmeError>;
    /// Stores the account credentials.
    async fn store_account(&self, bytes: Vec<u8>) -> Result<(), AcmeError>;
    /// The certificate (key, then chain, PEM), if stored.
    async fn certificate(&self) -> Result<Option<Vec<u8>>, AcmeError>;
    /// Stores a new certificate if the lock `token` is still held (the
    /// fencing check) and forgets the order in flight; `false` when the
    /// lock was lost.
    async fn store_certificate(&self, pem: Vec<u8>, token: &str) -> Result<bool, AcmeError>;

    /// Takes the ordering lock for `lease` if nobody holds it.
    async fn try_lock(&self, token: &str, lease: Duration) -> Result<bool, AcmeError>;
    /// Extends the lock by `lease`; `false` when `token` no longer holds it.
    async fn renew_lock(&self, token: &str, lease: Duration) -> Result<bool, AcmeError>;
    /// Frees the lock if `token` holds it.
    async fn unlock(&self, token: &str) -> Result<(), AcmeError>;

    /// The order in flight left by a holder, if any.
    async fn order_record(&self) -> Result<Option<OrderRecord>, AcmeError>;
    /// Records the order in flight.
    async fn save_order_record(&self, record: &OrderRecord) -> Result<(), AcmeError>;
    /// Forgets the order in flight (it failed).
    async fn clear_order_record(&self) -> Result<(), AcmeError>;

    /// Adds pending answers for every replica; returns the new answers version.
    async fn publish_answers(&self, answers: &[Answer]) -> Result<u64, AcmeError>;
    /// Removes these answers (the authorizations are final).
    async fn withdraw_answers(&self, answers: &[Answer]) -> Result<(), AcmeError>;
    /// Every pending answer (what followers serve).
    async fn answers(&self) -> Result<Vec<Answer>, AcmeError>;

    /// Marks `replica` alive and returns the versions to follow.
    async fn heartbeat(&self, replica: &str, alive_for: Duration) -> Result<Versions, AcmeError>;
    /// Says that `replica` serves the answers of `version`.
    async fn ack_answers(&self, replica: &str, version: u64) -> Result<(), AcmeError>;
    /// How many live replicas do not serve the answers of `version` yet.
    async fn replicas_behind(&self, version: u64) -> Result<u64, AcmeError>;
}

/// The lock lease when `tls.acme.lock_lease` is not set.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The storage `config` asks for, for these domains and this CA.
pub(crate) fn open(
    config: &Config,
    opts: &AcmeTls,
    shared: Option<&SharedRedis>,
    cache_dir: PathBuf,
    domains: &[String],
    directory_url: &str,
) -> Result<Arc<dyn Storage>, AcmeError> {
    let contact = format!("mailto:{}", opts.email);
    let redis = match opts.storage {
        Some(kind) => kind == AcmeStorage::Redis,
        None => config.limits.backend == LimitsBackend::Redis,
    };
    if !redis {
        return Ok(Arc::new(DirStorage::new(
            cache_dir,
            domains,
            &contact,
            directory_url,
        )));
    }
    let url = config
        .limits
        .redis_url
        .as_ref()
        .ok_or_else(|| AcmeError::Invalid {
            key: "tls.acme.storage".to_owned(),
            message: "\"redis\" needs limits.redis_url".to_owned(),
        })?;
    let prefix = opts
        .redis_key_prefix
        .clone()
        .unwrap_or_else(|| format!("{}acme:", config.limits.key_prefix()));
    // The edge's one handle when `[limits]` made one (same URL), else a
    // connection of the storage's own.
    let conn = match shared {
        Some(redis) => RedisConn::shared(redis),
        None => RedisConn::new(url.expose())?,
    };
    Ok(Arc::new(RedisStorage::new(
        conn,
        &prefix,
        domains,
        &contact,
        directory_url,
    )?))
}
