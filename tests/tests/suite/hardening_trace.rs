//! Logging cannot feed itself: the real binaries (`vibectl-core serve`,
//! `vibectl-edge serve`), idle with `RUST_LOG=trace`, use less than 1 % of
//! a CPU and write (almost) nothing; before the fix the idle edge logged
//! about its own log writes at 75 MiB/s and a full CPU.

use crate::journey_support::{Home, Server, binary, start_core};
use std::time::Duration;

/// How long the idle processes are watched.
const WINDOW: Duration = Duration::from_secs(5);

/// User + system CPU time of `pid`, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after ')'.
    let tick = |i: usize| fields[i].parse::<u64>().expect("ticks");
    tick(11) + tick(12)
}

fn log_len(home: &Home, name: &str) -> u64 {
    std::fs::metadata(home.path().join(name)).map_or(0, |m| m.len())
}

#[tokio::test]
async fn idle_edge_and_core_at_trace_use_under_one_percent_cpu() {
    let home = Home::new();
    let (core, core_port) = start_core(&home, &[("RUST_LOG", "trace")]).await;
    let mut command = home.command(&binary("vibectl-edge"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen"])
        .args([
            "127.0.0.1:0",
            "--core",
            &format!("http://127.0.0.1:{core_port}"),
        ])
        .env("RUST_LOG", "trace");
    let edge = Server::start(command, home.path().join("edge.log"));
    edge.port_after("admin listening").await;
    // Start-up work (certificate, first readiness checks) is over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let procs: [(&str, &Server, &str); 2] =
        [("edge", &edge, "edge.log"), ("core", &core, "core.log")];
    let before: Vec<(u64, u64)> = procs
        .iter()
        .map(|(_, p, log)| (cpu_ticks(p.pid().expect("running")), log_len(&home, log)))
        .collect();
    tokio::time::sleep(WINDOW).await;
    for ((name, p, log), (ticks, len)) in procs.iter().zip(before) {
        let used = cpu_ticks(p.pid().expect("running")) - ticks;
        let wrote = log_len(&home, log) - len;
        eprintln!("trace idle: {name}: {used} CPU ticks in {WINDOW:?}, {wrote} log bytes");
        // 1 % of the window, in 1/100 s ticks.
        let max = u64::try_from(WINDOW.as_millis() / 1000).expect("small");
        assert!(
            used <= max,
            "{name}: {used} ticks in {WINDOW:?} (> 1 % CPU)"
        );
        assert!(
            wrote < 64 << 10,
            "{name} logged {wrote} bytes in {WINDOW:?} while idle"
        );
    }
    edge.terminate().await;
    core.terminate().await;
}
