//! `quota_bench`: what quotas and the ledger cost (run by `scripts/bench
//! --quota`; not a test). Prints, as Markdown rows:
//! - the latency of one quota reservation with the memory backend, and
//!   with Redis at `--redis URL` beside this machine's floor through the
//!   same client (a `PING`, an empty scripted step), and the Redis
//!   commands and connections a reservation costs (from `INFO`): "alone"
//!   holds every reservation until the timed loop ends (nothing else on
//!   the connection), "settles in flight" settles each one as a call does
//!   (spawned, off the call's path, sharing the connection);
//! - calls per second and CPU time per call (the whole process) through an
//!   in-process core with 64 streams at once, ledger off and SQLite
//!   ledger on, in interleaved rounds;
//! - with `--fixed-calls N --ledger on|off`: only N calls (for counting
//!   instructions under `valgrind --tool=callgrind`) ([`ledger`]).

mod ledger;

use clap::Parser;
use hdrhistogram::Histogram;
use ledger::{ledger_config, ledger_rounds, throughput};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};
use vibectl_config::Config;
use vibectl_core::{
    quota::{
        Caller, QuotaMetrics, Quotas, backend::QuotaBackend, memory::MemoryBackend,
        redis::RedisQuota,
    },
    registry::Registry,
};

#[derive(Parser)]
struct Args {
    /// Redis for the shared backend (e.g. redis://127.0.0.1:6379/); skipped when absent.
    #[arg(long)]
    redis: Option<String>,
    /// Reservations measured per backend and way.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Interleaved off/on throughput rounds.
    #[arg(long, default_value_t = 4)]
    ledger_rounds: usize,
    /// Streams at once in the throughput runs.
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// Only this many calls through the core (no latency tables).
    #[arg(long)]
    fixed_calls: Option<u64>,
    /// With --fixed-calls: `on` (SQLite ledger) or `off`.
    #[arg(long, default_value = "on")]
    ledger: String,
    /// Where the timed loops run: `worker` (a task on the multi-thread
    /// runtime, as the core's calls run) or `main` (the thread that
    /// blocks on the runtime).
    #[arg(long, default_value = "worker")]
    on: String,
    /// Only `--calls` Redis reservations (and their settlements), for
    /// counting instructions under `valgrind --tool=callgrind`.
    #[arg(long)]
    redis_reserves_only: bool,
    /// With --redis-reserves-only: `[quota] lease_calls`.
    #[arg(long, default_value_t = 0)]
    lease_calls: u32,
}

const BUDGETS: &str = "[limits.global]\nmax_tokens_per_day = 1000000000000\n\
                       max_cost_usd_per_month = 1000000\n";

fn micros(hist: &Histogram<u64>, q: f64) -> f64 {
    hist.value_at_quantile(q) as f64 / 1000.0
}

/// p50 and p99 of `calls` runs of `step`, as a table row; the p50 and
/// what the steps returned.
async fn timed<T, F: Future<Output = T>>(
    what: &str,
    calls: usize,
    mut step: impl FnMut(usize) -> F,
) -> (f64, Vec<T>) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        out.push(step(i).await);
        hist.record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
            .expect("record");
    }
    let p50 = micros(&hist, 0.5);
    println!(
        "| {what} | {p50:.1} µs | {:.1} µs | {calls} |",
        micros(&hist, 0.99)
    );
    (p50, out)
}

/// The commands a client can send (not the ones scripts run inside Redis).
const CLIENT_COMMANDS: [&str; 9] = [
    "evalsha", "eval", "script", "ping", "hello", "client", "select", "auth", "info",
];

