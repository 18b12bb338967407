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
use std::{path::PathBuf, time::Duration};
use tokio::time::Instant;
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};
use vibectl_proto::{
    ExecuteRequest, stream_chunk::ChunkType, vibectl_llm_proxy_client::VibectlLlmProxyClient,
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

/// One call's two instants, in µs from its start.
#[derive(Debug, Clone, Copy)]
struct Timing {
    first_us: f64,
    total_us: f64,
}

const PROMPT: &str = "how do I list pods?";

struct Direct {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    body: Bytes,
}

impl Direct {
    fn new(args: &Args) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let body = json!({
            "model": args.upstream_model,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        Self {
            client: Client::builder(TokioExecutor::new()).build(http),
            url: format!("{}/chat/completions", args.provider.trim_end_matches('/')),
            body: Bytes::from(body.to_string()),
        }
    }

    async fn call(&self) -> anyhow::Result<Timing> {
        let start = Instant::now();
        let req = http::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer bench-dummy-key")
            .body(Full::new(self.body.clone()))?;
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
                first = Some(start.elapsed());
            }
        }
        let first = first.context("the provider sent no token")?;
        Ok(timing(first, start.elapsed()))
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

fn timing(first: Duration, total: Duration) -> Timing {
    Timing {
        first_us: first.as_secs_f64() * 1e6,
        total_us: total.as_secs_f64() * 1e6,
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
        let start = Instant::now();
        let mut req = tonic::Request::new(ExecuteRequest {
            user_fragments: vec![PROMPT.to_owned()],
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
                    first.get_or_insert_with(|| start.elapsed());
                }
                Some(ChunkType::Error(e)) => anyhow::bail!("{}: {}", e.error_code, e.error_message),
                _ => {}
            }
        }
        let first = first.context("no text chunk")?;
        Ok(timing(first, start.elapsed()))
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
    let mut out = json!({
        "rounds": args.rounds,
        "direct": {"first_us": summary(&firsts(&direct_t)), "total_us": summary(&totals(&direct_t))},
    });
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
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
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
