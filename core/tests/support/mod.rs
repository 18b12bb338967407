//! What the binary tests share: the `vibectl-core` binary started with its
//! stderr read line by line on a thread, bounded waits for a log line and
//! for the process to exit, SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_vibectl-core");
pub const WAIT: Duration = Duration::from_secs(20);

/// Spawns `command` (stdout discarded) and its stderr's lines, as they come.
pub fn spawn_logged(command: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// Appends lines to `log` until one contains `needle`; false when none came
/// within [`WAIT`] of the last.
pub fn read_until(lines: &mpsc::Receiver<String>, needle: &str, log: &mut String) -> bool {
    while let Ok(line) = lines.recv_timeout(WAIT) {
        log.push_str(&line);
        log.push('\n');
        if line.contains(needle) {
            return true;
        }
    }
    false
}

/// Everything the child logged until its stderr closed (bounded).
pub fn drain(lines: &mpsc::Receiver<String>) -> String {
    let mut log = String::new();
    while let Ok(line) = lines.recv_timeout(WAIT) {
        log.push_str(&line);
        log.push('\n');
    }
    log
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
}

/// Waits (bounded) for the child to exit; kills it if it does not.
pub fn wait_exit(mut child: Child) -> ExitStatus {
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    done.recv_timeout(WAIT)
        .unwrap_or_else(|_| {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("vibectl-core {pid} did not exit in time")
        })
        .expect("wait")
}
