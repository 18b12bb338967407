//! The core's Unix socket, with real sockets in a temporary directory: the
//! socket is 0660 and a directory the core creates 0750 whatever the umask
//! (the real binary started under `umask 000` and `umask 077`), the health
//! probe answers over it, a directory every user can write (sticky or not)
//! is refused naming `core.listen`, a stale socket is replaced and a live
//! one is not. Every wait is bounded; readiness is read from the log.

mod support;

use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    process::{Child, Command},
    sync::mpsc,
};
use support::{BIN, drain, read_until, sigterm, spawn_logged, wait_exit};
use vibectl_core::CoreListener;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `vibectl-core serve` under `umask`, its stderr read line by line.
fn spawn_serve(umask: &str, config: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    spawn_logged(
        Command::new("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), BIN])
            .args(["serve", "--config", &config.display().to_string()])
            .args(["--log-level", "info"])
            .args(extra),
    )
}

#[test]
fn the_socket_is_0660_and_a_new_directory_0750_whatever_the_umask() {
    for umask in ["000", "077"] {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("run");
        let socket = dir.join("core.sock");
        let address = format!("unix:{}", socket.display());
        let config = home.path().join("config.toml");
        std::fs::write(&config, format!("[core]\nlisten = \"{address}\"\n")).expect("config");

        let (child, lines) = spawn_serve(umask, &config, &[]);
        let mut log = String::new();
        assert!(
            read_until(&lines, "vibectl-core serving", &mut log),
            "umask {umask}: no 'serving' line in time; log so far:\n{log}"
        );
        // The address logged is the socket's, not the name it was bound under.
        assert!(log.contains(&format!("listen={address}")), "{log}");
        let meta = std::fs::symlink_metadata(&socket).expect("socket");
        assert!(meta.file_type().is_socket(), "umask {umask}");
        assert_eq!(mode(&socket), 0o660, "umask {umask}: socket mode");
        assert_eq!(mode(&dir), 0o750, "umask {umask}: directory mode");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["core.sock"], "umask {umask}: nothing else left");

        // The pod's exec probe, over the socket.
        let health = Command::new(BIN)
            .args(["health", "--address", &address, "--timeout", "5s"])
            .output()
            .expect("health");
        assert!(
            health.status.success(),
            "umask {umask}: {}",
            String::from_utf8_lossy(&health.stderr)
        );

        sigterm(&child);
        let status = wait_exit(child);
        let log = log + &drain(&lines);
        assert!(status.success(), "umask {umask}: {status:?}\n{log}");
        assert!(
            !socket.exists(),
            "umask {umask}: socket removed at shutdown"
        );
    }
}

#[test]
fn a_directory_every_user_can_write_is_refused_naming_the_config_key() {
    let home = tempfile::tempdir().expect("tempdir");
    let open = home.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    set_mode(&open, 0o777);
    let socket = open.join("core.sock");
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[core]\nlisten = \"unix:{}\"\n", socket.display()),
    )
    .expect("config");
    let (child, lines) = spawn_serve("022", &config, &[]);
    let status = wait_exit(child);
    let log = drain(&lines);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("core.listen")
            && log.contains(&open.display().to_string())
            && log.contains("writable by every local user (mode 0777)"),
        "{log}"
    );
    assert!(!socket.exists(), "no socket made");
}

#[tokio::test]
async fn a_sticky_bit_is_no_excuse() {
    let home = tempfile::tempdir().expect("tempdir");
    set_mode(home.path(), 0o1777);
    let socket = home.path().join("core.sock");
    let err = CoreListener::bind(&format!("unix:{}", socket.display()))
        .await
        .expect_err("a world-writable directory, sticky or not, is refused");
    let text = err.to_string();
    assert!(
        text.contains("core.listen") && text.contains("mode 1777"),
        "{text}"
    );
    assert!(!socket.exists());
    set_mode(home.path(), 0o700);
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let socket = home.path().join("core.sock");
    let address = format!("unix:{}", socket.display());
    // Left by a core that crashed: bound, then closed without removal.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let first = CoreListener::bind(&address).await.expect("stale replaced");
    assert_eq!(first.local_addr_string(), address);
    assert_eq!(mode(&socket), 0o660);
    tokio::net::UnixStream::connect(&socket)
        .await
        .expect("the new socket answers");

    // A second core on the same path must not take the first one's socket.
    let err = CoreListener::bind(&address)
        .await
        .expect_err("a live socket is not replaced");
    assert!(
        err.to_string().contains("a process is listening on it"),
        "{err}"
    );
    tokio::net::UnixStream::connect(&socket)
        .await
        .expect("the first core still answers at the path");
    drop(first);
}
