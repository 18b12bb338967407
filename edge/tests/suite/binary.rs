//! The `vibectl-edge` binary as the CLI tests run it.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

/// The binary with a private state dir and nothing from the environment of
/// the test run (no config file, no JWT secret, no `RUST_LOG`).
pub fn edge(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vibectl-edge"));
    cmd.env("VIBECTL_PROXY_HOME", state)
        .env_remove("VIBECTL_PROXY_CONFIG")
        .env_remove("VIBECTL_JWT_SECRET")
        .env_remove("VIBECTL_JWT_SECRET_FILE")
        .env_remove("RUST_LOG");
    cmd
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}
