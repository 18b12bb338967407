//! The ACME storage's Redis connection: made lazily on first use, remade
//! after a failure by redis-rs's `ConnectionManager`, every round trip
//! bounded by [`OP_TIMEOUT`]. The URL (it may hold a password) never
//! appears in a message: errors are scrubbed of it.
//!
//! Kept apart so that the edge's one shared Redis handle can replace it.

use super::super::AcmeError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Bound on each Redis round trip.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connected, self-healing Redis connection.
pub(crate) struct RedisConn {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// What must never appear in a message: the URL and its user info.
    secrets: Vec<String>,
}

impl RedisConn {
    /// For `url`; does not connect yet. The error names the key, never the URL.
    pub(crate) fn new(url: &str) -> Result<Self, AcmeError> {
        let mut secrets = vec![url.to_owned()];
        if let Some((_, rest)) = url.split_once("://")
            && let Some((userinfo, _)) = rest.split_once('@')
        {
            secrets.push(userinfo.to_owned());
            if let Some((_, password)) = userinfo.split_once(':') {
                secrets.push(password.to_owned());
            }
        }
        let client = redis::Client::open(url).map_err(|_| AcmeError::Invalid {
            key: "limits.redis_url".to_owned(),
            message: "is not a valid Redis URL (redis://[user:password@]host:port/db, rediss://… or redis+unix:///path)".to_owned(),
        })?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            secrets,
        })
    }

    fn scrub(&self, message: String) -> AcmeError {
        let mut message = message;
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            message = message.replace(secret.as_str(), "<redacted>");
        }
        AcmeError::Storage(message)
    }

    /// Runs `op` on the connection, bounded by [`OP_TIMEOUT`].
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, AcmeError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = self
            .conn
            .get_or_try_init(|| async {
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|e| self.scrub(e.to_string()))?;
        match tokio::time::timeout(OP_TIMEOUT, op(conn)).await {
            Err(_) => Err(AcmeError::Storage(format!(
                "Redis did not answer within {} ms",
                OP_TIMEOUT.as_millis()
            ))),
            Ok(result) => result.map_err(|e| self.scrub(e.to_string())),
        }
    }
}
