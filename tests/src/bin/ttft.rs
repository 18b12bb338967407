//! `ttft`: time to first token through the proxy against the provider
//! direct, one streamed call at a time, interleaved. Each round makes one
//! call straight to an OpenAI-compatible provider (`POST
//! {provider}/chat/completions`, `stream: true`, over a pooled keep-alive
//! HTTP/1.1 connection, as a well-behaved client would) and the same call
//! through each `--through` target (`StreamExecute` over h2c to the core, or
//! TLS + JWT to the edge); the order rotates every round. Reported: time to
//! the first non-empty token and to the end of the stream, per path, and
//! the paired per-round differences (through − direct), as JSON.
//!
//! Each call's prompt carries `[call N]`; a `fake_provider` that times such
//! calls (`vibectl_tests::call_timing`) gives the instant it received the call
//! and the one its first token left. From those, each call's **legs**: to
//! the provider (received − sent) and back (first token here − first token
//! sent there), and their sum, the path's own share of the time to first
//! token. `added_legs_us` (through − direct, paired per round) is then the
//! time a path adds with the provider's wait taken out: that wait is a
//! tokio timer, rounded up to its next millisecond tick, so the plain
//! difference of first-token times (`added_first_us`) carries up to 1 ms of
//! noise per call, and counts the return leg only whenever the forward leg
//! moved the request into the next tick.
//!
//! ```text
//! fake_provider --tokens 64 --first-token 50ms --token-gap 15ms --addr-file url
//! ttft --provider "$(cat url)" --model paced --through core=http://127.0.0.1:PORT \
//!      --through edge=https://127.0.0.1:PORT --ca-file ca.crt --token-file bench.jwt
//! ```

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};
use tokio::time::Instant;
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};
use vibectl_proto::{
    ExecuteRequest, stream_chunk::ChunkType, vibectl_llm_proxy_client::VibectlLlmProxyClient,
};
use vibectl_tests::{
    WAIT,
    call_timing::{self, Timings, now_ns},
};

/// Time to first token: proxy paths against the provider direct.
#[derive(Debug, Parser)]
#[command(name = "ttft")]
struct Args {
    /// The provider's base URL (`http://127.0.0.1:PORT/v1`).
    #[arg(long)]
    provider: String,
    /// The upstream model name sent to the provider direct.
    #[arg(long, default_value = "gpt-4o-mini")]
    upstream_model: String,
    /// The proxy's model id that reaches the same provider.
    #[arg(long)]
    model: String,
    /// NAME=URL of a proxy path (repeatable): `http://` h2c, `https://` TLS.
    #[arg(long = "through", value_name = "NAME=URL", required = true)]
    through: Vec<String>,
    /// CA bundle for `https://` paths.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// JWT sent to `https://` paths as `authorization: Bearer …`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Measured rounds (one call per path each).
    #[arg(long, default_value_t = 40)]
    rounds: usize,
    /// Unmeasured rounds first (connections warmed).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Per-call bound.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
}

/// One call's two instants, in µs from its start, and (for the legs) its
/// id and the wall-clock instants it started and got its first token.
#[derive(Debug, Clone, Copy)]
struct Timing {
    first_us: f64,
    total_us: f64,
    id: u64,
    start_ns: u128,
    first_ns: u128,
}

const PROMPT: &str = "how do I list pods?";

/// The next call's id (`[call N]` in its prompt).
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// A new call: its id, its prompt, its start (monotonic and wall clock).
fn begin() -> (u64, String, Instant, u128) {
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    (
        id,
        call_timing::tagged(PROMPT, id),
        Instant::now(),
        now_ns(),
    )
}

struct Direct {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    upstream_model: String,
}

impl Direct {
    fn new(args: &Args) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(http),
            url: format!("{}/chat/completions", args.provider.trim_end_matches('/')),
            upstream_model: args.upstream_model.clone(),
        }
    }

    async fn call(&self) -> anyhow::Result<Timing> {
        let (id, prompt, start, start_ns) = begin();
        let body = json!({
            "model": self.upstream_model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let req = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer bench-dummy-key")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let resp = self.client.request(req).await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "provider said {}",
            resp.status()
        );
        let mut body = resp.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if first.is_none()
                && let Some(data) = frame.data_ref()
                && has_token(data)
            {
                first = Some((start.elapsed(), now_ns()));
            }
        }
        let (first, first_ns) = first.context("the provider sent no token")?;
        Ok(timing(id, start_ns, first, first_ns, start.elapsed()))
    }
}

