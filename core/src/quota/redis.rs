//! The quota counters in Redis, shared by every core replica. Each step is
//! one Lua script run by `EVALSHA` (one round trip; the script is loaded
//! once per Redis), so no replica can check and then act on stale numbers:
//! a reservation checks every budget of the call and reserves in all of
//! them (or none) at once, on Redis' own clock (`TIME`), and may carve this
//! replica a lease ([`super::lease`]). The keys and scripts are in
//! [`super::redis_scripts`]: a step costs the same however many calls are
//! in flight (it reads each budget's running sum, and touches only the
//! reservations that expired). A crashed core's reservations stop counting
//! after `[quota] reservation_ttl`, its leases after that plus
//! [`super::lease::LEASE_WINDOW`].

use super::{
    backend::{
        BackendError, Counts, LeaseRequest, Line, QuotaBackend, ReserveOutcome, Reserved, Settle,
    },
    lease::LEASE_SHARE,
    redis_scripts,
};
use redis::{
    Cmd, RedisWrite, Script, ToRedisArgs,
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::TcpSettings,
};
use std::{io::Write, time::Duration};

/// Longest one Redis step may take.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A budget's Redis key, written straight into the command (no string
/// built per key): `<prefix><key><suffix>`.
struct Key<'a>(&'a str, &'a str, &'static str);

impl ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut w = out.writer_for_next_arg();
        // Writing into the command's buffer cannot fail.
        let _ = w
            .write_all(self.0.as_bytes())
            .and_then(|()| w.write_all(self.1.as_bytes()))
            .and_then(|()| w.write_all(self.2.as_bytes()));
    }
}

/// The four keys of a budget (see [`super::redis_scripts`]).
const SUFFIXES: [&str; 4] = ["", ":r", ":s", ":l"];

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
            reserve: Script::new(&redis_scripts::reserve(LEASE_SHARE)),
            settle: Script::new(&redis_scripts::settle()),
            counts: Script::new(&redis_scripts::counts()),
        })
    }

    /// `EVALSHA` of `script` over the four keys of each of `keys`; its
    /// arguments follow.
    fn evalsha<'a>(&self, script: &Script, keys: impl ExactSizeIterator<Item = &'a str>) -> Cmd {
        // Sized once for the keys and up to 9 arguments per budget (no
        // regrowth of the command's buffers while it is written).
        let n = keys.len();
        let mut cmd = Cmd::with_capacity(8 + 9 * n, 96 + n * (4 * self.prefix.len() + 192));
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(n * SUFFIXES.len());
        for k in keys {
            for suffix in SUFFIXES {
                cmd.arg(Key(&self.prefix, k, suffix));
            }
        }
        cmd
    }

    /// One `PING` on the quota connection (what a round trip costs here;
    /// for the quota bench).
    #[cfg(feature = "test-support")]
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// Runs `cmd` (an `EVALSHA` of `script`), loading the script first
    /// if this Redis does not have it yet. The connection's response
    /// timeout bounds each step.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await.map_err(redis_error)?;
                cmd.query_async(&mut conn).await.map_err(redis_error)
            }
            r => r.map_err(redis_error),
        }
    }
}

/// The error's kind and text, never the URL (redis-rs does not echo it).
fn redis_error(e: redis::RedisError) -> BackendError {
    if e.is_timeout() {
        return err(format!(
            "Redis did not answer within {} ms",
            OP_TIMEOUT.as_millis()
        ));
    }
    err(e.to_string())
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait::async_trait]
impl QuotaBackend for RedisQuota {
    async fn reserve(&self, id: &str, lines: &[Line], ttl: Duration) -> Reserved {
        let lease = LeaseRequest {
            ttl,
            ..LeaseRequest::default()
        };
        self.reserve_leasing(id, lines, &lease).await
    }

    async fn reserve_leasing(&self, id: &str, lines: &[Line], lease: &LeaseRequest) -> Reserved {
        let mut cmd = self.evalsha(&self.reserve, lines.iter().map(|l| l.key.as_str()));
        let hold = millis(lease.hold.max(lease.ttl));
        cmd.arg(id).arg(millis(lease.ttl)).arg(hold);
        match &lease.id {
            Some(lid) if lease.calls > 0 => cmd.arg(&**lid).arg(lease.calls),
            _ => cmd.arg("").arg(0),
        };
        for (i, l) in lines.iter().enumerate() {
            cmd.arg(l.limit).arg(l.amount).arg(u8::from(l.enforce));
            match lease.give_back.get(i).and_then(Option::as_ref) {
                Some((old, free)) => cmd.arg(&**old).arg(*free),
                None => cmd.arg("").arg(0),
            };
        }
        let out: Vec<i64> = self.run(&self.reserve, &cmd).await?;
        if out.len() != 3 + 2 * lines.len() {
            return Err(err("unexpected answer from the reserve script"));
        }
        Ok(ReserveOutcome {
            now_ms: out[0],
            refused: usize::try_from(out[1])
                .ok()
                .filter(|i| *i > 0)
                .map(|i| i - 1),
            leased: out[2] == 1,
            counts: pairs(&out[3..]),
        })
    }

    fn leases(&self) -> bool {
        true
    }

    async fn settle(&self, id: &str, lines: &[Settle]) -> Result<(), BackendError> {
        let mut cmd = self.evalsha(&self.settle, lines.iter().map(|l| l.key.as_str()));
        cmd.arg(id);
        for l in lines {
            cmd.arg(l.lease.as_deref().unwrap_or(""))
                .arg(l.reserved)
                .arg(l.actual)
                .arg(l.expire_at);
        }
        let _: i64 = self.run(&self.settle, &cmd).await?;
        Ok(())
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<Counts>, BackendError> {
        let cmd = self.evalsha(&self.counts, keys.iter().map(String::as_str));
        let out: Vec<i64> = self.run(&self.counts, &cmd).await?;
        Ok(pairs(&out))
    }
}
