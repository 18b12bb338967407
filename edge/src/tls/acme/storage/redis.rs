//! The shared storage: Redis, for edge replicas behind one address. Keys
//! (under the prefix; `<scope>` hashes the domains and the directory URL,
//! `<account>` the contact and the directory URL, as the cache's file names):
//!
//! | key | what |
//! | --- | --- |
//! | `account:<account>` | the account credentials (JSON, holds its private key) |
//! | `cert:<scope>` | the certificate: its private key, then the chain (PEM) |
//! | `cert-version:<scope>` | SHA-256 of `cert:`; followers poll it |
//! | `lock:<scope>` | the ordering lock: a random token, with a lease (`PX`) |
//! | `order:<scope>` | the order in flight: `url`, and `key` once finalize is sent |
//! | `answers:<scope>` | pending answers: `tls:<domain>` / `http:<token>` → key authorization |
//! | `answers-version:<scope>` | bumped with every change of `answers:` |
//! | `replicas:<scope>` | live replicas (sorted set, scored by expiry on Redis's clock) |
//! | `acks:<scope>` | the answers version each replica serves |
//!
//! Every change that must be atomic is one Lua script; the certificate is
//! written only while the writer's token still holds the lock (fencing).

use super::{Answer, AnswerKind, OrderRecord, Storage, Versions, redis_conn::RedisConn};
use crate::tls::acme::{AcmeError, cache};
use redis::Script;
use std::{path::PathBuf, time::Duration};

/// How long pending answers and the order record outlive their last write.
const PENDING_TTL: Duration = Duration::from_secs(3600);

const STORE_CERT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[4])
return 1
";
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
";
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
/// ARGV: ttl (ms), then field, value pairs (an empty value deletes).
const CHANGE_ANSWERS: &str = r"
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
local v = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]) * 24)
return v
";
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return {redis.call('GET', KEYS[2]) or '', tonumber(redis.call('GET', KEYS[3]) or '0')}
";
const BEHIND: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local behind = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if tonumber(redis.call('HGET', KEYS[2], id) or '0') < tonumber(ARGV[1]) then
    behind = behind + 1
  end
end
return behind
";

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The ACME state of one set of domains and one CA, in Redis.
pub(crate) struct RedisStorage {
    conn: RedisConn,
    prefix: String,
    scope: String,
    account: String,
    store_cert: Script,
    renew: Script,
    unlock: Script,
    change_answers: Script,
    heartbeat: Script,
    behind: Script,
}

impl RedisStorage {
    pub(crate) fn new(
        conn: RedisConn,
        prefix: &str,
        domains: &[String],
        contact: &str,
        directory_url: &str,
    ) -> Result<Self, AcmeError> {
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            scope: cache::hash(domains, directory_url),
            account: cache::hash(&[contact.to_owned()], directory_url),
            store_cert: Script::new(STORE_CERT),
            renew: Script::new(RENEW),
            unlock: Script::new(UNLOCK),
            change_answers: Script::new(CHANGE_ANSWERS),
            heartbeat: Script::new(HEARTBEAT),
            behind: Script::new(BEHIND),
        })
    }

    fn key(&self, what: &str) -> String {
        format!("{}{what}:{}", self.prefix, self.scope)
    }

    fn field(answer: &Answer) -> String {
        match answer.kind {
            AnswerKind::TlsAlpn => format!("tls:{}", answer.name),
            AnswerKind::Http => format!("http:{}", answer.name),
        }
    }

    async fn change_answers(&self, pairs: Vec<(String, String)>) -> Result<u64, AcmeError> {
        let (answers, version) = (self.key("answers"), self.key("answers-version"));
        self.conn
            .run(|mut c| async move {
                let mut call = self.change_answers.prepare_invoke();
                call.key(answers).key(version).arg(ms(PENDING_TTL));
                for (field, value) in pairs {
                    call.arg(field).arg(value);
                }
                call.invoke_async(&mut c).await
            })
            .await
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, AcmeError> {
        self.conn
            .run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }
}

#[async_trait::async_trait]
impl Storage for RedisStorage {
    fn describe(&self) -> String {
        format!("Redis, keys {}…:{}", self.prefix, self.scope)
    }

    fn cert_location(&self) -> PathBuf {
        PathBuf::from(format!("redis:{}", self.key("cert")))
    }

    fn shared(&self) -> bool {
        true
    }

    async fn account(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        self.get(format!("{}account:{}", self.prefix, self.account))
            .await
    }

