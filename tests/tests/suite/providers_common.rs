//! What the OpenAI and Anthropic provider tests share: a core whose one
//! provider points at a fake provider (a real HTTP server speaking that
//! provider's wire format), and the checks whose expected behaviour is the
//! same for every provider. Each provider's file still has its own named
//! tests; only the bodies they share live here.

use crate::support::{
    self, Core, WAIT, assert_cost, assert_names, complete_of, config, error_of, failure, key_file,
    kinds, metrics_of, success, texts,
};
use futures::StreamExt;
use std::marker::PhantomData;
use vibectl_proto::{
    ExecuteError, ExecuteRequest, ExecuteResponse, ExecutionMetrics, StreamChunk,
    stream_chunk::ChunkType,
};
use vibectl_tests::{
    fake_openai::{Fake, Script, common::Dialect},
    harness::next_chunk,
};

/// One provider as the tests configure it: `[providers.NAME]` of kind
/// NAME, one model with an alias and prices, an API key in a file.
pub struct Provider<D> {
    pub name: &'static str,
    pub model: &'static str,
    pub upstream_model: &'static str,
    pub alias: &'static str,
    /// USD per million input and output tokens.
    pub prices: (f64, f64),
    pub key: &'static str,
    dialect: PhantomData<D>,
}

/// A fake provider and a core that calls it.
pub struct Setup<D> {
    pub fake: Fake<D>,
    pub core: Core,
    /// Holds the provider's key file.
    dir: tempfile::TempDir,
}

impl<D> Setup<D> {
    /// Writes `key` into the provider's key file (a rotated Secret).
    pub fn rotate_key(&self, key: &str) {
        key_file(self.dir.path(), key);
    }
}

