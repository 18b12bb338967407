//! A real `redis-server` on a Unix socket in a temporary directory (no TCP
//! port to race for), killed when dropped. Needs the Debian package
//! `redis-server` (`scripts/test` installs it).

use crate::server_process::ServerProcess;
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// A running redis-server.
pub struct RedisServer {
    server: ServerProcess,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits (bounded) until it answers `PING`; fails with
    /// its log if it exits first.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("redis.sock");
        Self {
            server: spawn(dir.path(), &sock).await,
            sock,
            _dir: dir,
        }
    }

    /// Kills it and starts a new one on the same socket (empty, as a
    /// Redis without persistence comes back), once it answers `PING`.
    pub async fn restart(&mut self) {
        self.server.kill();
        self.server = spawn(self._dir.path(), &self.sock).await;
    }

    /// `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.sock.display())
    }

    /// Kills it now.
    pub fn kill(&mut self) {
        self.server.kill();
    }
}

async fn spawn(dir: &Path, sock: &Path) -> ServerProcess {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(sock);
    ServerProcess::start_fixed("redis-server", &dir.join("redis.log"), &mut command, || {
        pongs(sock)
    })
    .await
}

/// Whether the server at `sock` answers `PING` with `+PONG`.
fn pongs(sock: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
