//! What the journey tests share: the real binaries as a user runs them
//! (`target/<profile>/vibectl-core`, `vibectl-edge`: what `cargo run -p …`
//! runs), a throw-away `HOME` (so the default state dir is
//! `$HOME/.config/vibectl-proxy` and vibectl keeps its config in
//! `$HOME/.config/vibectl`), the real vibectl client from PyPI in the venv
//! that `scripts/test` makes (`target/vibectl-venv`), and a TLS client for
//! the cases the client cannot send.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};
use tokio::process::{Child, Command};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use vibectl_proto::vibectl_llm_proxy_client::VibectlLlmProxyClient;

/// Longest a process may take to start, or a vibectl command to finish.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Every variable that would change which files or keys a process uses.
const SCRUBBED: &[&str] = &[
    "XDG_CONFIG_HOME",
    "VIBECTL_PROXY_HOME",
    "VIBECTL_PROXY_CONFIG",
    "VIBECTL_JWT_SECRET",
    "VIBECTL_JWT_SECRET_FILE",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "RUST_LOG",
    "VIBECTL_MODEL",
];

/// `target/<profile>`, where the test binary's `deps/` directory is.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_owned()
}

/// A binary of the workspace, as `cargo run -p NAME` runs it.
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with --workspace (scripts/test does), which builds it",
        path.display()
    );
    path
}

/// The real vibectl client (`$VIBECTL_CLIENT`, else the venv that
/// `scripts/test` creates).
pub fn vibectl_client() -> PathBuf {
    let path = std::env::var_os("VIBECTL_CLIENT").map_or_else(
        || {
            profile_dir()
                .parent()
                .expect("target dir")
                .join("vibectl-venv/bin/vibectl")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "the vibectl client is missing at {}: scripts/test installs it (vibectl==0.11.6 from PyPI)",
        path.display()
    );
    path
}

/// A user's machine: a fresh `HOME`.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A new, empty home.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `$HOME`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default state directory of every command.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".config/vibectl-proxy")
    }

    /// Writes the default config file (`<state dir>/config.toml`).
    pub fn write_config(&self, toml: &str) {
        std::fs::create_dir_all(self.state_dir()).expect("state dir");
        std::fs::write(self.state_dir().join("config.toml"), toml).expect("config");
    }

    /// `program` with this `HOME` and nothing else that picks files or keys.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.env("HOME", self.path()).current_dir(self.path());
        for var in SCRUBBED {
            command.env_remove(var);
        }
        command.kill_on_drop(true);
        command
    }

    /// Runs `vibectl-edge ARGS` to completion.
    pub async fn edge_cli(&self, args: &[&str]) -> Output {
        run(self.command(&binary("vibectl-edge")).args(args)).await
    }

    /// Runs the real vibectl client to completion.
    pub async fn vibectl(&self, args: &[&str]) -> Output {
        run(self
            .command(&vibectl_client())
            .args(args)
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200"))
        .await
    }

    /// `vibectl setup-proxy configure PROFILE vibectl-server://localhost:PORT`
    /// with the token file and the edge's CA bundle; asserts success.
    pub async fn configure(&self, profile: &str, edge_port: u16, jwt: &Path) {
        let bundle = self.state_dir().join("certs/ca-bundle.crt");
        let url = format!("vibectl-server://localhost:{edge_port}");
        let out = self
            .vibectl(&[
                "setup-proxy",
                "configure",
                profile,
                &url,
                "--jwt-path",
                jwt.to_str().expect("utf-8"),
                "--ca-bundle",
                bundle.to_str().expect("utf-8"),
            ])
            .await;
        assert_ok(&out, "setup-proxy configure");
    }

    /// `vibectl-edge generate-token SUB --expires-in 1d [EXTRA…]` into
    /// `$HOME/SUB.jwt`.
    pub async fn token(&self, sub: &str, extra: &[&str]) -> PathBuf {
        let file = self.path().join(format!("{sub}.jwt"));
        let mut args = vec![
            "generate-token",
            sub,
            "--expires-in",
            "1d",
            "--output",
            file.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        assert_ok(&self.edge_cli(&args).await, "generate-token");
        file
    }

    /// A gRPC client over TLS to the edge, trusting its CA bundle.
    pub async fn grpc(&self, edge_port: u16) -> VibectlLlmProxyClient<Channel> {
        let bundle =
            std::fs::read(self.state_dir().join("certs/ca-bundle.crt")).expect("CA bundle");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(bundle))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://localhost:{edge_port}"))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect to the edge");
        VibectlLlmProxyClient::new(channel).max_encoding_message_size(64 << 20)
    }
}

async fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null());
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// Asserts exit 0, printing both streams otherwise.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout and stderr as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A server process whose output goes to a file; killed when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command`, its stdout and stderr into `log`.
    pub fn start(mut command: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        command.stdout(file).stderr(err).stdin(Stdio::null());
        Self {
            child: command.spawn().expect("spawn"),
            log,
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub async fn terminate(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }

    /// The process id (`None` once it was reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9` (no shutdown hook runs), then waits (bounded) for the exit.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log holds a line with `marker` and then
    /// `127.0.0.1:PORT`, and returns the port.
    pub async fn port_after(&self, marker: &str) -> u16 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if let Some(port) = log.split(marker).nth(1).and_then(|rest| {
                let line = rest.lines().next()?;
                let (_, rest) = line.split_once("127.0.0.1:")?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            }) {
                return port;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{marker}` in time; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `vibectl-core serve --listen 127.0.0.1:0` as the README runs it, with
/// `env` added; returns it and its port.
pub async fn start_core(home: &Home, env: &[(&str, &str)]) -> (Server, u16) {
    let mut command = home.command(&binary("vibectl-core"));
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    command.envs(env.iter().copied());
    let core = Server::start(command, home.path().join("core.log"));
    let port = core.port_after("vibectl-core serving").await;
    (core, port)
}

/// `vibectl-edge serve` on 127.0.0.1:0 (admin too) with `--core CORE` and
/// `extra` flags; returns it, its port and its admin port.
pub async fn start_edge(home: &Home, core: &str, extra: &[&str]) -> (Server, u16, u16) {
    let mut command = home.command(&binary("vibectl-edge"));
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--core",
        core,
    ]);
    command.args(extra);
    let edge = Server::start(command, home.path().join("edge.log"));
    let port = edge.port_after("edge listening").await;
    let admin = edge.port_after("admin listening").await;
    (edge, port, admin)
}

/// `GET path` on a plain HTTP listener: the body.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("in time")
        .expect("read");
    answer
}