impl<D: Dialect + Default> Provider<D> {
    /// `name` (its provider table and kind), `[model, upstream_model,
    /// alias]`, prices in USD per million input and output tokens, and key.
    pub const fn new(
        name: &'static str,
        [model, upstream_model, alias]: [&'static str; 3],
        prices: (f64, f64),
        key: &'static str,
    ) -> Self {
        Self {
            name,
            model,
            upstream_model,
            alias,
            prices,
            key,
            dialect: PhantomData,
        }
    }

    /// Starts a fake speaking `D` with `script`, and a core whose provider
    /// points at it.
    pub async fn start(&self, script: Script) -> Setup<D> {
        self.start_with(script, "", "").await
    }

    /// [`Self::start`] with `provider_extra` in the provider's table
    /// (`retry_initial_backoff = "10ms"` unless it sets it) and
    /// `model_extra` in the model's.
    pub async fn start_with(
        &self,
        script: Script,
        provider_extra: &str,
        model_extra: &str,
    ) -> Setup<D> {
        let fake = Fake::<D>::start(script).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let backoff = if provider_extra.contains("retry_initial_backoff") {
            ""
        } else {
            "retry_initial_backoff = \"10ms\""
        };
        let cfg = config(&format!(
            r#"
[providers.{name}]
kind = "{name}"
base_url = "{base}"
api_key_file = "{key}"
{backoff}
{provider_extra}

[[models]]
id = "{model}"
provider = "{name}"
upstream_model = "{upstream}"
aliases = ["{alias}"]
input_usd_per_mtok = {input}
output_usd_per_mtok = {output}
{model_extra}
"#,
            name = self.name,
            base = fake.base_url(),
            key = key_file(dir.path(), self.key),
            model = self.model,
            upstream = self.upstream_model,
            alias = self.alias,
            input = self.prices.0,
            output = self.prices.1,
        ));
        let core = Core::start(cfg).await;
        Setup { fake, core, dir }
    }

    /// The cost of `input` and `output` tokens at this model's prices.
    pub fn cost(&self, (input, output): (i32, i32)) -> f64 {
        f64::from(input) * self.prices.0 / 1e6 + f64::from(output) * self.prices.1 / 1e6
    }

    /// A request for this provider's model, with only a user fragment.
    pub fn request(&self, user: &str, id: &str) -> ExecuteRequest {
        support::request(Some(self.model), &[], &[user], id)
    }

    /// A stream of a gated script: the first text chunk (`first`) arrives
    /// while the fake still holds the rest back; then the gate opens and
    /// every chunk until the end is returned.
    pub async fn stream_gated(
        &self,
        setup: &Setup<D>,
        request: ExecuteRequest,
        first: &str,
    ) -> Vec<StreamChunk> {
        let mut stream = setup.core.open_stream(request).await;
        let head = next_chunk(&mut stream).await;
        assert_eq!(head.chunk_type, Some(ChunkType::TextChunk(first.into())));
        setup.fake.release_gate();
        let mut chunks = vec![head];
        while let Some(c) = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("in time")
        {
            chunks.push(c.expect("chunk"));
        }
        chunks
    }

    /// `chunks` are the `text` chunks, then `complete` naming this model,
    /// then the metrics with `tokens` (input, output), their total and
    /// cost, no retry; every chunk carries `id`.
    pub fn assert_streamed(
        &self,
        chunks: &[StreamChunk],
        text: &[&str],
        id: &str,
        tokens: (i32, i32),
    ) {
        let mut expected = vec!["text"; text.len()];
        expected.extend(["complete", "metrics"]);
        assert_eq!(kinds(chunks), expected);
        assert_eq!(texts(chunks), text);
        assert!(chunks.iter().all(|c| c.request_id == id));
        let done = complete_of(&chunks[text.len()]);
        assert_eq!(done.actual_model_used, self.model);
        let m = metrics_of(&chunks[text.len() + 1]);
        self.assert_metrics(m, tokens);
        assert_eq!(m.retry_count, 0);
    }

    /// A unary success with `text`, this model, and metrics for `tokens`.
    pub fn assert_unary(&self, resp: ExecuteResponse, text: &str, tokens: (i32, i32)) {
        let ok = success(resp);
        assert_eq!(ok.response_text, text);
        assert_eq!(ok.actual_model_used, self.model);
        self.assert_metrics(&ok.metrics.expect("metrics"), tokens);
    }

    fn assert_metrics(&self, m: &ExecutionMetrics, tokens: (i32, i32)) {
        let (input, output) = tokens;
        assert_eq!(
            (m.input_tokens, m.output_tokens, m.total_tokens),
            (Some(input), Some(output), Some(input + output))
        );
        assert_cost(m.cost_usd, self.cost(tokens));
    }

    /// A provider's 401 is `EXECUTION_FAILED` / `provider_http_401`, its
    /// message names each of `parts` and never contains the key.
    pub fn assert_401_without_key(&self, resp: ExecuteResponse, parts: &[&str]) {
        let e = failure(resp);
        assert_eq!(e.error_code, "EXECUTION_FAILED");
        assert_eq!(e.error_details.as_deref(), Some("provider_http_401"));
        assert_names(&e.error_message, parts);
        assert!(
            !e.error_message.contains(self.key),
            "key leaked: {}",
            e.error_message
        );
    }

    /// A provider answering 307 to another server that speaks its API at
    /// the same `path`: the call fails, naming the redirect and where it
    /// pointed, and that server never sees the key or the prompt (before:
    /// reqwest followed it, re-sending `x-api-key` and the body).
    pub async fn assert_redirect_not_followed(&self, path: &str) {
        let elsewhere = Fake::<D>::start(Script::text(["followed"])).await;
        let t = self
            .start(Script::redirect(
                307,
                format!("{}{path}", elsewhere.base_url()),
            ))
            .await;
        let resp = t.core.execute(self.request("hi", "redirect-1")).await;
        let e = failure(resp);
        assert_eq!(e.error_code, "EXECUTION_FAILED");
        assert_eq!(e.error_details.as_deref(), Some("provider_http_307"));
        let origin = elsewhere.origin();
        assert_names(
            &e.error_message,
            &[
                self.name,
                "307",
                "redirect to",
                &origin,
                "not followed",
                "base_url",
            ],
        );
        assert_eq!(t.fake.requests().len(), 1, "one request, no retry");
        assert!(
            elsewhere.requests().is_empty(),
            "the redirect's target got {:?}",
            elsewhere.requests()
        );
        t.core.stop().await;
    }

    /// Dropping a stream after its first chunk (`first`) closes the
    /// provider's connection.
    pub async fn assert_drop_closes(&self, setup: &Setup<D>, request: ExecuteRequest, first: &str) {
        let mut stream = setup.core.open_stream(request).await;
        assert_eq!(
            next_chunk(&mut stream).await.chunk_type,
            Some(ChunkType::TextChunk(first.into()))
        );
        drop(stream);
        assert!(
            setup.fake.wait_closed(WAIT).await,
            "the provider saw its connection closed"
        );
    }
}

/// A stream that ends with an error chunk after `text`: the chunk kinds
/// are `text` chunks then `error`, with `details`; returns the error.
pub fn assert_error_after(chunks: &[StreamChunk], text: &[&str], details: &str) -> ExecuteError {
    let mut expected = vec!["text"; text.len()];
    expected.push("error");
    assert_eq!(kinds(chunks), expected);
    assert_eq!(texts(chunks), text);
    let e = error_of(&chunks[text.len()]);
    assert_eq!(e.error_details.as_deref(), Some(details));
    e.clone()
}

/// A stream that succeeded after one retry: `text`, `complete`, metrics
/// with `retry_count` 1; returns the metrics.
pub fn assert_retried_once(chunks: &[StreamChunk]) -> ExecutionMetrics {
    assert_eq!(kinds(chunks), ["text", "complete", "metrics"]);
    let m = metrics_of(&chunks[2]);
    assert_eq!(m.retry_count, 1);
    *m
}
