//! What the processes under test cost, read from `/proc/PID/…` (Linux):
//! resident memory (`VmRSS`, `VmHWM` of `status`) and CPU time (user +
//! system of `stat`, every thread included). `--watch-pid NAME=PID` names
//! the processes; a run samples CPU at the start and the end of its measured
//! window, so CPU per call leaves the warm-up out.

use anyhow::Context;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`): 100 on
/// every Linux architecture this runs on.
const CLK_TCK: f64 = 100.0;

/// One process to watch: `NAME=PID`.
#[derive(Debug, Clone)]
pub struct Watch {
    pub name: String,
    pub pid: u32,
}

/// Parses `--watch-pid NAME=PID` (or a bare `PID`, named after itself).
pub fn parse_watch(s: &str) -> Result<Watch, String> {
    let (name, pid) = s.split_once('=').unwrap_or((s, s));
    let pid = pid
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("expected NAME=PID, got {s:?}"))?;
    Ok(Watch {
        name: name.trim().to_owned(),
        pid,
    })
}

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
}

/// Reads `pid` now.
pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    sample_path(&pid.to_string())
}

/// Reads `/proc/<which>` (a PID, or `self`).
fn sample_path(which: &str) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{which}/status"))
        .with_context(|| format!("reading /proc/{which}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat"))
        .with_context(|| format!("reading /proc/{which}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3
    // (`state`) on: utime is field 14, stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu_s: (ticks(11) + ticks(12)) as f64 / CLK_TCK,
    })
}

/// Readings of every watched process at one moment (missing ones skipped,
/// with a warning), and of loadgen itself (as `loadgen`: is the client the
/// bottleneck?).
pub fn sample_all(watches: &[Watch]) -> BTreeMap<String, Sample> {
    let mut out = BTreeMap::new();
    if let Ok(s) = sample_path("self") {
        out.insert("loadgen".to_owned(), s);
    }
    for w in watches {
        match sample(w.pid) {
            Ok(s) => {
                out.insert(w.name.clone(), s);
            }
            Err(e) => eprintln!("loadgen: --watch-pid {}={}: {e:#}", w.name, w.pid),
        }
    }
    out
}

/// JSON of the watched processes between two readings `elapsed` apart: RSS
/// at the end, CPU spent in between, CPU per successful call, and the share
/// of one CPU used (`cpu_util`, 1.0 = one CPU busy all the time).
pub fn delta_json(
    before: &BTreeMap<String, Sample>,
    after: &BTreeMap<String, Sample>,
    calls: u64,
    elapsed: std::time::Duration,
) -> Value {
    let mut map = Map::new();
    for (name, end) in after {
        let cpu_ms = before
            .get(name)
            .map(|start| (end.cpu_s - start.cpu_s) * 1000.0);
        let per_call = cpu_ms
            .filter(|_| calls > 0)
            .map(|ms| ms * 1000.0 / calls as f64);
        let util = cpu_ms
            .filter(|_| !elapsed.is_zero())
            .map(|ms| ms / (elapsed.as_secs_f64() * 1000.0));
        map.insert(
            name.clone(),
            json!({
                "rss_kib": end.rss_kib,
                "hwm_kib": end.hwm_kib,
                "cpu_ms": cpu_ms,
                "cpu_us_per_call": per_call,
                "cpu_util": util,
            }),
        );
    }
    Value::Object(map)
}

/// One line per process, for people.
pub fn text(procs: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = procs {
        for (name, p) in map {
            out += &format!(
                "  {name:<12} rss {} KiB (peak {} KiB)  cpu {:.0} ms ({:.0}% of a CPU)  {:.1} µs/call\n",
                p["rss_kib"],
                p["hwm_kib"],
                p["cpu_ms"].as_f64().unwrap_or(0.0),
                p["cpu_util"].as_f64().unwrap_or(0.0) * 100.0,
                p["cpu_us_per_call"].as_f64().unwrap_or(0.0),
            );
        }
    }
    out
}
