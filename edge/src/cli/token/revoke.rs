//! `revoke-token`: into the revocation file and, with the Redis limits
//! backend, Redis.

use super::*;
use crate::{
    EdgeError,
    auth::{
        JwtError, now_secs,
        revocation::{self, RedisTarget, Revocation},
    },
    shared_redis::SharedRedis,
    tls::files::unix_to_rfc3339,
};
use serde_json::Value;
use std::path::PathBuf;
use vibectl_config::Config;

/// What `revoke-token` did.
#[derive(Debug)]
pub struct Revoked {
    /// The entry recorded.
    pub entry: Revocation,
    /// The file written, and how many entries it holds.
    pub file: (PathBuf, usize),
    /// Whether Redis recorded it too (`None`: not configured).
    pub redis: Option<u64>,
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let until = self.entry.exp.map_or_else(
            || "for good (its expiry is unknown)".to_owned(),
            |exp| format!("until {}", unix_to_rfc3339(exp)),
        );
        writeln!(
            f,
            "revoked jti `{}`{} {until}",
            self.entry.jti,
            self.entry
                .sub
                .as_deref()
                .map_or(String::new(), |s| format!(" (sub `{s}`)"))
        )?;
        writeln!(
            f,
            "  file: {} ({}; edges re-read it within jwt.reload_interval)",
            self.file.0.display(),
            entries(self.file.1)
        )?;
        match self.redis {
            Some(n) => writeln!(
                f,
                "  redis: recorded ({}; every edge sees it within 2 s)",
                entries(usize::try_from(n).unwrap_or(usize::MAX))
            ),
            None => writeln!(f, "  redis: not configured ([limits] backend = \"memory\")"),
        }
    }
}

/// `1 revocation`, `2 revocations`.
fn entries(n: usize) -> String {
    if n == 1 {
        "1 revocation".to_owned()
    } else {
        format!("{n} revocations")
    }
}

/// Revokes a token (by `--jti`, or the token's own `jti` and `exp`).
pub async fn revoke(config: &Config, args: &RevokeArgs) -> Result<Revoked, EdgeError> {
    let now = now_secs();
    let entry = match &args.jti {
        Some(jti) => {
            let jti = jti.trim();
            if jti.is_empty() {
                return Err(refused("--jti must not be empty"));
            }
            let keep = args.keep_for.or(config.jwt.max_lifetime());
            Revocation {
                jti: jti.to_owned(),
                exp: keep
                    .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
                sub: None,
                revoked_at: now,
            }
        }
        None => {
            let token = read_token(&args.source)?;
            let (_, claims) = unverified_parts(&token)?;
            let jti = claims.get("jti").and_then(Value::as_str).ok_or_else(|| {
                refused(
                    "this token has no `jti`, so it cannot be revoked on its own: retire the key \
                     that signed it (`keys retire`) or change the secret",
                )
            })?;
            Revocation {
                jti: jti.to_owned(),
                exp: claims.get("exp").and_then(Value::as_i64),
                sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
                revoked_at: now,
            }
        }
    };
    let path = config.jwt.revocation_path(&config.edge.state_dir());
    let count = revocation::record_in_file(&path, &entry)?;
    let redis = match SharedRedis::from_limits(&config.limits).map_err(JwtError::from)? {
        Some(redis) => Some(
            RedisTarget::new(redis)
                .record(&entry.jti, entry.exp)
                .await?,
        ),
        None => None,
    };
    Ok(Revoked {
        entry,
        file: (path, count),
        redis,
    })
}
