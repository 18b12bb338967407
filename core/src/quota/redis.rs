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
//! [`super::lease::LEASE_WINDOW`]. Steps run on connections of their own
//! ([`super::redis_conn`]), each a single round trip.

use super::{
    backend::{
        BackendError, Counts, LeaseRequest, Line, QuotaBackend, ReserveOutcome, Reserved, Settle,
    },
    lease::LEASE_SHARE,
    redis_conn::{Addr, Pool, Script},
    redis_scripts,
    resp::{Request, Value},
};
use redis::{ConnectionAddr, IntoConnectionInfo};
use std::time::Duration;

/// The four keys of a budget (see [`super::redis_scripts`]).
const SUFFIXES: [&str; 4] = ["", ":r", ":s", ":l"];

/// Quota counters in Redis.
pub struct RedisQuota {
    pool: Pool,
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
        const BAD_URL: &str = "limits.redis_url is not a valid Redis URL \
                               (expected redis://[user:password@]host:port/db or redis+unix:///path)";
        let info = url.into_connection_info().map_err(|_| err(BAD_URL))?;
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Addr::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Addr::Unix(path.clone()),
            _ => {
                return Err(err(
                    "limits.redis_url: TLS (rediss://) is not supported for quotas; \
                     use redis:// on a private network or redis+unix://",
                ));
            }
        };
        let settings = info.redis_settings();
        Ok(Self {
            pool: Pool::new(
                addr,
                settings.username(),
                settings.password(),
                settings.db(),
            ),
            prefix: format!("{prefix}quota:"),
            reserve: Script::new(redis_scripts::reserve(LEASE_SHARE)),
            settle: Script::new(redis_scripts::settle()),
            counts: Script::new(redis_scripts::counts()),
        })
    }

    /// Writes `EVALSHA` of `script` over the four keys of each of `keys`;
    /// its arguments follow.
    fn evalsha<'a>(
        &self,
        r: &mut Request<'_>,
        script: &Script,
        keys: impl ExactSizeIterator<Item = &'a str>,
    ) {
        r.arg("EVALSHA")
            .arg(&script.hash)
            .uint((keys.len() * SUFFIXES.len()) as u64);
        for k in keys {
            for suffix in SUFFIXES {
                r.parts(&[self.prefix.as_bytes(), k.as_bytes(), suffix.as_bytes()]);
            }
        }
    }

    /// One `PING` (what a round trip costs here; for the quota bench).
    #[cfg(feature = "test-support")]
    pub async fn ping(&self) -> Result<(), BackendError> {
        match self
            .pool
            .call(None, |r| {
                r.arg("PING");
            })
            .await
        {
            Ok(Value::Status(s)) if s == "PONG" => Ok(()),
            Ok(other) => Err(unexpected(&other, "PING")),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Runs an `EVALSHA` of `script` (loaded first if this Redis does not
    /// have it yet); its integers.
    async fn run(
        &self,
        script: &Script,
        what: &str,
        write: impl FnOnce(&mut Request<'_>),
    ) -> Result<Vec<i64>, BackendError> {
        match self.pool.call(Some(script), write).await {
            Ok(Value::Int(n)) => Ok(vec![n]),
            Ok(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Int(n) => Ok(*n),
                    other => Err(unexpected(other, what)),
                })
                .collect(),
            Ok(other) => Err(unexpected(&other, what)),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

/// An answer the scripts do not give (Redis' error text, if it is one).
fn unexpected(value: &Value, what: &str) -> BackendError {
    match value {
        Value::Error(e) => err(format!("Redis refused the {what} step: {e}")),
        _ => err(format!("unexpected answer from the {what} script")),
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
        let hold = millis(lease.hold.max(lease.ttl));
        let out = self
            .run(&self.reserve, "reserve", |r| {
                self.evalsha(r, &self.reserve, lines.iter().map(|l| &*l.key));
                r.arg(id).uint(millis(lease.ttl)).uint(hold);
                match &lease.id {
                    Some(lid) if lease.calls > 0 => r.arg(&**lid).uint(lease.calls),
                    _ => r.arg("").uint(0),
                };
                for (i, l) in lines.iter().enumerate() {
                    r.uint(l.limit).uint(l.amount).uint(u64::from(l.enforce));
                    match lease.give_back.get(i).and_then(Option::as_ref) {
                        Some((old, free)) => r.arg(&**old).uint(*free),
                        None => r.arg("").uint(0),
                    };
                }
            })
            .await?;
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
        self.run(&self.settle, "settle", |r| {
            self.evalsha(r, &self.settle, lines.iter().map(|l| &*l.key));
            r.arg(id);
            for l in lines {
                r.arg(l.lease.as_deref().unwrap_or(""))
                    .uint(l.reserved)
                    .uint(l.actual)
                    .int(l.expire_at);
            }
        })
        .await?;
        Ok(())
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<Counts>, BackendError> {
        let out = self
            .run(&self.counts, "counts", |r| {
                self.evalsha(r, &self.counts, keys.iter().map(String::as_str));
            })
            .await?;
        Ok(pairs(&out))
    }
}
