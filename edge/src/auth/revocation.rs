//! Revoked tokens, by `jti`.
//!
//! - A file (`jwt.revocation_file`), one JSON object per line:
//!   `{"jti": "…", "exp": 1767225600, "sub": "alice", "revoked_at": …}`
//!   (`exp` null: kept forever). `revoke-token` rewrites it atomically and
//!   drops entries whose token has expired anyway; the edge re-reads it when
//!   it changes. A line that cannot be read is skipped (and logged), a
//!   missing file after one was read keeps the last list: a revocation is
//!   never undone by accident.
//! - Redis, when `[limits] backend = "redis"` (the edge's one
//!   [`SharedRedis`]): a sorted set
//!   `<prefix>revoked` (member `jti`, score `exp`; the set expires with its
//!   longest-lived member and members are pruned by score), which every
//!   edge polls each [`REDIS_POLL`]; a revocation reaches every replica
//!   within [`REVOCATION_MAX_STALENESS`]. When Redis cannot be read, the
//!   last list read stays in force and, with `on_backend_failure =
//!   "fail_closed"`, tokens are refused once it is older than that bound.

use crate::auth::now_secs;
use crate::{
    auth::{AuthError, JwtError, key_set::read_optional},
    fsutil,
    shared_redis::SharedRedis,
};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;
use vibectl_config::{
    BackendFailure, Config,
    defaults::{REDIS_REVOKED_SUFFIX, REVOCATION_MAX_STALENESS},
};

/// How often every edge reads the Redis revocation set.
pub const REDIS_POLL: Duration = Duration::from_millis(500);
/// Score of a revocation whose token's `exp` is unknown: year 2100.
const FOREVER: i64 = 4_102_444_800;

/// One line of the revocation file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revocation {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp` (Unix seconds); `None`: unknown, kept forever.
    #[serde(default)]
    pub exp: Option<i64>,
    /// The token's `sub`, when known (for people reading the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When it was revoked (Unix seconds).
    #[serde(default)]
    pub revoked_at: i64,
}

/// The file's list as read.
#[derive(Debug, Default)]
struct FileList {
    jtis: HashSet<String>,
    digest: [u8; 32],
}

/// The Redis list as last read.
#[derive(Debug, Default)]
struct RedisList {
    jtis: HashSet<String>,
    read_at: Option<Instant>,
}

/// Where Redis keeps revocations.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// The edge's Redis.
    pub redis: SharedRedis,
    /// `<prefix>revoked`.
    pub key: String,
}

impl RedisTarget {
    /// The revocation set in `redis`.
    pub fn new(redis: SharedRedis) -> Self {
        let key = redis.key(REDIS_REVOKED_SUFFIX);
        Self { redis, key }
    }

    /// Records `jti` (valid until `exp`) in Redis; returns how many
    /// revocations the set now holds.
    pub async fn record(&self, jti: &str, exp: Option<i64>) -> Result<u64, JwtError> {
        let mut conn = self.redis.conn().await?;
        let script = redis::Script::new(
            r"redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
              redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
              local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
              if top[2] then redis.call('EXPIREAT', KEYS[1], math.floor(tonumber(top[2])) + 60) end
              return redis.call('ZCARD', KEYS[1])",
        );
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.key)
            .arg(exp.unwrap_or(FOREVER))
            .arg(jti)
            .arg(now_secs());
        Ok(self
            .redis
            .bounded(invocation.invoke_async::<u64>(&mut conn))
            .await?)
    }

    /// The `jti`s of unexpired revoked tokens.
    pub async fn read(&self) -> Result<HashSet<String>, JwtError> {
        let mut conn = self.redis.conn().await?;
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&self.key)
            .arg(format!("({}", now_secs()))
            .arg("+inf");
        let list = self
            .redis
            .bounded(cmd.query_async::<Vec<String>>(&mut conn))
            .await?;
        Ok(list.into_iter().collect())
    }
}

/// The revocation lists a verifier checks.
pub struct Revocations {
    file: Option<PathBuf>,
    from_file: ArcSwap<FileList>,
    bad_note: Mutex<Option<[u8; 32]>>,
    pub(crate) redis: Option<RedisTarget>,
    from_redis: ArcSwap<RedisList>,
    fail_closed: bool,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("file", &self.file)
            .field("redis", &self.redis.as_ref().map(|r| &r.key))
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// No revocation list at all.
    pub fn none() -> Self {
        Self {
            file: None,
            from_file: ArcSwap::from_pointee(FileList::default()),
            bad_note: Mutex::new(None),
            redis: None,
            from_redis: ArcSwap::from_pointee(RedisList::default()),
            fail_closed: false,
        }
    }

    /// The file of `config` (read now) and the set in the edge's `redis`
    /// (read by the background task).
    pub fn from_config(config: &Config, redis: Option<SharedRedis>) -> Result<Self, JwtError> {
        let path = config.jwt.revocation_path(&config.edge.state_dir());
        let list = match read_optional(&path)? {
            Some(bytes) => parse_list(&bytes, &path),
            None => FileList::default(),
        };
        Ok(Self {
            file: Some(path),
            from_file: ArcSwap::from_pointee(list),
            bad_note: Mutex::new(None),
            redis: redis.map(RedisTarget::new),
            from_redis: ArcSwap::from_pointee(RedisList::default()),
            fail_closed: config.limits.on_backend_failure == BackendFailure::FailClosed,
        })
    }

