//! The `vibectl-core` binary itself: a bad config exits 64 naming key and
//! file, `models` prints the table without keys, `serve` warns about a
//! non-loopback address and drains and exits 0 on SIGTERM, `health` is 0
//! against a running core and 1 with a one-line reason otherwise,
//! `--enable-metrics` serves /metrics. Every wait is bounded; readiness is
//! read from the log, not guessed with sleeps.

mod support;

use std::{path::Path, process::Command, sync::mpsc};
use support::{BIN, WAIT, drain, read_until, sigterm, spawn_logged, wait_exit};

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[test]
fn bad_config_exits_64_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[core]\nlisten_adress = \"127.0.0.1:1\"\n");
    for sub in ["serve", "models"] {
        let out = Command::new(BIN)
            .args([sub, "--config", &file])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&file) && err.contains("listen_adress"),
            "{err}"
        );
    }
}

#[test]
fn models_prints_the_table_and_never_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(
        dir.path(),
        "[providers.echo]\nkind = \"echo\"\n\
         [providers.openai]\nkind = \"openai\"\napi_key_env = \"VIBECTL_CLI_TEST_OPENAI\"\n\
         [providers.anthropic]\nkind = \"anthropic\"\napi_key_env = \"VIBECTL_CLI_TEST_UNSET\"\n\
         [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
         [[models]]\nid = \"gpt-4o\"\nprovider = \"openai\"\naliases = [\"4o\"]\nmax_context_length = 128000\n\
         input_usd_per_mtok = 2.5\noutput_usd_per_mtok = 10.0\n\
         [[models]]\nid = \"claude-haiku-4-5\"\nprovider = \"anthropic\"\n",
    );
    let out = Command::new(BIN)
        .args(["models", "--config", &file])
        .env("VIBECTL_CLI_TEST_OPENAI", "sk-cli-secret-value")
        .env_remove("VIBECTL_CLI_TEST_UNSET")
        .output()
        .expect("run");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} in\n{table}"))
            .to_owned()
    };
    assert!(line("echo").contains("built in"), "{table}");
    let gpt = line("gpt-4o");
    assert!(
        gpt.contains("(default)") && gpt.contains("4o") && gpt.contains("128000"),
        "{table}"
    );
    assert!(
        gpt.contains("2.5") && gpt.contains("10") && gpt.trim_end().ends_with("yes"),
        "{table}"
    );
    assert!(
        line("claude-haiku-4-5").contains("missing: set VIBECTL_CLI_TEST_UNSET"),
        "{table}"
    );
    let all = format!("{table}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("sk-cli-secret-value"));
}

/// A `serve` child process that has logged "vibectl-core serving".
struct Served {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    log: String,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `serve` with `config` and `args`; waits for the "serving" line.
    fn start(config: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_config(dir.path(), config);
        let (mut child, lines) = spawn_logged(
            Command::new(BIN)
                .args(["serve", "--config", &file, "--log-level", "info"])
                .args(args),
        );
        let mut log = String::new();
        if !read_until(&lines, "vibectl-core serving", &mut log) {
            let _ = child.kill();
            panic!("no 'serving' line in time; log so far:\n{log}")
        }
        Self {
            child,
            lines,
            log,
            _dir: dir,
        }
    }

    /// The address from the "serving" line (`listen=…`).
    fn address(&self) -> String {
        let line = self
            .log
            .lines()
            .find(|l| l.contains("vibectl-core serving"))
            .expect("serving line");
        let from = line.find("listen=").expect("listen=") + "listen=".len();
        line[from..]
            .split_whitespace()
            .next()
            .expect("address")
            .to_owned()
    }

    /// Sends SIGTERM; returns the exit status and everything logged.
    fn sigterm(mut self) -> (std::process::ExitStatus, String) {
        sigterm(&self.child);
        let status = wait_exit(self.child);
        self.log.push_str(&drain(&self.lines));
        (status, self.log)
    }
}

/// Starts `serve`, waits for the "serving" log line, sends SIGTERM, and
/// returns the exit status and everything logged.
fn serve_then_sigterm(args: &[&str]) -> (std::process::ExitStatus, String) {
    Served::start("[core]\nlisten = \"127.0.0.1:0\"\n", args).sigterm()
}

/// Runs `vibectl-core health ARGS` (bounded by its own `--timeout`).
fn health(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("health")
        .args(args)
        .output()
        .expect("run health")
}

#[test]
fn health_is_zero_against_a_running_core_over_tcp_and_unix() {
    let served = Served::start("[core]\nlisten = \"127.0.0.1:0\"\n", &[]);
    let address = served.address();
    let out = health(&["--address", &address, "--timeout", "5s"]);
    let (status, log) = served.sigterm();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
    assert!(status.success(), "{log}");

    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("core.sock");
    let config = format!("[core]\nlisten = \"unix:{}\"\n", socket.display());
    let served = Served::start(&config, &[]);
    // No --address: `core.listen` of the same configuration file.
    let file = write_config(dir.path(), &config);
    let out = health(&["--config", &file, "--timeout", "5s"]);
    let (status, log) = served.sigterm();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "{log}");
}

#[test]
fn health_is_nonzero_with_one_line_against_a_closed_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let out = health(&["--address", &address, "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&address) && err.contains("cannot connect"),
        "{err}"
    );
    // A configuration that cannot be used is exit 64, naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[core]\nlisen = 1\n");
    let out = health(&["--config", &file]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&file));
}

#[test]
fn serve_with_metrics_flag_answers_on_the_metrics_port() {
    // A free port for /metrics (bound, read, released: the core binds it next).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let port_arg = port.to_string();
    let served = Served::start(
        "[core]\nlisten = \"127.0.0.1:0\"\n",
        &["--enable-metrics", "--metrics-port", &port_arg],
    );
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    std::io::Write::write_all(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .expect("write");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("read");
    let (status, log) = served.sigterm();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(log.contains(&format!("127.0.0.1:{port}/metrics")), "{log}");
    assert!(status.success(), "{log}");
}

#[test]
fn serve_drains_and_exits_zero_on_sigterm() {
    let (status, log) = serve_then_sigterm(&[]);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("listen=127.0.0.1:"), "{log}");
    assert!(
        log.contains("SIGTERM") && log.contains("vibectl-core stopped"),
        "{log}"
    );
    assert!(!log.contains("NON-LOOPBACK"), "{log}");
}

#[test]
fn serve_warns_loudly_on_a_non_loopback_address() {
    let (status, log) = serve_then_sigterm(&["--listen", "0.0.0.0:0"]);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("NON-LOOPBACK"), "{log}");
}