/// Whether an SSE chunk carries a non-empty `"content":"…"` delta (a chunk
/// may hold several events: the empty role delta and the first token).
fn has_token(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    data.windows(KEY.len())
        .enumerate()
        .any(|(i, w)| w == KEY && data.get(i + KEY.len()) != Some(&b'"'))
}

fn timing(id: u64, start_ns: u128, first: Duration, first_ns: u128, total: Duration) -> Timing {
    Timing {
        first_us: first.as_secs_f64() * 1e6,
        total_us: total.as_secs_f64() * 1e6,
        id,
        start_ns,
        first_ns,
    }
}

struct Through {
    name: String,
    client: VibectlLlmProxyClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Through {
    async fn connect(spec: &str, args: &Args) -> anyhow::Result<Self> {
        let (name, url) = spec.split_once('=').context("--through wants NAME=URL")?;
        let mut endpoint = Endpoint::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .timeout(args.timeout);
        let mut token = None;
        if url.starts_with("https://") {
            let ca = args
                .ca_file
                .as_ref()
                .context("https paths need --ca-file")?;
            let tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
            endpoint = endpoint.tls_config(tls)?;
            if let Some(file) = &args.token_file {
                let jwt = std::fs::read_to_string(file)?;
                token = Some(format!("Bearer {}", jwt.trim()).parse()?);
            }
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Ok(Self {
            name: name.to_owned(),
            client: VibectlLlmProxyClient::new(channel),
            token,
        })
    }

    async fn call(&mut self, model: &str) -> anyhow::Result<Timing> {
        let (id, prompt, start, start_ns) = begin();
        let mut req = tonic::Request::new(ExecuteRequest {
            user_fragments: vec![prompt],
            model_name: Some(model.to_owned()),
            ..Default::default()
        });
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        let mut stream = self.client.stream_execute(req).await?.into_inner();
        let mut first = None;
        while let Some(chunk) = stream.message().await? {
            match chunk.chunk_type {
                Some(ChunkType::TextChunk(t)) if !t.is_empty() => {
                    first.get_or_insert_with(|| (start.elapsed(), now_ns()));
                }
                Some(ChunkType::Error(e)) => anyhow::bail!("{}: {}", e.error_code, e.error_message),
                _ => {}
            }
        }
        let (first, first_ns) = first.context("no text chunk")?;
        Ok(timing(id, start_ns, first, first_ns, start.elapsed()))
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A call's legs in µs: to the provider and back (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Legs {
    forward_us: f64,
    return_us: f64,
}

impl Legs {
    fn of(t: &Timing, timings: &Timings) -> Option<Self> {
        let p = timings.get(&t.id)?;
        let us = |a: u128, b: u128| (a as i128 - b as i128) as f64 / 1e3;
        Some(Self {
            forward_us: us(p.received_ns, t.start_ns),
            return_us: us(t.first_ns, p.first_sent_ns?),
        })
    }

    fn sum(&self) -> f64 {
        self.forward_us + self.return_us
    }
}

/// The provider's timings of every call, when it keeps them.
async fn provider_timings(direct: &Direct, provider: &str) -> Timings {
    let url = format!("{}{}", provider.trim_end_matches('/'), call_timing::PATH);
    let fetch = async {
        let req = http::Request::get(&url).body(Full::new(Bytes::new()))?;
        let resp = direct.client.request(req).await?;
        anyhow::ensure!(resp.status().is_success(), "{}", resp.status());
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&body)?)
    };
    let error = match tokio::time::timeout(WAIT, fetch).await {
        Ok(Ok(timings)) => return timings,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {WAIT:?}"),
    };
    eprintln!("ttft: no provider timings ({error}): legs not reported");
    Timings::new()
}

/// The legs' fields of one path: its own, and (`base` given) the paired
/// differences from the direct calls of the same rounds.
fn legs_json(ts: &[Timing], base: Option<&[Timing]>, timings: &Timings) -> Value {
    let legs: Vec<Option<Legs>> = ts.iter().map(|t| Legs::of(t, timings)).collect();
    if timings.is_empty() || legs.iter().any(Option::is_none) {
        return json!({});
    }
    let legs: Vec<Legs> = legs.into_iter().flatten().collect();
    let pick = |f: fn(&Legs) -> f64| legs.iter().map(f).collect::<Vec<_>>();
    let mut out = json!({
        "legs_us": summary(&pick(Legs::sum)),
        "forward_us": summary(&pick(|l| l.forward_us)),
        "return_us": summary(&pick(|l| l.return_us)),
    });
    if let Some(base) = base {
        let base: Option<Vec<Legs>> = base.iter().map(|t| Legs::of(t, timings)).collect();
        let Some(base) = base else { return out };
        let paired = |f: fn(&Legs) -> f64| {
            legs.iter()
                .zip(&base)
                .map(|(a, b)| f(a) - f(b))
                .collect::<Vec<_>>()
        };
        out["added_legs_us"] = summary(&paired(Legs::sum));
        out["added_forward_us"] = summary(&paired(|l| l.forward_us));
        out["added_return_us"] = summary(&paired(|l| l.return_us));
    }
    out
}

fn summary(values: &[f64]) -> Value {
    json!({"p50": percentile(values, 50.0), "p90": percentile(values, 90.0),
           "p99": percentile(values, 99.0), "min": percentile(values, 0.0)})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let direct = Direct::new(&args);
    let mut paths = Vec::new();
    for spec in &args.through {
        paths.push(Through::connect(spec, &args).await?);
    }
    let n = paths.len() + 1;
    let mut direct_t = Vec::new();
    let mut through_t: Vec<Vec<Timing>> = vec![Vec::new(); paths.len()];
    for round in 0..args.warmup + args.rounds {
        let mut d = None;
        let mut t = vec![None; paths.len()];
        // Rotate the order: path k runs at position (k + round) % n.
        for pos in 0..n {
            let k = (pos + round) % n;
            let bound = args.timeout;
            if k == 0 {
                d = Some(
                    tokio::time::timeout(bound, direct.call())
                        .await
                        .context("direct call timed out")??,
                );
            } else {
                let path = &mut paths[k - 1];
                let r = tokio::time::timeout(bound, path.call(&args.model)).await;
                let r = r.with_context(|| format!("{} call timed out", path.name))?;
                t[k - 1] = Some(r.with_context(|| format!("call through {}", path.name))?);
            }
        }
        if round >= args.warmup {
            direct_t.push(d.context("direct")?);
            for (i, x) in t.into_iter().enumerate() {
                through_t[i].push(x.context("path")?);
            }
        }
    }
    let firsts = |v: &[Timing]| v.iter().map(|t| t.first_us).collect::<Vec<_>>();
    let totals = |v: &[Timing]| v.iter().map(|t| t.total_us).collect::<Vec<_>>();
    let timings = provider_timings(&direct, &args.provider).await;
    let mut out = json!({
        "rounds": args.rounds,
        "direct": {"first_us": summary(&firsts(&direct_t)), "total_us": summary(&totals(&direct_t))},
    });
    merge(&mut out["direct"], legs_json(&direct_t, None, &timings));
    for (path, ts) in paths.iter().zip(&through_t) {
        let df: Vec<f64> = ts
            .iter()
            .zip(&direct_t)
            .map(|(a, b)| a.first_us - b.first_us)
            .collect();
        let dt: Vec<f64> = ts
            .iter()
            .zip(&direct_t)
            .map(|(a, b)| a.total_us - b.total_us)
            .collect();
        let direct_total = percentile(&totals(&direct_t), 50.0);
        out[&path.name] = json!({
            "first_us": summary(&firsts(ts)),
            "total_us": summary(&totals(ts)),
            "added_first_us": summary(&df),
            "added_total_us": summary(&dt),
            "added_total_pct_p50": 100.0 * percentile(&dt, 50.0) / direct_total,
        });
        merge(
            &mut out[&path.name],
            legs_json(ts, Some(&direct_t), &timings),
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `extra`'s fields added to the object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_after_the_empty_role_delta_counts() {
        let both = br#"data: {"delta":{"role":"assistant","content":""}}

data: {"delta":{"content":" tok0"}}

"#;
        assert!(super::has_token(both));
        assert!(!super::has_token(br#"data: {"delta":{"content":""}}"#));
    }
}
