//! Where the core listens: TCP (`host:port`, loopback by default) or a Unix
//! socket (`unix:/path`). Both speak plaintext HTTP/2 (h2c).

use crate::error::CoreError;
use std::{os::unix::fs::FileTypeExt, path::Path};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound listener, ready to be passed to [`crate::serve`].
#[derive(Debug)]
pub enum CoreListener {
    /// h2c over TCP.
    Tcp(TcpListener),
    /// h2c over a Unix domain socket.
    Unix(UnixListener),
}

/// One accepted connection.
pub(crate) enum Accepted {
    Tcp(TcpStream, String),
    Unix(UnixStream),
}

impl CoreListener {
    /// `"host:port"` binds TCP, `"unix:/path"` binds a Unix socket (removing
    /// a stale socket file first; any other file in the way is an error).
    pub async fn bind(address: &str) -> Result<Self, CoreError> {
        if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(CoreError::InvalidListenAddress {
                    address: address.to_owned(),
                    reason: "expected unix:/path/to/socket".to_owned(),
                });
            }
            return bind_unix(Path::new(path)).map(Self::Unix);
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
            Self::Unix(l) => match l.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "unix:<unnamed>".to_owned(),
                },
                Err(e) => format!("<unknown unix address: {e}>"),
            },
        }
    }

    /// True unless this is a TCP listener on a non-loopback address.
    pub fn is_local_only(&self) -> bool {
        match self {
            Self::Tcp(l) => l.local_addr().is_ok_and(|a| a.ip().is_loopback()),
            Self::Unix(_) => true,
        }
    }

    /// The socket file of a Unix listener, to remove at shutdown.
    pub(crate) fn unix_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_owned)),
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
            Self::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

fn bind_unix(path: &Path) -> Result<UnixListener, CoreError> {
    let err = |source| CoreError::BindUnix {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; remove it or choose another path",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}
