//! Limit state in Redis, shared by every edge replica. Each decision is one
//! atomic Lua script that reads Redis's own clock (`TIME`), so replicas with
//! skewed clocks still agree. Concurrency slots are leases: a sorted set of
//! `start_ms:id` members scored by lease expiry, refreshed while the call
//! runs, so a crashed replica's slots free themselves after one lease.
//!
//! The connection is the edge's one [`SharedRedis`] (lazy, bounded,
//! the URL never shown).

use super::{Admission, BackendError, RateQuota, SlotGuard, SlotOutcome};
use crate::shared_redis::SharedRedis;
use redis::{Script, aio::ConnectionManager};
use std::{num::NonZeroU32, sync::Arc, time::Duration};

/// How long a slot lives without a refresh.
pub const SLOT_LEASE: Duration = Duration::from_secs(30);

/// GCRA: KEYS[1] holds the theoretical arrival time (ms, Redis clock).
/// ARGV: emission interval (ms), tolerance = interval × (burst − 1) (ms).
/// Returns {1, 0} (allowed) or {0, ms until a call can pass}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return {0, allow_at - now} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', new_tat - now + 1000)
return {1, 0}
";

/// Takes a slot of KEYS[1] (a sorted set scored by lease expiry) if fewer
/// than ARGV[1] live ones exist. ARGV: max, lease (ms), a unique id.
/// Returns {1, 0, member} or {0, age of the oldest slot in ms, ''}.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < max then
  local member = string.format('%d', now) .. ':' .. ARGV[3]
  redis.call('ZADD', KEYS[1], now + lease, member)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {1, 0, member}
end
local oldest = now
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local start = tonumber(string.match(m, '^(%d+):'))
  if start and start < oldest then oldest = start end
end
return {0, now - oldest, ''}
";

/// Extends the lease of member ARGV[1] of KEYS[1] by ARGV[2] ms (only if
/// it is still there).
const REFRESH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
";

/// Redis-backed limit state; cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
    /// How long a slot lives without a refresh.
    lease: Duration,
}

struct Inner {
    redis: SharedRedis,
    gcra: Script,
    acquire: Script,
    refresh: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("redis", &self.inner.redis)
            .field("lease", &self.lease)
            .finish()
    }
}

impl RedisBackend {
    /// Limit state in `redis` (not connected yet).
    pub fn new(redis: SharedRedis) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                gcra: Script::new(GCRA),
                acquire: Script::new(ACQUIRE),
                refresh: Script::new(REFRESH),
            }),
            lease: SLOT_LEASE,
        }
    }

    /// A backend on its own handle for `url` with keys under `prefix`,
    /// connected and checked (`PING`); the error never holds the URL.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let redis = SharedRedis::new(url, prefix)?;
        redis.ping().await?;
        Ok(Self::new(redis))
    }

    /// The same backend with another slot lease (tests use a short one).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    async fn conn(&self) -> Result<ConnectionManager, BackendError> {
        Ok(self.inner.redis.conn().await?)
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackendError> {
        Ok(self.inner.redis.bounded(f).await?)
    }

    /// Counts one call of `key` against `quota`, in Redis.
    pub async fn check_rate(&self, key: &str, quota: RateQuota) -> Result<Admission, BackendError> {
        let interval = u64::try_from(quota.emission_interval().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let tolerance = interval.saturating_mul(u64::from(quota.burst.get() - 1));
        let rkey = self
            .inner
            .redis
            .key(&format!("rpm:{}:{}:{key}", quota.per_minute, quota.burst));
        let mut conn = self.conn().await?;
        let (ok, wait): (i64, i64) = self
            .bounded(
                self.inner
                    .gcra
                    .key(rkey)
                    .arg(interval)
                    .arg(tolerance)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(if ok == 1 {
            Admission::Allowed
        } else {
            Admission::Denied {
                retry_after: Duration::from_millis(u64::try_from(wait.max(1)).unwrap_or(1)),
            }
        })
    }

    /// Takes a leased slot of `key` if fewer than `max` are held by all
    /// replicas together.
    pub async fn acquire_slot(
        &self,
        key: &str,
        max: NonZeroU32,
    ) -> Result<SlotOutcome, BackendError> {
        let id = uuid::Uuid::new_v4().to_string();
        let rkey = self.inner.redis.key(&format!("slots:{key}"));
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn().await?;
        let (ok, oldest_age, member): (i64, i64, String) = self
            .bounded(
                self.inner
                    .acquire
                    .key(&rkey)
                    .arg(max.get())
                    .arg(lease_ms)
                    .arg(&id)
                    .invoke_async(&mut conn),
            )
            .await?;
        if ok != 1 {
            let oldest_age = Duration::from_millis(u64::try_from(oldest_age).unwrap_or(0));
            return Ok(SlotOutcome::Full { oldest_age });
        }
        Ok(SlotOutcome::Acquired(SlotGuard::Redis(Box::new(
            Lease::start(self.clone(), conn, rkey, member),
        ))))
    }
}

/// A slot in Redis: refreshed every third of the lease; removed on drop.
pub struct Lease {
    refresher: tokio::task::JoinHandle<()>,
    backend: RedisBackend,
    conn: ConnectionManager,
    key: String,
    member: String,
}

impl Lease {
    fn start(backend: RedisBackend, conn: ConnectionManager, key: String, member: String) -> Self {
        let (b, mut c, k, m) = (backend.clone(), conn.clone(), key.clone(), member.clone());
        let refresher = tokio::spawn(async move {
            let lease = b.lease;
            let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let refreshed: Result<i64, _> = b
                    .bounded(
                        b.inner
                            .refresh
                            .key(&k)
                            .arg(&m)
                            .arg(lease_ms)
                            .invoke_async(&mut c),
                    )
                    .await;
                if let Err(error) = refreshed {
                    tracing::debug!(%error, "could not refresh a concurrency lease in Redis");
                }
            }
        });
        Self {
            refresher,
            backend,
            conn,
            key,
            member,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.refresher.abort();
        let mut conn = self.conn.clone();
        let backend = self.backend.clone();
        let (key, member) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.member),
        );
        // Without a runtime (process exit) the lease simply expires.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let removed: Result<i64, _> = backend
                    .bounded(redis::cmd("ZREM").arg(&key).arg(&member).query_async(&mut conn))
                    .await;
                if let Err(error) = removed {
                    tracing::debug!(%error, "could not free a concurrency slot in Redis; its lease will expire");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_redis_is_an_error_within_the_bound() {
        // Port 1 on loopback: nothing listens there.
        let redis = SharedRedis::new("redis://127.0.0.1:1/0", "p:").expect("valid url");
        let backend = RedisBackend::new(redis);
        let started = std::time::Instant::now();
        let quota = RateQuota {
            per_minute: NonZeroU32::MIN,
            burst: NonZeroU32::MIN,
        };
        assert!(backend.check_rate("k", quota).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
