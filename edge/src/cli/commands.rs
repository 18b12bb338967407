//! The one-shot commands `generate-certs` and `init-config` (tokens: [`super::token`]).

use crate::{
    EdgeError, fsutil,
    tls::{SelfSigned, self_signed},
};
use std::path::{Path, PathBuf};
use vibectl_config::{Config, DEFAULT_CONFIG_TOML, defaults};

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

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::default();
        config.edge.state_dir = Some(dir.to_owned());
        config
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
