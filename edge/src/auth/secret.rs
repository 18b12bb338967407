//! Where the HS256 secret comes from, in vibectl-server's order: env
//! `VIBECTL_JWT_SECRET`, env `VIBECTL_JWT_SECRET_FILE`, `jwt.secret_key`,
//! `jwt.secret_key_file`, else a secret generated once (32 random bytes,
//! URL-safe base64) and saved as `<state_dir>/jwt-secret` (0600). The
//! environment is passed in ([`SecretEnv`]) so tests never mutate the
//! process environment. The source is logged, never the value.

use crate::{auth::fingerprint, fsutil};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use std::{
    fmt,
    path::{Path, PathBuf},
};
use vibectl_config::{
    JwtConfig, Secret,
    defaults::{JWT_SECRET_ENV, JWT_SECRET_FILE_ENV, JWT_SECRET_FILE_NAME},
};

/// The environment variables the lookup reads.
#[derive(Debug, Clone, Default)]
pub struct SecretEnv {
    /// `VIBECTL_JWT_SECRET` (the secret itself).
    pub secret: Option<Secret>,
    /// `VIBECTL_JWT_SECRET_FILE` (a file holding it).
    pub secret_file: Option<PathBuf>,
}

impl SecretEnv {
    /// Reads both variables from the process environment; empty means unset.
    pub fn from_process() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            secret: var(JWT_SECRET_ENV).map(Secret::new),
            secret_file: var(JWT_SECRET_FILE_ENV).map(PathBuf::from),
        }
    }
}

/// Where the secret in force came from (safe to log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `VIBECTL_JWT_SECRET`.
    Env,
    /// The file named by `VIBECTL_JWT_SECRET_FILE`.
    EnvFile(PathBuf),
    /// `jwt.secret_key`.
    Config,
    /// `jwt.secret_key_file`.
    ConfigFile(PathBuf),
    /// `<state_dir>/jwt-secret`, generated on an earlier run.
    Saved(PathBuf),
    /// `<state_dir>/jwt-secret`, generated now.
    Generated(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => write!(f, "env {JWT_SECRET_ENV}"),
            Self::EnvFile(p) => write!(f, "env {JWT_SECRET_FILE_ENV} ({})", p.display()),
            Self::Config => f.write_str("config jwt.secret_key"),
            Self::ConfigFile(p) => write!(f, "config jwt.secret_key_file ({})", p.display()),
            Self::Saved(p) => write!(f, "saved generated secret ({})", p.display()),
            Self::Generated(p) => write!(f, "newly generated secret, saved to {}", p.display()),
        }
    }
}

/// The secret could not be had. Messages name the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A secret file could not be read or written.
    #[error("{action} JWT secret file {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret file is empty.
    #[error("JWT secret file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Finds the HS256 secret (see the module doc for the order), generating and
/// saving one under `state_dir` when no source names one. Its fingerprint is
/// remembered in `state_dir` ([`fingerprint`]): a secret that differs from
/// the one used before, or a saved secret that vanished and was generated
/// anew, is logged loudly, since every token made before stops working.
pub fn lookup_secret(
    env: &SecretEnv,
    jwt: &JwtConfig,
    state_dir: &Path,
) -> Result<(Secret, SecretSource), SecretError> {
    let (secret, source) = find_secret(env, jwt, state_dir)?;
    let fp = crate::auth::VerifyKey::legacy(secret.expose()).thumbprint;
    if let SecretSource::Generated(path) = &source
        && let Some(old) = fingerprint::recalled(state_dir, fingerprint::HS256_SECRET)
    {
        tracing::error!(
            file = %path.display(),
            old_source = %old.source,
            "THE JWT SECRET USED BEFORE (from {}) IS MISSING and a NEW one was generated: every \
             token issued before is now refused. Restore the old secret file to keep them.",
            old.source
        );
    }
    fingerprint::remember(
        state_dir,
        fingerprint::HS256_SECRET,
        &fp,
        &source.to_string(),
    );
    Ok((secret, source))
}

/// As [`lookup_secret`], but never generates one: `Ok(None)` when no source
/// names a secret and none was saved (for read-only commands such as
/// `token inspect`).
pub fn lookup_existing_secret(
    env: &SecretEnv,
    jwt: &JwtConfig,
    state_dir: &Path,
) -> Result<Option<(Secret, SecretSource)>, SecretError> {
    let configured = env.secret.as_ref().is_some_and(|s| !s.is_empty())
        || env.secret_file.is_some()
        || jwt.secret_key.as_ref().is_some_and(|s| !s.is_empty())
        || jwt.secret_key_file.is_some()
        || state_dir.join(JWT_SECRET_FILE_NAME).exists();
    if !configured {
        return Ok(None);
    }
    find_secret(env, jwt, state_dir).map(Some)
}

