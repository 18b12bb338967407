//! The one-shot commands: `generate-token`, `generate-certs`, `init-config`.

use crate::{
    EdgeError, fsutil,
    jwt::{SecretEnv, lookup_secret, mint_token},
    tls::{SelfSigned, self_signed},
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};
use vibectl_config::{Config, DEFAULT_CONFIG_TOML, defaults};

/// Mints a token for `subject` with the edge's secret (looked up as `serve`
/// does, so both agree; generated and saved if there is none yet) and
/// issuer, valid `expires_in` (default `jwt.default_expiry`). With
/// `output`, writes it there (mode 0600) and returns it too.
pub fn generate_token(
    config: &Config,
    env: &SecretEnv,
    subject: &str,
    expires_in: Option<Duration>,
    output: Option<&Path>,
) -> Result<String, EdgeError> {
    if subject.trim().is_empty() {
        return Err(EdgeError::TokenSigning(
            "the subject must not be empty".to_owned(),
        ));
    }
    let (secret, source) = lookup_secret(env, &config.jwt, &config.edge.state_dir())?;
    tracing::info!(%source, "JWT secret");
    let lifetime = expires_in.unwrap_or(config.jwt.default_expiry);
    let token = mint_token(&secret, &config.jwt.issuer, subject, lifetime)?;
    if let Some(path) = output {
        fsutil::write_private(path, format!("{token}\n").as_bytes()).map_err(|source| {
            EdgeError::File {
                action: "cannot write",
                path: path.to_owned(),
                source,
            }
        })?;
    }
    Ok(token)
}

/// Generates (or refreshes) the self-signed CA and server certificate in
/// `tls.self_signed.dir` or `<state_dir>/certs`, for `edge.hostnames` plus
/// `extra_hostnames`. With `force`, replaces the CA too.
pub fn generate_certs(
    config: &Config,
    extra_hostnames: &[String],
    force: bool,
) -> Result<SelfSigned, EdgeError> {
    let opts = config.tls.self_signed.clone().unwrap_or_default();
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| config.edge.state_dir().join("certs"));
    let mut hostnames = config.edge.hostnames.clone();
    hostnames.extend(extra_hostnames.iter().cloned());
    Ok(self_signed::ensure(
        &dir,
        &hostnames,
        opts.validity_days,
        force,
    )?)
}

/// Writes the annotated default configuration to `output` (default
/// `<state dir>/config.toml`), refusing to overwrite unless `force`.
pub fn init_config(output: Option<&Path>, force: bool) -> Result<PathBuf, EdgeError> {
    let path = output.map_or_else(defaults::config_file, Path::to_owned);
    if path.exists() && !force {
        return Err(EdgeError::FileExists { path });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_private_dir(parent).map_err(|source| EdgeError::File {
            action: "cannot create directory",
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(&path, DEFAULT_CONFIG_TOML).map_err(|source| EdgeError::File {
        action: "cannot write",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::TokenVerifier;
    use std::os::unix::fs::PermissionsExt;

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::default();
        config.edge.state_dir = Some(dir.to_owned());
        config
    }

    #[test]
    fn token_file_is_private_and_verifies_with_the_saved_secret() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = config_in(tmp.path());
        let out = tmp.path().join("dev.jwt");
        let env = SecretEnv::default();
        let token = generate_token(
            &config,
            &env,
            "dev-user",
            Some(Duration::from_secs(3600)),
            Some(&out),
        )
        .expect("token");
        assert_eq!(std::fs::read_to_string(&out).expect("read").trim(), token);
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // `serve` finds the same (generated, saved) secret.
        let (secret, _) = lookup_secret(&env, &config.jwt, tmp.path()).expect("secret");
        let claims = TokenVerifier::new(&secret, &config.jwt)
            .verify(&token)
            .expect("valid");
        assert_eq!(claims.sub, "dev-user");
        assert!(claims.jti.is_some());
    }

    #[test]
    fn init_config_never_overwrites_without_force() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("sub/config.toml");
        init_config(Some(&path), false).expect("first");
        std::fs::write(&path, "# mine\n").expect("edit");
        let err = init_config(Some(&path), false).expect_err("exists");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "# mine\n");
        init_config(Some(&path), true).expect("forced");
        let text = std::fs::read_to_string(&path).expect("read");
        Config::from_toml(&text, &path).expect("written config parses");
    }

    #[test]
    fn generate_certs_adds_hostnames() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut config = config_in(tmp.path());
        config.edge.hostnames = vec!["a.example".into()];
        let made = generate_certs(&config, &["b.example".into()], false).expect("certs");
        assert_eq!(made.dir, tmp.path().join("certs"));
        let again = generate_certs(&config, &["b.example".into()], false).expect("again");
        assert!(!again.leaf_generated);
        let forced = generate_certs(&config, &["b.example".into()], true).expect("forced");
        assert!(forced.ca_generated);
    }
}
