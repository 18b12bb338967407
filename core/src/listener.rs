//! Where the core listens: TCP (`host:port`, loopback by default) or a Unix
//! socket (`unix:/path`). Both speak plaintext HTTP/2 (h2c).
//!
//! A Unix socket is made so that only the core's user and group can reach
//! it: the socket is 0660 whatever the umask (bound under a temporary name,
//! given its mode, then renamed into place), its directory is created 0750
//! when missing, and a directory every local user can write is refused: any
//! of them could put a socket of their own there while the core is down and
//! have the edge talk to it (a sticky bit does not prevent that). A stale
//! socket left by a crashed core is replaced; a live one is not.

use crate::error::CoreError;
use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The socket's mode: its owner and group may connect (the edge may run as
/// another user of the core's group), nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// The mode of a socket directory the core creates itself.
pub const SOCKET_DIR_MODE: u32 = 0o750;

/// How long a connection to an existing socket may take to tell a live core
/// from a stale file.
const LIVE_PROBE: Duration = Duration::from_secs(1);

/// A bound listener, ready to be passed to [`crate::serve`].
#[derive(Debug)]
pub enum CoreListener {
    /// h2c over TCP.
    Tcp(TcpListener),
    /// h2c over a Unix domain socket, and its path.
    Unix(UnixListener, PathBuf),
}

/// One accepted connection.
pub(crate) enum Accepted {
    Tcp(TcpStream, String),
    Unix(UnixStream),
}

impl CoreListener {
    /// `"host:port"` binds TCP, `"unix:/path"` binds a Unix socket (see the
    /// module's documentation: mode 0660, its directory created 0750 when
    /// missing and refused when every user can write it, a stale socket
    /// replaced; a live socket or any other file in the way is an error).
    pub async fn bind(address: &str) -> Result<Self, CoreError> {
        if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(CoreError::InvalidListenAddress {
                    address: address.to_owned(),
                    reason: "expected unix:/path/to/socket".to_owned(),
                });
            }
            let path = Path::new(path);
            let listener = bind_unix(path)
                .await
                .map_err(|source| CoreError::BindUnix {
                    path: path.to_owned(),
                    source,
                })?;
            return Ok(Self::Unix(listener, path.to_owned()));
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| CoreError::BindTcp {
                address: address.to_owned(),
                source,
            })?;
        Ok(Self::Tcp(listener))
    }

    /// `ip:port` for TCP (with the real port when bound to port 0), or
    /// `unix:/path` for a Unix socket.
    pub fn local_addr_string(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| format!("<unknown tcp address: {e}>")),
            // Not the socket's own name: it was bound under a temporary one.
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// True unless this is a TCP listener on a non-loopback address.
    pub fn is_local_only(&self) -> bool {
        match self {
            Self::Tcp(l) => l.local_addr().is_ok_and(|a| a.ip().is_loopback()),
            Self::Unix(..) => true,
        }
    }

    /// The socket file of a Unix listener, to remove at shutdown.
    pub(crate) fn unix_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Unix(_, path) => Some(path.clone()),
            Self::Tcp(_) => None,
        }
    }

    /// Waits for the next connection.
    pub(crate) async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Tokens are small writes: don't let Nagle hold them back.
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, peer.to_string()))
            }
            Self::Unix(l, _) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file (set `core.listen` to unix:/dir/core.sock)",
        ));
    };
    prepare_dir(dir)?;
    clear_the_way(path).await?;
    // Bound under a name of its own, given its mode, then renamed into
    // place: nobody ever sees the socket with the umask's mode.
    let staged = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    clear_the_way(&staged).await?;
    let listener = UnixListener::bind(&staged)?;
    let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| std::fs::rename(&staged, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    Ok(listener)
}

/// Creates the socket's directory (one level, mode 0750) when missing, and
/// refuses one that every local user can write.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SOCKET_DIR_MODE));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create its directory {}: {e}", dir.display()),
            ));
        }
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "its directory {} is writable by every local user (mode {mode:04o}), so \
                 another user could replace the socket; set `core.listen` (or --listen) \
                 to a socket in a directory only the core's user and group can write, \
                 e.g. mode 0750 (a directory that does not exist yet is created so)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Removes a stale socket at `path`; a live one (a core still serving
/// there) or any other file is an error.
async fn clear_the_way(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let probe = tokio::time::timeout(LIVE_PROBE, UnixStream::connect(path)).await;
            let live = match probe {
                Ok(Ok(_)) | Err(_) => true,
                Ok(Err(e)) => e.kind() == io::ErrorKind::WouldBlock,
            };
            if live {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a process is listening on it (another core?): stop it or choose another path",
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way; remove it or choose another path",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
