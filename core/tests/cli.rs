//! The `vibectl-core` binary itself: a bad config exits 64 naming key and
//! file, `models` prints the table without keys, `serve` warns about a
//! non-loopback address and drains and exits 0 on SIGTERM. Every wait is
//! bounded; readiness is read from the log, not guessed with sleeps.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_vibectl-core");
const WAIT: Duration = Duration::from_secs(20);

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

/// Starts `serve`, waits for the "serving" log line, sends SIGTERM, and
/// returns the exit status and everything logged.
fn serve_then_sigterm(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "[core]\nlisten = \"127.0.0.1:0\"\n");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", &file, "--log-level", "info"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    loop {
        let line = lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no 'serving' line in time; log so far:\n{log}")
        });
        log.push_str(&line);
        log.push('\n');
        if line.contains("vibectl-core serving") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done
        .recv_timeout(WAIT)
        .expect("exited in time after SIGTERM")
        .expect("wait");
    while let Ok(line) = lines.recv_timeout(WAIT) {
        log.push_str(&line);
        log.push('\n');
    }
    (status, log)
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