    async fn store_account(&self, bytes: Vec<u8>) -> Result<(), AcmeError> {
        let key = format!("{}account:{}", self.prefix, self.account);
        self.conn
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(bytes)
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    async fn certificate(&self) -> Result<Option<Vec<u8>>, AcmeError> {
        self.get(self.key("cert")).await
    }

    async fn store_certificate(&self, pem: Vec<u8>, token: &str) -> Result<bool, AcmeError> {
        let version = crate::tls::inspect::fingerprint(&pem);
        let keys = [
            self.key("lock"),
            self.key("cert"),
            self.key("cert-version"),
            self.key("order"),
        ];
        let stored: i64 = self
            .conn
            .run(|mut c| async move {
                self.store_cert
                    .key(&keys[..])
                    .arg(token)
                    .arg(pem)
                    .arg(version)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(stored == 1)
    }

    async fn try_lock(&self, token: &str, lease: Duration) -> Result<bool, AcmeError> {
        let key = self.key("lock");
        let set: Option<String> = self
            .conn
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms(lease))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    async fn renew_lock(&self, token: &str, lease: Duration) -> Result<bool, AcmeError> {
        let key = self.key("lock");
        let renewed: i64 = self
            .conn
            .run(|mut c| async move {
                self.renew
                    .key(key)
                    .arg(token)
                    .arg(ms(lease))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(renewed == 1)
    }

    async fn unlock(&self, token: &str) -> Result<(), AcmeError> {
        let key = self.key("lock");
        let _: i64 = self
            .conn
            .run(|mut c| async move { self.unlock.key(key).arg(token).invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn order_record(&self) -> Result<Option<OrderRecord>, AcmeError> {
        let key = self.key("order");
        let (url, key_pem): (Option<String>, Option<String>) = self
            .conn
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("url")
                    .arg("key")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(url.map(|url| OrderRecord { url, key_pem }))
    }

    async fn save_order_record(&self, record: &OrderRecord) -> Result<(), AcmeError> {
        let key = self.key("order");
        let mut cmd = redis::pipe();
        cmd.atomic()
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg("url")
            .arg(&record.url)
            .ignore();
        if let Some(pem) = &record.key_pem {
            cmd.cmd("HSET").arg(&key).arg("key").arg(pem).ignore();
        }
        cmd.cmd("PEXPIRE").arg(&key).arg(ms(PENDING_TTL)).ignore();
        self.conn
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    async fn clear_order_record(&self) -> Result<(), AcmeError> {
        let key = self.key("order");
        self.conn
            .run(|mut c| async move { redis::cmd("DEL").arg(key).query_async(&mut c).await })
            .await
    }

    async fn publish_answers(&self, answers: &[Answer]) -> Result<u64, AcmeError> {
        let pairs = answers
            .iter()
            .map(|a| (Self::field(a), a.key_authorization.clone()))
            .collect();
        self.change_answers(pairs).await
    }

    async fn withdraw_answers(&self, answers: &[Answer]) -> Result<(), AcmeError> {
        let pairs = answers
            .iter()
            .map(|a| (Self::field(a), String::new()))
            .collect();
        self.change_answers(pairs).await.map(|_| ())
    }

    async fn answers(&self) -> Result<Vec<Answer>, AcmeError> {
        let key = self.key("answers");
        let all: Vec<(String, String)> = self
            .conn
            .run(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await })
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(field, key_authorization)| {
                let (kind, name) = match field.split_once(':')? {
                    ("tls", name) => (AnswerKind::TlsAlpn, name),
                    ("http", name) => (AnswerKind::Http, name),
                    _ => return None,
                };
                Some(Answer {
                    kind,
                    name: name.to_owned(),
                    key_authorization,
                })
            })
            .collect())
    }

    async fn heartbeat(&self, replica: &str, alive_for: Duration) -> Result<Versions, AcmeError> {
        let keys = [
            self.key("replicas"),
            self.key("cert-version"),
            self.key("answers-version"),
        ];
        let (certificate, answers): (String, u64) = self
            .conn
            .run(|mut c| async move {
                self.heartbeat
                    .key(&keys[..])
                    .arg(replica)
                    .arg(ms(alive_for))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(Versions {
            certificate: (!certificate.is_empty()).then_some(certificate),
            answers,
        })
    }

    async fn ack_answers(&self, replica: &str, version: u64) -> Result<(), AcmeError> {
        let key = self.key("acks");
        let mut cmd = redis::pipe();
        cmd.cmd("HSET")
            .arg(&key)
            .arg(replica)
            .arg(version)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms(PENDING_TTL * 24))
            .ignore();
        self.conn
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    async fn replicas_behind(&self, version: u64) -> Result<u64, AcmeError> {
        let keys = [self.key("replicas"), self.key("acks")];
        self.conn
            .run(|mut c| async move {
                self.behind
                    .key(&keys[..])
                    .arg(version)
                    .invoke_async(&mut c)
                    .await
            })
            .await
    }
}
