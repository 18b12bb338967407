//! The ACME storage's Redis connection: the edge's one [`SharedRedis`]
//! when `[limits] backend = "redis"` made it (the same connection, seen
//! with a longer bound per round trip, [`OP_TIMEOUT`], since a lost
//! certificate write costs more than a slow one), else a handle of its own
//! (`tls.acme.storage = "redis"` with in-memory limits). Either way: made
//! lazily on first use, remade after a failure, the URL scrubbed from every
//! message.

use super::super::AcmeError;
use crate::shared_redis::{RedisError, SharedRedis};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Bound on each Redis round trip.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connected, self-healing Redis connection.
pub(crate) struct RedisConn {
    redis: SharedRedis,
}

impl RedisConn {
    /// For `url`; does not connect yet. The error names the key, never the URL.
    pub(crate) fn new(url: &str) -> Result<Self, AcmeError> {
        let redis = SharedRedis::with_op_timeout(url, "", OP_TIMEOUT).map_err(|_| AcmeError::Invalid {
            key: "limits.redis_url".to_owned(),
            message: "is not a valid Redis URL (redis://[user:password@]host:port/db, rediss://… or redis+unix:///path)".to_owned(),
        })?;
        Ok(Self { redis })
    }

    /// A view of the edge's one handle (`[limits] backend = "redis"`): its
    /// connection, with this storage's bound.
    pub(crate) fn shared(redis: &SharedRedis) -> Self {
        Self {
            redis: redis.with_bound(OP_TIMEOUT),
        }
    }

    /// Runs `op` on the connection, bounded by [`OP_TIMEOUT`].
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, AcmeError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.redis.conn().await.map_err(storage_error)?;
        self.redis.bounded(op(conn)).await.map_err(storage_error)
    }
}

fn storage_error(error: RedisError) -> AcmeError {
    AcmeError::Storage(error.to_string())
}