fn find_secret(
    env: &SecretEnv,
    jwt: &JwtConfig,
    state_dir: &Path,
) -> Result<(Secret, SecretSource), SecretError> {
    if let Some(secret) = env.secret.as_ref().filter(|s| !s.is_empty()) {
        return Ok((secret.clone(), SecretSource::Env));
    }
    if let Some(path) = &env.secret_file {
        return Ok((read_file(path)?, SecretSource::EnvFile(path.clone())));
    }
    if let Some(secret) = jwt.secret_key.as_ref().filter(|s| !s.is_empty()) {
        return Ok((secret.clone(), SecretSource::Config));
    }
    if let Some(path) = &jwt.secret_key_file {
        return Ok((read_file(path)?, SecretSource::ConfigFile(path.clone())));
    }
    let path = state_dir.join(JWT_SECRET_FILE_NAME);
    if path.exists() {
        return Ok((read_file(&path)?, SecretSource::Saved(path)));
    }
    let secret = generate();
    fsutil::create_private_dir(state_dir).map_err(|source| SecretError::File {
        action: "cannot create the directory of",
        path: path.clone(),
        source,
    })?;
    fsutil::write_private(&path, format!("{}\n", secret.expose()).as_bytes()).map_err(
        |source| SecretError::File {
            action: "cannot write",
            path: path.clone(),
            source,
        },
    )?;
    Ok((secret, SecretSource::Generated(path)))
}

/// 32 random bytes, URL-safe base64 without padding (43 characters).
fn generate() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a secret file; surrounding whitespace (a trailing newline) is not
/// part of the secret.
fn read_file(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn jwt(secret_key: Option<&str>, file: Option<PathBuf>) -> JwtConfig {
        JwtConfig {
            secret_key: secret_key.map(Secret::new),
            secret_key_file: file,
            ..JwtConfig::default()
        }
    }

    #[test]
    fn lookup_order_is_env_envfile_config_configfile_generated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, v: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, v).expect("write");
            p
        };
        let env_file = write("env-file", "from-env-file\n");
        let cfg_file = write("cfg-file", "  from-config-file  \n");
        let full_env = SecretEnv {
            secret: Some(Secret::new("from-env")),
            secret_file: Some(env_file.clone()),
        };
        let file_env = SecretEnv {
            secret: None,
            secret_file: Some(env_file.clone()),
        };
        let no_env = SecretEnv::default();
        let full_cfg = jwt(Some("from-config"), Some(cfg_file.clone()));
        let state = tmp.path().join("state");

        let got = |env: &SecretEnv, cfg: &JwtConfig| {
            let (s, src) = lookup_secret(env, cfg, &state).expect("lookup");
            (s.expose().to_owned(), src)
        };
        assert_eq!(
            got(&full_env, &full_cfg),
            ("from-env".into(), SecretSource::Env)
        );
        assert_eq!(
            got(&file_env, &full_cfg),
            (
                "from-env-file".into(),
                SecretSource::EnvFile(env_file.clone())
            )
        );
        assert_eq!(
            got(&no_env, &full_cfg),
            ("from-config".into(), SecretSource::Config)
        );
        assert_eq!(
            got(&no_env, &jwt(None, Some(cfg_file.clone()))),
            (
                "from-config-file".into(),
                SecretSource::ConfigFile(cfg_file)
            )
        );
        assert!(!state.join("jwt-secret").exists());
        let (generated, src) = got(&no_env, &jwt(None, None));
        let saved = state.join("jwt-secret");
        assert_eq!(src, SecretSource::Generated(saved.clone()));
        assert_eq!(generated.len(), 43, "32 bytes, URL-safe base64");
        assert!(URL_SAFE_NO_PAD.decode(&generated).is_ok());
        let mode = std::fs::metadata(&saved)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Generated once: the next lookup reads the same secret back.
        assert_eq!(
            got(&no_env, &jwt(None, None)),
            (generated, SecretSource::Saved(saved))
        );
    }

    #[test]
    fn a_vanished_secret_is_replaced_but_remembered() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = SecretEnv::default();
        let (first, _) = lookup_secret(&env, &jwt(None, None), tmp.path()).expect("first");
        std::fs::remove_file(tmp.path().join("jwt-secret")).expect("lose it");
        let (second, src) = lookup_secret(&env, &jwt(None, None), tmp.path()).expect("second");
        assert!(matches!(src, SecretSource::Generated(_)));
        assert_ne!(first.expose(), second.expose());
        let record = fingerprint::recalled(tmp.path(), fingerprint::HS256_SECRET).expect("kept");
        assert_eq!(
            record.fingerprint,
            crate::auth::VerifyKey::legacy(second.expose()).thumbprint
        );
        let text =
            std::fs::read_to_string(tmp.path().join("jwt-key-fingerprints.json")).expect("record");
        assert!(!text.contains(second.expose()), "only a fingerprint");
    }

    #[test]
    fn unreadable_or_empty_file_is_named_without_value() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let empty = tmp.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let env = SecretEnv {
            secret: None,
            secret_file: Some(empty.clone()),
        };
        let err = lookup_secret(&env, &JwtConfig::default(), tmp.path()).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let missing = SecretEnv {
            secret: None,
            secret_file: Some(tmp.path().join("missing")),
        };
        let err = lookup_secret(&missing, &JwtConfig::default(), tmp.path()).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn source_display_never_holds_the_value() {
        let env = SecretEnv {
            secret: Some(Secret::new("hunter2-hunter2")),
            secret_file: None,
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, src) = lookup_secret(&env, &JwtConfig::default(), tmp.path()).expect("lookup");
        assert!(!src.to_string().contains("hunter2"));
        assert!(!format!("{env:?}").contains("hunter2"));
    }
}
