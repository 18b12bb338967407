//! The edge's one Redis handle (`[limits] backend = "redis"`): limit state
//! ([`crate::limits::RedisBackend`]) and token revocations
//! ([`crate::auth::revocation`]) share its client, its key prefix and its
//! connection, and so does the ACME storage (through a view with a longer
//! bound per round trip, [`SharedRedis::with_bound`]).
//!
//! The connection is made lazily on first use (and remade after a failure
//! by redis-rs's `ConnectionManager`); every round trip is bounded by
//! [`OP_TIMEOUT`] (a view's own bound, at most [`LONGEST_OP_TIMEOUT`]), so a Redis that is down or slow is an error within half a
//! second, never a hang. The Redis URL (it may hold a password) is never
//! logged and is scrubbed from error messages.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::{sync::Arc, time::Duration};
use tokio::sync::OnceCell;
use vibectl_config::{LimitsBackend, LimitsConfig};

/// Bound on each Redis round trip.
pub const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest bound a view of the handle may have ([`SharedRedis::with_bound`]):
/// the connection's own response timeout.
pub const LONGEST_OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why Redis could not be used; the message never holds the URL or its
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// `limits.backend = "redis"` without `limits.redis_url`.
    #[error("limits.backend = \"redis\" needs limits.redis_url")]
    NoUrl,
    /// `limits.redis_url` cannot be parsed.
    #[error(
        "limits.redis_url is not a valid Redis URL (expected redis://[user:password@]host:port/db, rediss://… or redis+unix:///path)"
    )]
    BadUrl,
    /// Redis did not answer within the handle's bound (ms).
    #[error("Redis did not answer within {0} ms")]
    Timeout(u128),
    /// Redis (or the way to it) failed.
    #[error("{0}")]
    Failed(String),
}

/// A shared Redis: cheap to clone, connected on first use.
#[derive(Clone)]
pub struct SharedRedis {
    inner: Arc<Inner>,
    /// Bound on each round trip of this view ([`OP_TIMEOUT`] unless made
    /// otherwise).
    op_timeout: Duration,
}

struct Inner {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    /// What must never appear in a message: the URL and its user info.
    secrets: Vec<String>,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("url", &"<redacted>")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl SharedRedis {
    /// The Redis of `[limits]` when `backend = "redis"`, else `None`.
    pub fn from_limits(config: &LimitsConfig) -> Result<Option<Self>, RedisError> {
        if config.backend != LimitsBackend::Redis {
            return Ok(None);
        }
        let url = config.redis_url.as_ref().ok_or(RedisError::NoUrl)?;
        Self::new(url.expose(), config.key_prefix()).map(Some)
    }

    /// A handle on `url` (`redis://[user:password@]host:port/db`,
    /// `rediss://…`, `redis+unix:///path`) whose keys start with `prefix`.
    /// Does not connect yet.
    pub fn new(url: &str, prefix: &str) -> Result<Self, RedisError> {
        Self::with_op_timeout(url, prefix, OP_TIMEOUT)
    }

    /// As [`SharedRedis::new`], with each round trip bounded by
    /// `op_timeout` instead of [`OP_TIMEOUT`].
    pub(crate) fn with_op_timeout(
        url: &str,
        prefix: &str,
        op_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let mut secrets = vec![url.to_owned()];
        if let Some((_, rest)) = url.split_once("://")
            && let Some((userinfo, _)) = rest.split_once('@')
        {
            secrets.push(userinfo.to_owned());
            if let Some((_, password)) = userinfo.split_once(':')
                && !password.is_empty()
            {
                secrets.push(password.to_owned());
            }
        }
        let client = redis::Client::open(url).map_err(|_| RedisError::BadUrl)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                prefix: prefix.to_owned(),
                secrets,
            }),
            op_timeout: op_timeout.min(LONGEST_OP_TIMEOUT),
        })
    }

    /// The same client, prefix and connection, each round trip bounded by
    /// `op_timeout` (at most [`LONGEST_OP_TIMEOUT`]) instead: for a user
    /// whose writes matter more than their speed (the ACME storage).
    pub(crate) fn with_bound(&self, op_timeout: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            op_timeout: op_timeout.min(LONGEST_OP_TIMEOUT),
        }
    }

    /// `<prefix><name>`: the key of `name` for this edge's deployment.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// The connection (made on first use, shared by every caller).
    pub async fn conn(&self) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(LONGEST_OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        self.inner
            .conn
            .get_or_try_init(|| async {
                ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|e| self.scrub(e.to_string()))
    }

    /// Runs one round trip within the handle's bound.
    pub async fn bounded<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.op_timeout, f).await {
            Err(_) => Err(RedisError::Timeout(self.op_timeout.as_millis())),
            Ok(result) => result.map_err(|e| self.scrub(e.to_string())),
        }
    }

    /// Checks that Redis answers (`PING`).
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn().await?;
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    /// `message` without the URL or its password.
    pub fn scrub(&self, message: String) -> RedisError {
        let mut message = message;
        for secret in &self.inner.secrets {
            if !secret.is_empty() {
                message = message.replace(secret.as_str(), "<redacted>");
            }
        }
        RedisError::Failed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_its_password_never_show() {
        let url = "redis://user:hunter2-secret@127.0.0.1:1/0";
        let redis = SharedRedis::new(url, "p:").expect("valid url");
        assert!(!format!("{redis:?}").contains("hunter2"));
        let error = redis.scrub(format!("failed to talk to {url} as user:hunter2-secret"));
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let bad = SharedRedis::new("http://user:hunter2@x", "p:").expect_err("invalid");
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
        assert_eq!(redis.key("revoked"), "p:revoked");
    }

    #[test]
    fn a_view_shares_the_connection_with_its_own_bound() {
        let redis = SharedRedis::new("redis://127.0.0.1:1/0", "p:").expect("valid url");
        let view = redis.with_bound(Duration::from_secs(60));
        assert!(Arc::ptr_eq(&redis.inner, &view.inner), "one connection");
        assert_eq!(redis.op_timeout, OP_TIMEOUT);
        assert_eq!(view.op_timeout, LONGEST_OP_TIMEOUT);
        assert_eq!(view.key("x"), "p:x");
    }

    #[tokio::test]
    async fn a_dead_redis_is_an_error_within_the_bound() {
        // Port 1 on loopback: nothing listens there.
        let redis = SharedRedis::new("redis://127.0.0.1:1/0", "p:").expect("valid url");
        let started = std::time::Instant::now();
        assert!(redis.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
