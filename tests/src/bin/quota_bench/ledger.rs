//! The ledger's throughput runs of `quota_bench`: calls through an
//! in-process core, `--streams` at once, ledger off and SQLite ledger on,
//! in interleaved rounds (calls/s and CPU per call), and the fixed call
//! counts `--fixed-calls` runs under callgrind.

use super::Args;
use futures::StreamExt;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;
use vibectl_core::CoreListener;
use vibectl_proto::{ExecuteRequest, vibectl_llm_proxy_client::VibectlLlmProxyClient};

pub(super) fn ledger_config(ledger: Option<&std::path::Path>) -> Config {
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
pub(super) struct Run {
    rate: f64,
    pub(super) calls: u64,
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
pub(super) async fn throughput(config: Config, streams: usize, until: Duration, limit: u64) -> Run {
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

pub(super) async fn ledger_rounds(args: &Args) {
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
