//! The workers: N connections × M concurrent calls, a common start after a
//! warm-up, a bounded end (time or count), per-worker histograms merged.

use crate::{
    args::{Args, Method},
    connect::Target,
    procstat,
    report::RunResult,
};
use hdrhistogram::Histogram;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Barrier;
use tonic::{Request, metadata::MetadataValue, transport::Channel};
use vibectl_proto::{
    ExecuteRequest, GetServerInfoRequest,
    llm_proxy::vibectl_llm_proxy_client::VibectlLlmProxyClient,
};

/// What one worker measured.
#[derive(Default)]
pub struct WorkerStats {
    pub latency_us: Option<Histogram<u64>>,
    pub ttfc_us: Option<Histogram<u64>>,
    pub ok: u64,
    pub chunks: u64,
    pub errors: BTreeMap<String, u64>,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub(crate) struct Shared {
    pub(crate) args: Args,
    pub(crate) target: Target,
    pub(crate) token: Option<MetadataValue<tonic::metadata::Ascii>>,
    issued: AtomicU64,
    barrier: Barrier,
}

/// Runs the whole load and merges what every worker saw.
pub async fn run(args: &Args, target: &Target) -> anyhow::Result<RunResult> {
    let token = read_token(args)?;
    let workers = args.connections * args.concurrency;
    let shared = Arc::new(Shared {
        args: args.clone(),
        target: target.clone(),
        token,
        issued: AtomicU64::new(0),
        barrier: Barrier::new(workers + 1),
    });
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..args.connections {
        let channel = if args.fresh_connections {
            None
        } else {
            Some(target.connect().await?)
        };
        for _ in 0..args.concurrency {
            let shared = shared.clone();
            let channel = channel.clone();
            handles.push(tokio::spawn(async move { worker(shared, channel).await }));
        }
    }
    shared.barrier.wait().await;
    let start = Instant::now();
    let cpu_before = procstat::sample_all(&args.watch);
    let mut total = WorkerStats {
        latency_us: Some(histogram()),
        ttfc_us: Some(histogram()),
        ..Default::default()
    };
    for handle in handles {
        let stats = handle.await??;
        merge(&mut total, stats)?;
    }
    let elapsed = start.elapsed();
    let procs = procstat::delta_json(
        &cpu_before,
        &procstat::sample_all(&args.watch),
        total.ok,
        elapsed,
    );
    Ok(RunResult::new(args, total, elapsed, procs))
}

/// The `authorization` value from `--token-file`, if given.
pub(crate) fn read_token(
    args: &Args,
) -> anyhow::Result<Option<MetadataValue<tonic::metadata::Ascii>>> {
    Ok(match &args.token_file {
        Some(path) => {
            let jwt = std::fs::read_to_string(path)?;
            Some(format!("Bearer {}", jwt.trim()).parse()?)
        }
        None => None,
    })
}

/// The request every call sends.
pub(crate) fn execute_request(args: &Args) -> ExecuteRequest {
    ExecuteRequest {
        user_fragments: vec![args.text.clone()],
        model_name: args.model.clone(),
        ..Default::default()
    }
}

fn merge(total: &mut WorkerStats, stats: WorkerStats) -> anyhow::Result<()> {
    if let (Some(t), Some(s)) = (total.latency_us.as_mut(), stats.latency_us.as_ref()) {
        t.add(s)?;
    }
    if let (Some(t), Some(s)) = (total.ttfc_us.as_mut(), stats.ttfc_us.as_ref()) {
        t.add(s)?;
    }
    total.ok += stats.ok;
    total.chunks += stats.chunks;
    for (code, n) in stats.errors {
        *total.errors.entry(code).or_default() += n;
    }
    Ok(())
}

async fn worker(shared: Arc<Shared>, channel: Option<Channel>) -> anyhow::Result<WorkerStats> {
    let args = &shared.args;
    let mut stats = WorkerStats {
        latency_us: Some(histogram()),
        ttfc_us: Some(histogram()),
        ..Default::default()
    };
    for _ in 0..args.warmup {
        let _ = call(&shared, channel.clone()).await;
    }
    shared.barrier.wait().await;
    let deadline = Instant::now() + args.duration;
    loop {
        match args.requests {
            Some(n) if shared.issued.fetch_add(1, Ordering::Relaxed) >= n => break,
            None if Instant::now() >= deadline => break,
            _ => {}
        }
        let started = Instant::now();
        match call(&shared, channel.clone()).await {
            Ok(outcome) => {
                stats.ok += 1;
                stats.chunks += outcome.chunks;
                record(&mut stats.latency_us, started.elapsed());
                if let Some(ttfc) = outcome.first_chunk {
                    record(&mut stats.ttfc_us, ttfc.duration_since(started));
                }
            }
            Err(code) => *stats.errors.entry(code).or_default() += 1,
        }
    }
    Ok(stats)
}

fn record(h: &mut Option<Histogram<u64>>, d: Duration) {
    if let Some(h) = h {
        let _ = h.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
    }
}

struct Outcome {
    chunks: u64,
    first_chunk: Option<Instant>,
}

/// One call; an error is its gRPC status code name (or `CONNECT`, or the
/// in-band error code).
async fn call(shared: &Shared, channel: Option<Channel>) -> Result<Outcome, String> {
    let channel = match channel {
        Some(c) => c,
        None => shared
            .target
            .connect()
            .await
            .map_err(|_| "CONNECT".to_owned())?,
    };
    let mut client = VibectlLlmProxyClient::new(channel);
    let args = &shared.args;
    let body = execute_request(args);
    let status = |s: tonic::Status| format!("{:?}", s.code());
    match args.method {
        Method::Info => {
            client
                .get_server_info(request(shared, GetServerInfoRequest {}))
                .await
                .map_err(status)?;
            Ok(Outcome {
                chunks: 0,
                first_chunk: None,
            })
        }
        Method::Execute => {
            let resp = client
                .execute(request(shared, body))
                .await
                .map_err(status)?;
            match resp.into_inner().result {
                Some(vibectl_proto::execute_response::Result::Success(_)) => Ok(Outcome {
                    chunks: 0,
                    first_chunk: None,
                }),
                Some(vibectl_proto::execute_response::Result::Error(e)) => Err(e.error_code),
                None => Err("EMPTY".to_owned()),
            }
        }
        Method::Stream => {
            let mut stream = client
                .stream_execute(request(shared, body))
                .await
                .map_err(status)?
                .into_inner();
            let mut outcome = Outcome {
                chunks: 0,
                first_chunk: None,
            };
            while let Some(chunk) = stream.message().await.map_err(status)? {
                use vibectl_proto::stream_chunk::ChunkType;
                match chunk.chunk_type {
                    Some(ChunkType::TextChunk(_)) => {
                        outcome.first_chunk.get_or_insert_with(Instant::now);
                        outcome.chunks += 1;
                    }
                    Some(ChunkType::Error(e)) => return Err(e.error_code),
                    _ => {}
                }
            }
            Ok(outcome)
        }
    }
}

pub(crate) fn request<T>(shared: &Shared, body: T) -> Request<T> {
    let mut req = Request::new(body);
    if let Some(token) = &shared.token {
        req.metadata_mut().insert("authorization", token.clone());
    }
    req
}
