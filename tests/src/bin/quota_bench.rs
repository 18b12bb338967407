//! `quota_bench`: what quotas and the ledger cost (run by `scripts/bench
//! --quota`; not a test). Prints, as Markdown rows:
//! - the latency of one quota reservation (reserve, then settle off the
//!   path) with the memory backend, and with Redis at `--redis URL`,
//!   beside one empty scripted step through the same client (the floor);
//! - calls per second through an in-process core with 64 streams at once,
//!   with the ledger off and with the SQLite ledger on.

use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::{
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
    /// Redis for the shared backend (e.g. redis+unix:///tmp/r.sock); skipped when absent.
    #[arg(long)]
    redis: Option<String>,
    /// Reservations measured per backend.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Streams at once in the throughput runs.
    #[arg(long, default_value_t = 64)]
    streams: usize,
}

const BUDGETS: &str = "[limits.global]\nmax_tokens_per_day = 1000000000000\n\
                       max_cost_usd_per_month = 1000000\n";

async fn reserve_latency(name: &str, backend: Arc<dyn QuotaBackend>, calls: usize) {
    let config = Config::from_toml(BUDGETS, std::path::Path::new("bench.toml")).expect("config");
    let quotas = Arc::new(Quotas::new(&config, backend, QuotaMetrics::default()));
    let model = Registry::from_config(&config)
        .resolve(Some("echo"))
        .expect("echo");
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..calls {
        let sub = format!("user-{}", i % 100);
        let started = Instant::now();
        let reservation = quotas
            .reserve(
                Caller {
                    sub: &sub,
                    kid: None,
                },
                &model,
                20,
            )
            .await
            .expect("fits");
        hist.record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
            .expect("record");
        if let Some(r) = reservation {
            r.settle(30, 0);
        }
    }
    println!(
        "| quota reserve, {name} | {:.1} µs | {:.1} µs | {calls} |",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0
    );
}

/// One scripted Redis step that does nothing (an empty `COUNTS`):
/// `EVALSHA`'s round trip through the core's own client, the floor under a
/// reservation.
async fn redis_floor(redis: &RedisQuota, calls: usize) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..calls {
        let started = Instant::now();
        redis.counts(&[]).await.expect("redis");
        hist.record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
            .expect("record");
    }
    println!(
        "| empty EVALSHA, same client (floor) | {:.1} µs | {:.1} µs | {calls} |",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0
    );
}

async fn throughput(ledger: Option<&std::path::Path>, args: &Args) -> f64 {
    let text = match ledger {
        Some(path) => format!("[ledger]\nsqlite_path = \"{}\"\n", path.display()),
        None => "[ledger]\nenabled = false\n".to_owned(),
    };
    let config = Config::from_toml(&text, std::path::Path::new("bench.toml")).expect("config");
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
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let workers = (0..args.streams).map(|w| {
        let mut client = VibectlLlmProxyClient::new(channel.clone());
        async move {
            let mut done = 0u64;
            while Instant::now() < until {
                let request = ExecuteRequest {
                    user_fragments: vec!["count these words please".into()],
                    model_name: Some("echo".into()),
                    request_id: format!("b{w}-{done}"),
                    ..ExecuteRequest::default()
                };
                let mut stream = client
                    .stream_execute(request)
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
    let started = Instant::now();
    let total: u64 = futures::future::join_all(workers).await.into_iter().sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    rate
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!("| what | p50 | p99 | calls |\n| --- | --- | --- | --- |");
    reserve_latency("memory", Arc::new(MemoryBackend::default()), args.calls).await;
    if let Some(url) = &args.redis {
        let redis = RedisQuota::new(url, "bench:").expect("redis url");
        redis_floor(&redis, args.calls).await;
        reserve_latency("Redis", Arc::new(redis), args.calls).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let off = throughput(None, &args).await;
    let on = throughput(Some(&dir.path().join("usage.db")), &args).await;
    println!(
        "\n| ledger, {} streams | calls/s | vs off |\n| --- | --- | --- |\n| off | {off:.0} | |\n| SQLite on | {on:.0} | {:+.1} % |",
        args.streams,
        (on / off - 1.0) * 100.0
    );
}
