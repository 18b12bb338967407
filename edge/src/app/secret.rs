//! The legacy HS256 secret, looked up (or generated and saved) in one
//! place for every serving mode.

use crate::{
    EdgeError,
    auth::{SecretEnv, lookup_secret},
};
use vibectl_config::{Config, Secret};

/// The secret the verifier needs: none without auth, and none with
/// `jwt.default_kid` (tokens without `kid` then verify against the key
/// set, so no legacy secret is looked up, let alone generated).
pub(super) fn jwt_secret(config: &Config, env: &SecretEnv) -> Result<Option<Secret>, EdgeError> {
    if !config.edge.require_auth || config.jwt.default_kid.is_some() {
        return Ok(None);
    }
    let (secret, source) = lookup_secret(env, &config.jwt, &config.edge.state_dir())?;
    tracing::info!(%source, "JWT secret");
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_kid_means_no_legacy_secret_is_looked_up_or_written() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.edge.state_dir = Some(state.path().to_owned());
        config.jwt.default_kid = Some("main".to_owned());
        let env = SecretEnv::default();
        assert!(jwt_secret(&config, &env).expect("no lookup").is_none());
        assert_eq!(std::fs::read_dir(state.path()).expect("dir").count(), 0);
        config.jwt.default_kid = None;
        assert!(jwt_secret(&config, &env).expect("generated").is_some());
        assert!(state.path().join("jwt-secret").exists());
    }
}
