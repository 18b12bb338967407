//! The Redis quota backend's connections: a small pool of plain
//! connections, each carrying one step at a time. The calling task writes
//! its request and reads the reply itself, so a step is one round trip
//! with nothing in between (a multiplexed connection hands each command to
//! a driver task and the reply back, through channels: a task switch each
//! way). A settlement never queues behind a reservation on one
//! connection, or the reverse: each step has a connection of its own.
//!
//! A connection that failed, timed out or was left mid-step (its call was
//! cancelled) is closed, never reused. One that Redis closed while it sat
//! idle (a Redis restart) is found before use, by a read that must find
//! nothing, and replaced; a request that could not even be written on a
//! reused connection is sent again on a new one (Redis never saw it).

use super::resp::{Malformed, Request, Value, parse};
use std::{io, path::PathBuf, sync::Mutex, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UnixStream},
    sync::Semaphore,
    time::timeout,
};

/// Longest one Redis step may take (once connected).
pub const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a connection attempt (with its `AUTH` and `SELECT`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections open at most (steps beyond wait for one).
const MAX_CONNECTIONS: usize = 32;

/// Where Redis listens.
#[derive(Debug, Clone)]
pub enum Addr {
    /// Host and port (the socket has `TCP_NODELAY`: a step is one small
    /// request, never held back behind the previous one's bytes).
    Tcp(String, u16),
    /// A Unix socket.
    Unix(PathBuf),
}

/// A step failed (the texts never hold the URL or its password).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// No connection.
    #[error("cannot connect to Redis: {0}")]
    Connect(io::Error),
    /// `AUTH` or `SELECT` was refused.
    #[error("Redis refused the connection's credentials or database: {0}")]
    Hello(String),
    /// The connection broke.
    #[error("the connection to Redis failed: {0}")]
    Io(#[from] io::Error),
    /// The request could not be written (Redis never saw it).
    #[error("the connection to Redis failed: {0}")]
    Unsent(io::Error),
    /// Redis closed it mid-step.
    #[error("Redis closed the connection")]
    Closed,
    /// Not RESP.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// No answer in time.
    #[error("Redis did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// A script as Redis knows it: its SHA1 and, for `NOSCRIPT`, its text.
#[derive(Debug)]
pub struct Script {
    /// The SHA1 `EVALSHA` names.
    pub hash: String,
    body: String,
}

impl Script {
    /// The script `body`.
    pub fn new(body: String) -> Self {
        Self {
            hash: redis::Script::new(&body).get_hash().to_owned(),
            body,
        }
    }
}

enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

struct Conn {
    io: Io,
    /// The request being sent.
    out: Vec<u8>,
    /// Reply bytes received and not parsed yet.
    inbuf: Vec<u8>,
}

impl Conn {
    fn new(io: Io) -> Self {
        Self {
            io,
            out: Vec::with_capacity(1024),
            inbuf: Vec::with_capacity(256),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.io {
            Io::Tcp(s) => s.write_all(bytes).await,
            Io::Unix(s) => s.write_all(bytes).await,
        }
    }

    /// The next reply (bytes after it stay for the next one).
    async fn reply(&mut self) -> Result<Value, ConnError> {
        loop {
            if !self.inbuf.is_empty()
                && let Some((value, used)) = parse(&self.inbuf)?
            {
                self.inbuf.drain(..used);
                return Ok(value);
            }
            let read = match &mut self.io {
                Io::Tcp(s) => s.read_buf(&mut self.inbuf).await?,
                Io::Unix(s) => s.read_buf(&mut self.inbuf).await?,
            };
            if read == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// True when Redis has not closed it (nothing to read, and no EOF).
    fn alive(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match &self.io {
            Io::Tcp(s) => s.try_read(&mut probe),
            Io::Unix(s) => s.try_read(&mut probe),
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `out[at..]` and reads its reply; on `NOSCRIPT`, loads
    /// `script` and sends it again.
    async fn step(&mut self, at: usize, script: Option<&Script>) -> Result<Value, ConnError> {
        let out = std::mem::take(&mut self.out);
        let result = self.step_with(&out[at..], script).await;
        self.out = out;
        result
    }

    async fn step_with(
        &mut self,
        request: &[u8],
        script: Option<&Script>,
    ) -> Result<Value, ConnError> {
        self.send(request).await.map_err(ConnError::Unsent)?;
        match (self.reply().await?, script) {
            (Value::Error(e), Some(script)) if e.starts_with("NOSCRIPT") => {
                let mut load = Vec::with_capacity(script.body.len() + 64);
                let mut r = Request::new(&mut load);
                r.arg("SCRIPT").arg("LOAD").arg(&script.body);
                let start = r.finish();
                self.send(&load[start..]).await?;
                if let Value::Error(e) = self.reply().await? {
                    return Ok(Value::Error(e));
                }
                self.send(request).await?;
                self.reply().await
            }
            (value, _) => Ok(value),
        }
    }
}

/// The pool.
pub struct Pool {
    addr: Addr,
    /// `AUTH` and `SELECT` for each new connection (empty: none), and
    /// how many replies they bring.
    hello: Vec<u8>,
    hello_replies: usize,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Connections to `addr` (none opened yet), logging in with
    /// `username`/`password` and selecting `db` on each.
    pub fn new(addr: Addr, username: Option<&str>, password: Option<&str>, db: i64) -> Self {
        let mut hello = Vec::new();
        let mut hello_replies = 0;
        if let Some(password) = password {
            let mut r = Request::new(&mut hello);
            r.arg("AUTH");
            if let Some(user) = username {
                r.arg(user);
            }
            r.arg(password);
            let start = r.finish();
            hello.drain(..start);
            hello_replies += 1;
        }
        if db != 0 {
            let from = hello.len();
            let mut r = Request::new(&mut hello);
            r.arg("SELECT").arg(db.to_string());
            let start = r.finish();
            hello.drain(from..start);
            hello_replies += 1;
        }
        Self {
            addr,
            hello,
            hello_replies,
            idle: Mutex::new(Vec::with_capacity(MAX_CONNECTIONS)),
            permits: Semaphore::new(MAX_CONNECTIONS),
        }
    }

    /// One step: `write` writes the command; `script` is what to load if
    /// Redis answers `NOSCRIPT`. A Redis error reply is a [`Value::Error`].
    pub async fn call(
        &self,
        script: Option<&Script>,
        write: impl FnOnce(&mut Request<'_>),
    ) -> Result<Value, ConnError> {
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => timeout(OP_TIMEOUT, self.permits.acquire())
                .await
                .map_err(|_| ConnError::Timeout(OP_TIMEOUT))?
                .expect("the semaphore is never closed"),
        };
        let (mut conn, reused) = match self.checkout() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        conn.out.clear();
        let mut request = Request::new(&mut conn.out);
        write(&mut request);
        let at = request.finish();
        let mut result = timeout(OP_TIMEOUT, conn.step(at, script)).await;
        if reused && matches!(result, Ok(Err(ConnError::Unsent(_)))) {
            // A connection Redis had closed: it never saw the request.
            let mut fresh = self.connect().await?;
            fresh.out = std::mem::take(&mut conn.out);
            conn = fresh;
            result = timeout(OP_TIMEOUT, conn.step(at, script)).await;
        }
        let value = result.map_err(|_| ConnError::Timeout(OP_TIMEOUT))??;
        if conn.inbuf.is_empty() {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(conn);
        }
        Ok(value)
    }

    /// An idle connection Redis has not closed.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.alive() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, ConnError> {
        timeout(CONNECT_TIMEOUT, self.open())
            .await
            .map_err(|_| ConnError::Timeout(CONNECT_TIMEOUT))?
    }

    async fn open(&self) -> Result<Conn, ConnError> {
        let io = match &self.addr {
            Addr::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(ConnError::Connect)?;
                s.set_nodelay(true).map_err(ConnError::Connect)?;
                Io::Tcp(s)
            }
            Addr::Unix(path) => Io::Unix(
                UnixStream::connect(path)
                    .await
                    .map_err(ConnError::Connect)?,
            ),
        };
        let mut conn = Conn::new(io);
        if self.hello_replies > 0 {
            conn.send(&self.hello).await?;
            for _ in 0..self.hello_replies {
                if let Value::Error(e) = conn.reply().await? {
                    return Err(ConnError::Hello(e));
                }
            }
        }
        Ok(conn)
    }
}
