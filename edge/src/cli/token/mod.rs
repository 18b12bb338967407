//! The token commands: `generate-token` (signed with the default key of the
//! key set, a `--kid`, or the legacy HS256 secret), `token inspect` (the
//! header and claims, and whether this edge would accept the token and
//! why, by the real verifier), `revoke-token` (file and, with the Redis
//! limits backend, Redis). Tokens are read from a file or an environment
//! variable, never from the command line, and never printed back; token
//! files are written 0600. A token in a URL (`vibectl-server://<jwt>@host`)
//! is refused with the reason.

use crate::auth::now_secs;
use crate::{
    EdgeError,
    auth::{
        JwtError, KeySet, KeyStatus, SecretEnv, SigningKey, TokenSpec, keys::KeyAlg, lookup_secret,
        mint,
    },
    fsutil,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use vibectl_config::Config;

use super::{duration::show_lifetime, parse_expires_in};

mod inspect;
mod revoke;

pub use inspect::inspect;
pub use revoke::revoke;

/// `generate-token`.
#[derive(Debug, Clone, Args)]
pub struct GenerateTokenArgs {
    /// The token's `sub` (who it is for).
    pub subject: String,
    /// Lifetime: 30d, 12h, 90m, 45s, 2w (default: jwt.default_expiry; at
    /// most jwt.max_lifetime).
    #[arg(long, value_parser = parse_expires_in, value_name = "DURATION")]
    pub expires_in: Option<Duration>,
    /// Write the token to FILE (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sign with this key of the key set (default: jwt.default_kid, else the
    /// legacy HS256 secret, as vibectl-server does).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// The private key of --kid (default: <jwt.keys_dir>/<KID>.pem, or .key for HS256).
    #[arg(long, value_name = "FILE", requires = "kid")]
    pub key_file: Option<PathBuf>,
    /// Restrict the token to these models (ids or aliases; comma-separated
    /// or repeated). Default: any model.
    #[arg(long = "models", value_name = "MODEL", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Make the token valid only from this long after now (`nbf`).
    #[arg(long, value_parser = parse_expires_in, value_name = "DURATION")]
    pub not_before: Option<Duration>,
}

/// Where a command reads a token from (never the command line).
#[derive(Debug, Clone, Default, Args)]
pub struct TokenSource {
    /// Read the token from FILE (as `vibectl setup-proxy --jwt-path` does).
    #[arg(long, value_name = "FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// Read the token from the environment variable VAR.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
}

/// `token …`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Show a token's header and claims, and whether this edge would accept it.
    Inspect {
        /// The token.
        #[command(flatten)]
        source: TokenSource,
        /// Check a `vibectl-server://…` URL: one with a token in it is refused.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// `revoke-token`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The `jti` to revoke (or give the token itself with --token-file/--token-env).
    #[arg(long, value_name = "JTI")]
    pub jti: Option<String>,
    /// The token to revoke.
    #[command(flatten)]
    pub source: TokenSource,
    /// With --jti: how long to keep the revocation (the token's remaining
    /// life; default jwt.max_lifetime, else forever).
    #[arg(long, value_parser = parse_expires_in, value_name = "DURATION", requires = "jti")]
    pub keep_for: Option<Duration>,
}

fn refused(message: impl Into<String>) -> EdgeError {
    EdgeError::Jwt(JwtError::Refused(message.into()))
}

/// The signing key `generate-token` uses (see [`GenerateTokenArgs::kid`]).
pub fn signing_key(
    config: &Config,
    env: &SecretEnv,
    kid: Option<&str>,
    key_file: Option<&Path>,
) -> Result<SigningKey, EdgeError> {
    let state_dir = config.edge.state_dir();
    let Some(kid) = kid.or(config.jwt.default_kid.as_deref()) else {
        let (secret, source) = lookup_secret(env, &config.jwt, &state_dir)?;
        tracing::info!(%source, "signing with the HS256 secret (no kid)");
        return Ok(SigningKey::legacy(&secret));
    };
    let jwks = config.jwt.jwks_path(&state_dir);
    let set = KeySet::read(&jwks)?.unwrap_or_default();
    let listed = set.get(kid);
    if listed.is_some_and(|k| k.status == KeyStatus::Retired) {
        return Err(refused(format!(
            "key `{kid}` is retired: tokens signed with it are refused"
        )));
    }
    let keys_dir = config.jwt.keys_path(&state_dir);
    let candidates: Vec<KeyAlg> = match listed {
        Some(key) => vec![key.alg],
        None => {
            tracing::warn!(kid, file = %jwks.display(), "key not in the local key set: make sure the edges' key set has it");
            vec![KeyAlg::ES256, KeyAlg::EdDSA, KeyAlg::RS256, KeyAlg::HS256]
        }
    };
    let mut last = None;
    for alg in candidates {
        let path = key_file
            .map(Path::to_owned)
            .unwrap_or_else(|| private_key_path(&keys_dir, kid, alg));
        if !path.exists() && key_file.is_none() {
            last = Some(refused(format!(
                "no private key for `{kid}` at {}: it lives on the host where `keys generate` \
                 ran (or pass --key-file)",
                path.display()
            )));
            continue;
        }
        match SigningKey::from_file(&path, kid, alg) {
            Ok(key) => return Ok(key),
            Err(e) => last = Some(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| refused(format!("no usable private key for `{kid}`"))))
}

/// Where `keys generate` keeps the private key of `kid`.
pub fn private_key_path(keys_dir: &Path, kid: &str, alg: KeyAlg) -> PathBuf {
    let ext = if alg == KeyAlg::HS256 { "key" } else { "pem" };
    keys_dir.join(format!("{kid}.{ext}"))
}

/// Mints a token as `generate-token` does; with `output`, writes it there
/// (0600) too. Refuses a lifetime beyond `jwt.max_lifetime`.
pub fn generate_token(
    config: &Config,
    env: &SecretEnv,
    args: &GenerateTokenArgs,
) -> Result<String, EdgeError> {
    let lifetime = args.expires_in.unwrap_or(config.jwt.default_expiry);
    if let Some(max) = config.jwt.max_lifetime()
        && lifetime > max
    {
        return Err(refused(format!(
            "a lifetime of {} exceeds jwt.max_lifetime ({}); the edge would refuse the token",
            show_lifetime(lifetime),
            show_lifetime(max)
        )));
    }
    let key = signing_key(config, env, args.kid.as_deref(), args.key_file.as_deref())?;
    let not_before = args
        .not_before
        .map(|d| now_secs().saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    let models = (!args.models.is_empty()).then(|| {
        args.models
            .iter()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    });
    let spec = TokenSpec {
        subject: args.subject.clone(),
        lifetime,
        issuer: config.jwt.issuer.clone(),
        audience: config.jwt.audience.clone(),
        not_before,
        models,
    };
    let token = mint(&key, &spec)?;
    if let Some(path) = &args.output {
        fsutil::write_private(path, format!("{token}\n").as_bytes()).map_err(|source| {
            EdgeError::File {
                action: "cannot write",
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(token)
}

/// Refuses a URL that carries a token (or any credential) in its user
/// part, saying why and what to do instead.
pub fn check_url(url: &str) -> Result<(), EdgeError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(refused(
            "this URL carries a token (the part before `@`): a URL ends up in shell history, \
             process lists, logs and screenshots. Remove it from the URL, store the token in a \
             file readable only by you (chmod 600) and pass it with `--jwt-path FILE` (vibectl \
             setup-proxy configure PROFILE_NAME vibectl-server://HOST:PORT --jwt-path FILE). If the URL was \
             shared or logged, revoke the token (`vibectl-edge revoke-token --token-file FILE`) \
             and get a new one.",
        ));
    }
    Ok(())
}

/// Reads a token from its source: the file's or variable's content, trimmed,
/// with an optional `Bearer ` prefix removed.
pub fn read_token(source: &TokenSource) -> Result<String, EdgeError> {
    let text = match (&source.token_file, &source.token_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| EdgeError::File {
                action: "cannot read the token file",
                path: path.clone(),
                source,
            })?;
            warn_if_readable_by_others(path);
            text
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| refused(format!("the environment variable {var} is not set")))?,
        (None, None) => {
            return Err(refused(
                "give the token with --token-file FILE or --token-env VAR (never on the command line)",
            ));
        }
    };
    let token = text.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    if token.contains("://") {
        check_url(token)?;
    }
    if token.is_empty() {
        return Err(refused("the token source is empty"));
    }
    Ok(token.to_owned())
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} is readable by other users; a token file should be mode 0600 (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
}

/// A token's two JSON parts (unverified: for display and revocation only).
fn unverified_parts(token: &str) -> Result<(Value, Value), EdgeError> {
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> Result<Value, EdgeError> {
        let part = parts
            .next()
            .ok_or_else(|| refused(format!("not a JWT: no {what}")))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| refused(format!("not a JWT: the {what} is not base64url")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| refused(format!("not a JWT: the {what} is not JSON")))
    };
    Ok((decode("header")?, decode("claims")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_user_part_are_refused() {
        assert!(check_url("vibectl-server://llm.example.com:443").is_ok());
        assert!(check_url("vibectl-server://host/path@x").is_ok());
        let err = check_url("vibectl-server://eyJhbGciOi.eyJzdWIi.c2ln@host:443")
            .expect_err("token in URL")
            .to_string();
        assert!(err.contains("--jwt-path"), "{err}");
        assert!(!err.contains("eyJhbGciOi"), "never echoed: {err}");
    }

    #[test]
    fn token_sources() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("t.jwt");
        std::fs::write(&file, "Bearer a.b.c\n").expect("write");
        let source = TokenSource {
            token_file: Some(file.clone()),
            token_env: None,
        };
        assert_eq!(read_token(&source).expect("read"), "a.b.c");
        std::fs::write(&file, "vibectl-server://a.b.c@host:1\n").expect("write");
        assert!(read_token(&source).is_err());
        assert!(read_token(&TokenSource::default()).is_err());
    }
}
