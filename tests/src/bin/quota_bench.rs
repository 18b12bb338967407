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
//!   instructions under `valgrind --tool=callgrind`).

use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;
use vibectl_core::{
    CoreListener,
    quota::{
        Caller, QuotaMetrics, Quotas, backend::QuotaBackend, memory::MemoryBackend,
        redis::RedisQuota,
    },
    registry::Registry,
};
use vibectl_proto::{ExecuteRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient};

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

fn ledger_config(ledger: Option<&std::path::Path>) -> Config {
    let text = match ledger {
        Some(path) => format!("[ledger]\nsqlite_path = \"{}\"\n", path.display()),
        None => "[ledger]\nenabled = false\n".to_owned(),
    };
    Config::from_toml(&text, std::path::Path::new("bench.toml")).expect("config")
}

/// CPU seconds this process has used so far, all threads, user + system
/// (`/proc/self/stat` utime + stime, in USER_HZ = 100 ticks). Steadier
/// than calls/s on a busy machine: another process' load slows the calls
/// but hardly changes what each costs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, from the 3rd (state) on.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, r)| r)
        .split(' ')
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / 100.0
}

/// One throughput run: calls/s, calls, and CPU µs per call (the process'
/// CPU time over the run, client and core together, / calls).
struct Run {
    rate: f64,
    calls: u64,
    cpu_us: f64,
}

fn request(request_id: String) -> ExecuteRequest {
    ExecuteRequest {
        user_fragments: vec!["count these words please".into()],
        model_name: Some("echo".into()),
        request_id,
        ..ExecuteRequest::default()
    }
}

/// Calls through an in-process core, `streams` at once, until `until`
/// or `limit` calls.
async fn throughput(config: Config, streams: usize, until: Duration, limit: u64) -> Run {
    let listener = CoreListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr_string();
    let stop = CancellationToken::new();
    let server = tokio::spawn(vibectl_core::serve(
        listener,
        Arc::new(config),
        stop.clone(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    // One call first: the core's start (the ledger's migrations, the
    // restore of the day's and month's totals from it) is not timed.
    let mut client = VibectlLlmProxyClient::new(channel.clone());
    let mut stream = client
        .stream_execute(request("warm-up".into()))
        .await
        .expect("OK")
        .into_inner();
    while let Some(chunk) = stream.next().await {
        chunk.expect("chunk");
    }
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let until = started + until;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers = (0..streams).map(|w| {
        let mut client = VibectlLlmProxyClient::new(channel.clone());
        let next = next.clone();
        async move {
            let mut done = 0u64;
            while Instant::now() < until
                && next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < limit
            {
                let mut stream = client
                    .stream_execute(request(format!("b{w}-{done}")))
                    .await
                    .expect("OK")
                    .into_inner();
                while let Some(chunk) = stream.next().await {
                    chunk.expect("chunk");
                }
                done += 1;
            }
            done
        }
    });
    let total: u64 = futures::future::join_all(workers).await.into_iter().sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds() - cpu_before) * 1e6 / total.max(1) as f64;
    stop.cancel();
    let _ = server.await;
    Run {
        rate,
        calls: total,
        cpu_us,
    }
}

async fn ledger_rounds(args: &Args) {
    let run = Duration::from_secs(args.seconds);
    println!(
        "\n| ledger, {} streams, round | off calls/s | SQLite on calls/s | on vs off | off CPU µs/call | on CPU µs/call | on vs off |\n| --- | --- | --- | --- | --- | --- | --- |",
        args.streams
    );
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for round in 1..=args.ledger_rounds {
        // The order alternates, so a drift of the machine's load cancels out.
        // Each ledger-on run starts from an empty file: a file grown by
        // the earlier rounds made each later round's start (restoring
        // the day's totals) and its B-trees' depth differ.
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("usage.db");
        let (mut off, mut on) = (None, None);
        for ledger_on in [round % 2 == 0, round % 2 == 1] {
            let config = ledger_config(ledger_on.then_some(db.as_path()));
            let r = throughput(config, args.streams, run, u64::MAX).await;
            *(if ledger_on { &mut on } else { &mut off }) = Some(r);
        }
        let (off, on) = (off.expect("off run"), on.expect("on run"));
        let rate = on.rate / off.rate - 1.0;
        let cpu = on.cpu_us / off.cpu_us - 1.0;
        rates.push(rate);
        cpus.push(cpu);
        println!(
            "| {round} | {:.0} | {:.0} | {:+.1} % | {:.1} | {:.1} | {:+.1} % |",
            off.rate,
            on.rate,
            rate * 100.0,
            off.cpu_us,
            on.cpu_us,
            cpu * 100.0
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 100.0
    };
    println!(
        "\nMedian of {} interleaved rounds: ledger on {:+.1} % calls/s ({:+.1} % … {:+.1} %), {:+.1} % CPU per call ({:+.1} % … {:+.1} %).",
        rates.len(),
        median(&mut rates),
        rates[0] * 100.0,
        rates[rates.len() - 1] * 100.0,
        median(&mut cpus),
        cpus[0] * 100.0,
        cpus[cpus.len() - 1] * 100.0
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