    /// `Err(Revoked)` when `jti` is on a list; `Err(RevocationUnknown)` when
    /// Redis is stale and the operator chose to fail closed.
    pub fn check(&self, jti: &str) -> Result<(), AuthError> {
        if self.from_file.load().jtis.contains(jti) {
            return Err(AuthError::Revoked);
        }
        if self.redis.is_some() {
            let list = self.from_redis.load();
            if list.jtis.contains(jti) {
                return Err(AuthError::Revoked);
            }
            let fresh = list
                .read_at
                .is_some_and(|t| t.elapsed() <= REVOCATION_MAX_STALENESS);
            if !fresh && self.fail_closed {
                return Err(AuthError::RevocationUnknown);
            }
        }
        Ok(())
    }

    /// Re-reads the file if it changed.
    pub fn reload_file(&self) {
        let Some(path) = &self.file else { return };
        let current = self.from_file.load();
        match read_optional(path) {
            Ok(Some(bytes)) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if digest != current.digest {
                    let list = parse_list(&bytes, path);
                    tracing::info!(
                        file = %path.display(),
                        revoked = list.jtis.len(),
                        "token revocation list reloaded"
                    );
                    self.from_file.store(Arc::new(list));
                }
            }
            Ok(None) => {
                if !current.jtis.is_empty() && self.note_bad([0; 32]) {
                    tracing::error!(
                        file = %path.display(),
                        revoked = current.jtis.len(),
                        "the token revocation file has disappeared; keeping the last list"
                    );
                }
            }
            Err(error) => {
                if self.note_bad([1; 32]) {
                    tracing::error!(%error, "cannot read the token revocation file; keeping the last list");
                }
            }
        }
    }

    fn note_bad(&self, digest: [u8; 32]) -> bool {
        match self.bad_note.lock() {
            Ok(mut bad) => bad.replace(digest) != Some(digest),
            Err(_) => true,
        }
    }

    /// The revocation file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Stores a fresh read of Redis.
    pub(crate) fn store_redis(&self, jtis: HashSet<String>) {
        self.from_redis.store(Arc::new(RedisList {
            jtis,
            read_at: Some(Instant::now()),
        }));
    }
}

/// Reads the lines of a revocation file, skipping (and logging) bad ones
/// and entries whose token has expired.
fn parse_list(bytes: &[u8], path: &Path) -> FileList {
    let now = now_secs();
    let mut jtis = HashSet::new();
    let text = String::from_utf8_lossy(bytes);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<Revocation>(line) {
            Ok(entry) if entry.exp.is_none_or(|exp| exp >= now) => {
                jtis.insert(entry.jti);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                file = %path.display(),
                line = number + 1,
                %error,
                "skipping an unreadable line of the token revocation file"
            ),
        }
    }
    FileList {
        jtis,
        digest: Sha256::digest(bytes).into(),
    }
}

/// Adds `entry` to the file at `path` (created 0600 if missing): rewrites it
/// atomically without entries whose token has expired and without an older
/// entry for the same `jti`; lines it cannot read are kept as they are.
/// Returns how many entries the file now holds.
pub fn record_in_file(path: &Path, entry: &Revocation) -> Result<usize, JwtError> {
    let now = now_secs();
    let existing = read_optional(path)?.unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for line in String::from_utf8_lossy(&existing).lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_str::<Revocation>(trimmed) {
            Ok(old) if old.jti == entry.jti => {}
            Ok(old) if old.exp.is_some_and(|exp| exp < now) => {}
            Ok(old) => {
                seen.insert(old.jti.clone(), ());
                lines.push(trimmed.to_owned());
            }
            Err(_) => lines.push(trimmed.to_owned()),
        }
    }
    let json = serde_json::to_string(entry).map_err(|e| JwtError::Refused(e.to_string()))?;
    lines.push(json);
    let file_err = |action, source| JwtError::File {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_private_dir(dir)
            .map_err(|e| file_err("cannot create the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut text = lines.join("\n");
    text.push('\n');
    fsutil::write_private(&tmp, text.as_bytes()).map_err(|e| file_err("cannot write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err("cannot replace", e))?;
    Ok(seen.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(jti: &str, exp: Option<i64>) -> Revocation {
        Revocation {
            jti: jti.into(),
            exp,
            sub: Some("alice".into()),
            revoked_at: now_secs(),
        }
    }

    #[test]
    fn file_round_trip_prunes_expired_and_keeps_unknown_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("revoked.jsonl");
        let now = now_secs();
        std::fs::write(
            &path,
            format!(
                "{}\nnot json\n{}\n",
                serde_json::to_string(&entry("old", Some(now - 10))).expect("json"),
                serde_json::to_string(&entry("keep", None)).expect("json"),
            ),
        )
        .expect("seed");
        assert_eq!(
            record_in_file(&path, &entry("new", Some(now + 60))).expect("record"),
            2
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("\"old\""), "{text}");
        assert!(text.contains("not json") && text.contains("keep") && text.contains("new"));
        let list = parse_list(text.as_bytes(), &path);
        let mut got: Vec<_> = list.jtis.into_iter().collect();
        got.sort();
        assert_eq!(got, ["keep", "new"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn check_file_list_and_fail_closed_redis() {
        let revocations = Revocations::none();
        revocations.from_file.store(Arc::new(FileList {
            jtis: ["bad".to_owned()].into(),
            digest: [0; 32],
        }));
        assert_eq!(revocations.check("bad"), Err(AuthError::Revoked));
        assert_eq!(revocations.check("good"), Ok(()));
        let mut closed = Revocations::none();
        closed.redis = Some(RedisTarget::new(
            SharedRedis::new("redis://127.0.0.1:1", "p:").expect("url"),
        ));
        closed.fail_closed = true;
        assert_eq!(closed.check("good"), Err(AuthError::RevocationUnknown));
        closed.store_redis(["r".to_owned()].into());
        assert_eq!(closed.check("good"), Ok(()));
        assert_eq!(closed.check("r"), Err(AuthError::Revoked));
    }
}
