//! The quota counters in Redis, shared by every core replica. Each step is
//! one Lua script, so no replica can check and then act on stale numbers:
//! a reservation purges expired reservations, sums the open ones, checks
//! every budget of the call and reserves in all of them (or none) at once,
//! on Redis' own clock (`TIME`). A counter is a string (settled use); its
//! open reservations are a sorted set scored by expiry, members
//! `<id>:<amount>`, so a crashed core's reservations stop counting after
//! `[quota] reservation_ttl`.

use super::backend::{BackendError, Counts, Line, QuotaBackend, ReserveOutcome, Settle};
use redis::{
    Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use std::time::Duration;

/// Longest one Redis step may take.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS: used1, res1, used2, res2, …; ARGV: id, ttl_ms, then per line
/// limit, amount, enforce (1/0). Returns now_ms, refused line (0: none),
/// then used, reserved per line.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local n = #KEYS / 2
local out = {now, 0}
local amounts = {}
for i = 1, n do
  local res = KEYS[2 * i]
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local reserved = 0
  for _, m in ipairs(redis.call('ZRANGE', res, 0, -1)) do
    reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
  end
  local limit = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  amounts[i] = ARGV[3 * i + 1]
  if out[2] == 0 and ARGV[3 * i + 2] == '1' and used + reserved + amount > limit then
    out[2] = i
  end
  table.insert(out, used)
  table.insert(out, reserved)
end
if out[2] == 0 then
  for i = 1, n do
    redis.call('ZADD', KEYS[2 * i], now + ttl, ARGV[1] .. ':' .. amounts[i])
    redis.call('PEXPIRE', KEYS[2 * i], ttl + 60000)
  end
end
return out
";

/// KEYS: used1, res1, …; ARGV: id, then per line reserved, actual, expire_at.
const SETTLE: &str = r"
local n = #KEYS / 2
for i = 1, n do
  redis.call('ZREM', KEYS[2 * i], ARGV[1] .. ':' .. ARGV[3 * i - 1])
  local actual = tonumber(ARGV[3 * i])
  if actual > 0 then
    redis.call('INCRBY', KEYS[2 * i - 1], actual)
  end
  redis.call('EXPIREAT', KEYS[2 * i - 1], ARGV[3 * i + 1])
end
return 1
";

/// KEYS: used1, res1, …. Returns used, reserved per line.
const COUNTS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS / 2 do
  local res = KEYS[2 * i]
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  local reserved = 0
  for _, m in ipairs(redis.call('ZRANGE', res, 0, -1)) do
    reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
  end
  table.insert(out, tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0'))
  table.insert(out, reserved)
end
return out
";

/// Quota counters in Redis.
pub struct RedisQuota {
    conn: ConnectionManager,
    prefix: String,
    reserve: Script,
    settle: Script,
    counts: Script,
}

impl std::fmt::Debug for RedisQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuota")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn err(reason: impl Into<String>) -> BackendError {
    BackendError {
        backend: "redis",
        reason: reason.into(),
    }
}

impl RedisQuota {
    /// Counters under `<prefix>quota:` in the Redis at `url` (connects
    /// lazily: a Redis down at start is handled per `on_backend_failure`).
    /// The error never repeats the URL.
    pub fn new(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let client = redis::Client::open(url).map_err(|_| {
            err("limits.redis_url is not a valid Redis URL (expected redis://[user:password@]host:port/db)")
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            err(format!(
                "cannot set up the Redis connection: {:?}",
                e.kind()
            ))
        })?;
        Ok(Self {
            conn,
            prefix: format!("{prefix}quota:"),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            counts: Script::new(COUNTS),
        })
    }

    fn keys<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
        keys.flat_map(|k| {
            [
                format!("{}{k}", self.prefix),
                format!("{}{k}:r", self.prefix),
            ]
        })
        .collect()
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async(&mut conn)).await {
            Err(_) => Err(err(format!(
                "Redis did not answer within {} ms",
                OP_TIMEOUT.as_millis()
            ))),
            // The error's kind and text, never the URL (redis-rs does not echo it).
            Ok(r) => r.map_err(|e| err(e.to_string())),
        }
    }
}

fn pairs(values: &[i64]) -> Vec<Counts> {
    values
        .chunks(2)
        .map(|p| Counts {
            used: u64::try_from(p[0]).unwrap_or(0),
            reserved: u64::try_from(p.get(1).copied().unwrap_or(0)).unwrap_or(0),
        })
        .collect()
}

#[async_trait::async_trait]
impl QuotaBackend for RedisQuota {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn reserve(
        &self,
        id: &str,
        lines: &[Line],
        ttl: Duration,
    ) -> Result<ReserveOutcome, BackendError> {
        let mut inv = self.reserve.prepare_invoke();
        for k in self.keys(lines.iter().map(|l| l.key.as_str())) {
            inv.key(k);
        }
        inv.arg(id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        for l in lines {
            inv.arg(l.limit).arg(l.amount).arg(u8::from(l.enforce));
        }
        let out: Vec<i64> = self.run(&inv).await?;
        if out.len() != 2 + 2 * lines.len() {
            return Err(err("unexpected answer from the reserve script"));
        }
        Ok(ReserveOutcome {
            now_ms: out[0],
            refused: usize::try_from(out[1])
                .ok()
                .filter(|i| *i > 0)
                .map(|i| i - 1),
            counts: pairs(&out[2..]),
        })
    }

    async fn settle(&self, id: &str, lines: &[Settle]) -> Result<(), BackendError> {
        let mut inv = self.settle.prepare_invoke();
        for k in self.keys(lines.iter().map(|l| l.key.as_str())) {
            inv.key(k);
        }
        inv.arg(id);
        for l in lines {
            inv.arg(l.reserved).arg(l.actual).arg(l.expire_at);
        }
        let _: i64 = self.run(&inv).await?;
        Ok(())
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<Counts>, BackendError> {
        let mut inv = self.counts.prepare_invoke();
        for k in self.keys(keys.iter().map(String::as_str)) {
            inv.key(k);
        }
        let out: Vec<i64> = self.run(&inv).await?;
        Ok(pairs(&out))
    }
}
