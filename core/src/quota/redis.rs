//! The quota counters in Redis, shared by every core replica. Each step is
//! one Lua script run by `EVALSHA` (one round trip; the script is loaded
//! once per Redis), so no replica can check and then act on stale numbers:
//! a reservation drops expired reservations, checks every budget of the
//! call and reserves in all of them (or none) at once, on Redis' own clock
//! (`TIME`). Per budget three keys: `<key>` the settled use (a string),
//! `<key>:r` the open reservations (a sorted set scored by expiry, members
//! `<id>:<amount>`) and `<key>:s` their running sum, so a step costs the
//! same however many calls are in flight (it reads the sum, and touches
//! only the reservations that expired). A crashed core's reservations stop
//! counting after `[quota] reservation_ttl`.

use super::backend::{BackendError, Counts, Line, QuotaBackend, ReserveOutcome, Reserved, Settle};
use redis::{
    Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::TcpSettings,
};
use std::time::Duration;

/// Longest one Redis step may take.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Budget `i`'s settled use and open reservations (KEYS used, res, sum at
/// 3i-2, 3i-1, 3i; one `MGET`), dropping the expired reservations first.
/// Shared by the scripts below.
const COUNTS_OF: &str = r"
local function counts(i, now)
  local res, sum = KEYS[3 * i - 1], KEYS[3 * i]
  local v = redis.call('MGET', KEYS[3 * i - 2], sum)
  local used, reserved = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  local gone = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #gone > 0 then
    for _, m in ipairs(gone) do
      reserved = reserved - tonumber(string.match(m, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
    if reserved > 0 then
      redis.call('SET', sum, reserved, 'KEEPTTL')
    else
      reserved = 0
      redis.call('DEL', sum)
    end
  end
  return used, reserved
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: used, res, sum per line; ARGV: id, ttl_ms, then per line limit,
/// amount, enforce (1/0). Returns now_ms, refused line (0: none), then
/// used, reserved per line. Four commands per budget (the sum is set
/// with its expiry in one `SET … PX`).
const RESERVE: &str = r"
local ttl = tonumber(ARGV[2])
local n = #KEYS / 3
local out = {now, 0}
for i = 1, n do
  local used, reserved = counts(i, now)
  local limit = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  if out[2] == 0 and ARGV[3 * i + 2] == '1' and used + reserved + amount > limit then
    out[2] = i
  end
  table.insert(out, used)
  table.insert(out, reserved)
end
if out[2] == 0 then
  for i = 1, n do
    local res, sum, amount = KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 * i + 1]
    redis.call('ZADD', res, now + ttl, ARGV[1] .. ':' .. amount)
    redis.call('PEXPIRE', res, ttl + 60000)
    redis.call('SET', sum, string.format('%d', out[2 + 2 * i] + amount), 'PX', ttl + 60000)
  end
end
return out
";

/// KEYS: used, res, sum per line; ARGV: id, then per line reserved,
/// actual, expire_at. A reservation that already expired is not
/// subtracted twice.
const SETTLE: &str = r"
for i = 1, #KEYS / 3 do
  local reserved = ARGV[3 * i - 1]
  if redis.call('ZREM', KEYS[3 * i - 1], ARGV[1] .. ':' .. reserved) == 1 then
    if redis.call('DECRBY', KEYS[3 * i], reserved) <= 0 then
      redis.call('DEL', KEYS[3 * i])
    end
  end
  local actual = tonumber(ARGV[3 * i])
  if actual > 0 then
    redis.call('INCRBY', KEYS[3 * i - 2], actual)
  end
  redis.call('EXPIREAT', KEYS[3 * i - 2], ARGV[3 * i + 1])
end
return 1
";

/// KEYS: used, res, sum per line. Returns used, reserved per line.
const COUNTS: &str = r"
local out = {}
for i = 1, #KEYS / 3 do
  local used, reserved = counts(i, now)
  table.insert(out, used)
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
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| {
            err("limits.redis_url is not a valid Redis URL (expected redis://[user:password@]host:port/db)")
        })?;
        // A step is one small request and its answer: no Nagle delay
        // behind the previous step's unacknowledged bytes.
        let info = info.set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)
            .map_err(|e| err(format!("cannot set up the Redis client: {:?}", e.kind())))?;
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
            reserve: Script::new(&format!("{COUNTS_OF}{RESERVE}")),
            settle: Script::new(SETTLE),
            counts: Script::new(&format!("{COUNTS_OF}{COUNTS}")),
        })
    }

    fn keys<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
        keys.flat_map(|k| {
            [
                format!("{}{k}", self.prefix),
                format!("{}{k}:r", self.prefix),
                format!("{}{k}:s", self.prefix),
            ]
        })
        .collect()
    }

    /// One `PING` on the quota connection (what a round trip costs here;
    /// for the quota bench).
    #[cfg(feature = "test-support")]
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(OP_TIMEOUT, redis::cmd("PING").query_async::<()>(&mut conn))
            .await
        {
            Err(_) => Err(err("Redis did not answer a PING in time")),
            Ok(r) => r.map_err(|e| err(e.to_string())),
        }
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
    async fn reserve(&self, id: &str, lines: &[Line], ttl: Duration) -> Reserved {
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
