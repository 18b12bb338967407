//! Hold mode (`--hold`): open connections × concurrency `StreamExecute`
//! calls at once, wait until every one has received its first text chunk,
//! read the watched processes (their RSS with all those streams open), keep
//! the streams for `--hold-for`, then drop them all (the client hangs up:
//! RST_STREAM through the edge to the core and the provider). Also reported:
//! each stream's time to its first chunk (from the moment all were started)
//! and the CPU the watched processes spent while holding (`hold_procs`: with
//! a provider that trickles chunks, the CPU cost of a stream-second).

use crate::{
    args::Args,
    connect::Target,
    procstat,
    run::{execute_request, read_token},
};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Streaming, transport::Channel};
use vibectl_proto::{
    StreamChunk, llm_proxy::vibectl_llm_proxy_client::VibectlLlmProxyClient,
    stream_chunk::ChunkType,
};

/// What a hold run saw.
pub struct HoldResult {
    requested: usize,
    held: usize,
    errors: BTreeMap<String, u64>,
    time_to_hold: Duration,
    procs: Value,
    first_chunk_ms: Vec<f64>,
    hold_for: Duration,
    hold_procs: Value,
}

impl HoldResult {
    /// True when every stream was held.
    pub fn complete(&self) -> bool {
        self.held == self.requested
    }

    /// JSON for scripts.
    pub fn to_json(&self) -> Value {
        json!({
            "label": format!("hold {} streams", self.requested),
            "requested": self.requested,
            "held": self.held,
            "errors": self.errors,
            "time_to_hold_ms": self.time_to_hold.as_secs_f64() * 1000.0,
            "procs": self.procs,
            "first_chunk_ms": {
                "p50": percentile(&self.first_chunk_ms, 0.50),
                "p99": percentile(&self.first_chunk_ms, 0.99),
                "max": percentile(&self.first_chunk_ms, 1.0),
            },
            "hold_for_s": self.hold_for.as_secs_f64(),
            "hold_procs": self.hold_procs,
        })
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "hold: {} of {} streams open after {:.0} ms\n",
            self.held,
            self.requested,
            self.time_to_hold.as_secs_f64() * 1000.0
        );
        if !self.errors.is_empty() {
            out += &format!("  errors: {:?}\n", self.errors);
        }
        out += &procstat::text(&self.procs);
        out
    }
}

/// The `q` quantile of `values` (nearest rank), or null when there are none.
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let last = v.len().checked_sub(1)?;
    let i = (q * last as f64).round() as usize;
    v.get(i.min(last)).copied()
}

/// Opens the streams, waits for every first chunk (at most `--hold-timeout`),
/// samples, holds for `--hold-for`, releases.
pub async fn hold(args: &Args, target: &Target) -> anyhow::Result<HoldResult> {
    let token = read_token(args)?;
    let requested = args.connections * args.concurrency;
    let release = CancellationToken::new();
    let (report_tx, mut report_rx) = mpsc::channel::<Result<Duration, String>>(requested.max(1));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let channel = target.connect().await?;
        for _ in 0..args.concurrency {
            let mut req = Request::new(execute_request(args));
            if let Some(token) = &token {
                req.metadata_mut().insert("authorization", token.clone());
            }
            tasks.spawn(one(
                channel.clone(),
                req,
                report_tx.clone(),
                release.clone(),
                started,
            ));
        }
    }
    drop(report_tx);
    let mut held = 0;
    let mut first_chunk_ms = Vec::with_capacity(requested);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + args.hold_timeout;
    let settled = |held: usize, errors: &BTreeMap<String, u64>| {
        held + usize::try_from(errors.values().sum::<u64>()).unwrap_or(usize::MAX)
    };
    while settled(held, &errors) < requested {
        match tokio::time::timeout_at(deadline, report_rx.recv()).await {
            Ok(Some(Ok(first))) => {
                held += 1;
                first_chunk_ms.push(first.as_secs_f64() * 1000.0);
            }
            Ok(Some(Err(code))) => *errors.entry(code).or_default() += 1,
            Ok(None) => break,
            Err(_) => {
                let missing = requested.saturating_sub(settled(held, &errors));
                *errors.entry("NO_FIRST_CHUNK_IN_TIME".into()).or_default() += missing as u64;
                break;
            }
        }
    }
    let time_to_hold = started.elapsed();
    // Settle a moment so allocations made while answering are in the RSS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = procstat::sample_all(&args.watch);
    let procs = procstat::delta_json(&BTreeMap::new(), &now, 0, Duration::ZERO);
    tokio::time::sleep(args.hold_for).await;
    let end = procstat::sample_all(&args.watch);
    let hold_procs = procstat::delta_json(&now, &end, 0, args.hold_for);
    release.cancel();
    // Every task ends at the release (bounded: they only wait for it).
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(HoldResult {
        requested,
        held,
        errors,
        time_to_hold,
        procs,
        first_chunk_ms,
        hold_for: args.hold_for,
        hold_procs,
    })
}

/// One held stream: report the first text chunk (or the error), then keep
/// the stream until released; a stream that ends early is reported.
async fn one(
    channel: Channel,
    req: Request<vibectl_proto::ExecuteRequest>,
    report: mpsc::Sender<Result<Duration, String>>,
    release: CancellationToken,
    started: Instant,
) {
    let status = |s: tonic::Status| format!("{:?}", s.code());
    let mut client = VibectlLlmProxyClient::new(channel);
    let opened = tokio::select! {
        r = client.stream_execute(req) => r.map(|r| r.into_inner()).map_err(status),
        () = release.cancelled() => return,
    };
    let mut stream: Streaming<StreamChunk> = match opened {
        Ok(s) => s,
        Err(code) => {
            let _ = report.send(Err(code)).await;
            return;
        }
    };
    let mut reported = false;
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(chunk)) => match chunk.chunk_type {
                    Some(ChunkType::TextChunk(_)) if !reported => {
                        reported = true;
                        let _ = report.send(Ok(started.elapsed())).await;
                    }
                    Some(ChunkType::Error(e)) if !reported => {
                        let _ = report.send(Err(e.error_code)).await;
                        return;
                    }
                    _ => {}
                },
                Ok(None) => {
                    if !reported {
                        let _ = report.send(Err("ENDED_BEFORE_TEXT".into())).await;
                    }
                    // Ended while held: the provider's hold was too short.
                    return;
                }
                Err(s) => {
                    if !reported {
                        let _ = report.send(Err(status(s))).await;
                    }
                    return;
                }
            },
            () = release.cancelled() => return,
        }
    }
}
