//! External servers that tests start (Pebble, `pebble-challtestsrv`,
//! `named`, `redis-server`): spawn, wait until ready, bounded, and kill on
//! drop, written once.
//!
//! A server that must be told its port gets ports that were free a moment
//! ago (bind 127.0.0.1:0, then release): another process may take one
//! first (any outgoing connection's local port comes from the same
//! ephemeral range), and the server then fails to bind. So the wait does
//! not only poll the port: it watches the process and its log. A log that
//! says "address already in use" means a lost race: the process is killed
//! and started again on fresh ports (a few times). A process that exits
//! for any other reason fails the test at once with its log, instead of
//! a "never opened" after the whole bound.
//!
//! ```ignore
//! let (server, ports) = ServerProcess::start("named", &dir.join("named.log"), 1,
//!     |ports| command_for(ports[0]), |ports| answers(ports[0])).await;
//! ```

use crate::harness::WAIT;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How many times a server is started on fresh ports after losing a port
/// race.
const ATTEMPTS: usize = 5;

/// The bound on one start (many servers starting at once on a busy
/// machine take a while).
const START_BOUND: Duration = Duration::from_secs(3 * WAIT.as_secs());

/// A running server process, killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `command(ports)` with `ports` loopback ports that were free
    /// a moment ago, its stdout and stderr to `log`, and waits
    /// until `ready(ports)` is true (bounded). Retries on fresh ports when
    /// the log says a port was taken; panics with the log when the process
    /// exits or is not ready in time. Returns the server and its ports.
    pub async fn start(
        name: &str,
        log: &Path,
        ports: usize,
        mut command: impl FnMut(&[u16]) -> Command,
        mut ready: impl FnMut(&[u16]) -> bool,
    ) -> (Self, Vec<u16>) {
        for _ in 0..ATTEMPTS {
            let ports = free_ports(ports);
            let mut server = Self::spawn(name, log, &mut command(&ports));
            match server.wait(&ports, &mut ready).await {
                Start::Ready => return (server, ports),
                Start::PortTaken => server.kill(),
            }
        }
        panic!(
            "{name} lost the race for a free port {ATTEMPTS} times; log:\n{}",
            read(log)
        );
    }

    /// Spawns `command` (no port to choose), output to `log`, and waits
    /// until `ready()` is true, bounded; panics with the log when it exits
    /// first or is not ready in time.
    pub async fn start_fixed(
        name: &str,
        log: &Path,
        command: &mut Command,
        mut ready: impl FnMut() -> bool,
    ) -> Self {
        let mut server = Self::spawn(name, log, command);
        match server.wait(&[], &mut |_: &[u16]| ready()).await {
            Start::Ready => server,
            Start::PortTaken => panic!("{name}: a port in use; log:\n{}", server.log()),
        }
    }

    fn spawn(name: &str, log: &Path, command: &mut Command) -> Self {
        let file = std::fs::File::create(log).expect("server log file");
        let stderr = file.try_clone().expect("log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} (scripts/test installs its Debian package): {e}"));
        Self {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    async fn wait(&mut self, ports: &[u16], ready: &mut impl FnMut(&[u16]) -> bool) -> Start {
        let deadline = tokio::time::Instant::now() + START_BOUND;
        loop {
            let log = self.log();
            if port_taken(&log) {
                return Start::PortTaken;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "{} exited ({status}) before it was ready; log:\n{log}",
                    self.name
                );
            }
            if ready(ports) {
                return Start::Ready;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready within {START_BOUND:?} (ports {ports:?}); log:\n{log}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its output so far (for failure messages and log assertions).
    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// Kills it now (and reaps it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Start {
    Ready,
    PortTaken,
}

/// What Go (`bind: address already in use`), Redis (`Address already in
/// use`) and BIND (`address in use`) log when a port is taken.
fn port_taken(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("address in use")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// `n` distinct loopback ports, free for TCP and UDP a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("addr").port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            held.push((tcp, udp, port));
        }
    }
    held.into_iter().map(|(_, _, port)| port).collect()
}

/// Whether every one of `ports` on 127.0.0.1 accepts a TCP connection.
pub fn accepting(ports: &[u16]) -> bool {
    ports.iter().all(|port| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
}