/// The Redis server's counts of [`CLIENT_COMMANDS`] and of connections.
async fn server_counts(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let text: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(conn)
        .await
        .expect("INFO");
    let value = |line: &str, key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|v| v.split([',', '\r']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut counts = Vec::new();
    for line in text.lines() {
        if let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
            && CLIENT_COMMANDS.contains(&name)
        {
            counts.push((name.to_owned(), value(rest, "calls=")));
        } else if line.starts_with("total_connections_received:") {
            counts.push((
                "connections".to_owned(),
                value(line, "total_connections_received:"),
            ));
        }
    }
    counts
}

/// What changed between two [`server_counts`], as `evalsha +N, …`.
fn delta(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    let was = |name: &str| {
        before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let parts: Vec<String> = after
        .iter()
        .filter(|(n, v)| *v > was(n))
        .map(|(n, v)| format!("{n} +{}", v - was(n)))
        .collect();
    parts.join(", ")
}

/// Reservation latency of `backend`: alone (held until the loop ends;
/// with `probe`, the Redis commands that loop sent are printed), then
/// with each settled as a call settles it. Returns the first p50.
async fn reserve_latency(
    name: &str,
    backend: Arc<dyn QuotaBackend>,
    calls: usize,
    lease_calls: u32,
    probe: Option<&mut redis::aio::MultiplexedConnection>,
) -> f64 {
    let text = format!("{BUDGETS}[quota]\nlease_calls = {lease_calls}\n");
    let config = Config::from_toml(&text, std::path::Path::new("bench.toml")).expect("config");
    // With metrics on, as a core serving calls has them: gauges per call.
    let metrics = QuotaMetrics::standalone(&["echo"], 100).expect("metrics");
    let quotas = Arc::new(Quotas::new(&config, backend, metrics));
    let model = Registry::from_config(&config)
        .resolve(Some("echo"))
        .expect("echo");
    let subs: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    let (quotas, model, subs) = (&quotas, &model, &subs);
    let reserve = move |i: usize| async move {
        let caller = Caller {
            sub: &subs[i % 100],
            kid: None,
        };
        quotas.reserve(caller, model, 20).await.expect("fits")
    };
    // Warm: the connection opened and both scripts loaded (the settle is
    // spawned: give it time to finish before the commands are counted).
    if let Some(r) = reserve(0).await {
        r.settle(1, 0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut probe = probe;
    let before = match probe.as_mut() {
        Some(conn) => server_counts(conn).await,
        None => Vec::new(),
    };
    let (p50, held) = timed(&format!("quota reserve, {name}, alone"), calls, reserve).await;
    if let Some(conn) = probe {
        let after = server_counts(conn).await;
        println!(
            "| ↳ Redis saw, for these {calls} reservations | {} (`info +1` is this probe) | | |",
            delta(&before, &after)
        );
    }
    if lease_calls > 0 {
        let local = held.iter().flatten().filter(|r| r.is_local()).count();
        println!("| ↳ taken from this replica's lease in memory | {local} of {calls} | | |");
    }
    drop(held);
    timed(
        &format!("quota reserve, {name}, settles in flight"),
        calls,
        |i| async move {
            if let Some(r) = reserve(i).await {
                r.settle(30, 0);
            }
        },
    )
    .await;
    p50
}

async fn redis_tables(url: &str, calls: usize) {
    let redis = Arc::new(RedisQuota::new(url, "bench:").expect("redis url"));
    let mut probe = redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    redis.ping().await.expect("redis");
    let (ping, _) = timed("PING, same client (floor)", calls, |_| async {
        redis.ping().await.expect("ping");
    })
    .await;
    let multiplexed = &probe;
    timed(
        "PING, the redis crate's multiplexed connection",
        calls,
        |_| async {
            let mut conn = multiplexed.clone();
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .expect("ping");
        },
    )
    .await;
    timed("empty EVALSHA, same client", calls, |_| async {
        redis.counts(&[]).await.expect("redis");
    })
    .await;
    let p50 = reserve_latency("Redis", redis.clone(), calls, 0, Some(&mut probe)).await;
    let lease_calls = vibectl_config::defaults::QUOTA_LEASE_CALLS;
    let leased = reserve_latency(
        &format!("Redis + leases of {lease_calls} calls"),
        redis.clone(),
        calls,
        lease_calls,
        Some(&mut probe),
    )
    .await;
    println!(
        "\nRedis reserve alone, p50: {p50:.1} µs = {:.2} × this client's PING p50 ({ping:.1} µs); \
         with leases (the default): {leased:.1} µs.",
        p50 / ping
    );
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.on == "main" {
        rt.block_on(run(args));
    } else {
        rt.block_on(async { tokio::spawn(run(args)).await.expect("bench") });
    }
}

async fn run(args: Args) {
    if args.redis_reserves_only {
        let url = args.redis.as_deref().expect("--redis");
        let redis = Arc::new(RedisQuota::new(url, "bench:").expect("redis url"));
        let lease_calls = args.lease_calls;
        reserve_latency("Redis", redis, args.calls, lease_calls, None).await;
        return;
    }
    if let Some(calls) = args.fixed_calls {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("usage.db");
        let config = ledger_config((args.ledger == "on").then_some(db.as_path()));
        let run = throughput(config, args.streams, Duration::MAX / 4, calls).await;
        println!("{} calls, ledger {}", run.calls, args.ledger);
        return;
    }
    println!("| what | p50 | p99 | calls |\n| --- | --- | --- | --- |");
    reserve_latency(
        "memory",
        Arc::new(MemoryBackend::default()),
        args.calls,
        0,
        None,
    )
    .await;
    if let Some(url) = &args.redis {
        redis_tables(url, args.calls).await;
    }
    if args.ledger_rounds > 0 {
        ledger_rounds(&args).await;
    }
}
