//! The tonic implementation of `vibectl.llm_proxy.VibectlLLMProxy`:
//! `StreamExecute` returns the call's chunk stream as is, `Execute` collects
//! the same stream, `GetServerInfo` describes the registry and the caller's
//! limits. Model and provider errors travel in-band (status OK), as vibectl
//! expects; the limits the core enforces (input length, deadline) end the
//! call with a gRPC status.

use crate::{
    call::{self, CallContext},
    limits::CallLimits,
    metrics::{CallResult, CallSample},
    shared::Shared,
};
use futures::{Stream, StreamExt};
use http::HeaderMap;
use std::{pin::Pin, sync::Arc};
use tokio::time::Instant;
use tonic::{Request, Response, Status, metadata::MetadataMap};
use vibectl_proto::{
    ExecuteError, ExecuteRequest, ExecuteResponse, ExecuteSuccess, GetServerInfoRequest,
    GetServerInfoResponse, StreamChunk, execute_response,
    stream_chunk::ChunkType,
    vibectl_llm_proxy_server::VibectlLlmProxy,
    wire::{Caller, Method, header_names::CALLER},
};

/// The gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct ProxyService {
    shared: Arc<Shared>,
}

impl ProxyService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// The caller's `sub`, `kid` and `jti` as the edge set them in
/// `x-vibectl-caller` (all `None` without the header: auth is off).
fn caller_of(metadata: &MetadataMap) -> (Option<String>, Option<String>, Option<String>) {
    let headers: &HeaderMap = metadata.as_ref();
    let Some(value) = headers.get(&CALLER).and_then(|v| v.to_str().ok()) else {
        return (None, None, None);
    };
    let caller = Caller::parse(value);
    (
        Some(caller.sub.to_owned()),
        caller.kid.map(str::to_owned),
        caller.jti.map(str::to_owned),
    )
}

impl ProxyService {
    /// Checks what the core enforces before any provider call (the input
    /// length) and starts the call under its deadline.
    fn start(
        &self,
        request: Request<ExecuteRequest>,
        method: &'static str,
        stamped: bool,
    ) -> Result<(String, call::ChunkStream), Status> {
        let started = Instant::now();
        let limits = CallLimits::from_metadata(request.metadata());
        let (sub, kid, jti) = caller_of(request.metadata());
        let allowed_models = crate::scope::allowed_models(request.metadata());
        let mut req = request.into_inner();
        let unnamed = req
            .model_name
            .as_deref()
            .is_none_or(|n| n.trim().is_empty());
        if unnamed && allowed_models.is_some() {
            // A scoped token's default is the first model of its scope.
            req.model_name =
                crate::server_info::default_for(&self.shared.registry, allowed_models.as_deref());
        }
        if let Err(refused) = limits.check_input(&req) {
            let model = self.shared.registry.resolve(req.model_name.as_deref()).ok();
            tracing::info!(
                request_id = %req.request_id,
                method,
                sub = sub.as_deref().unwrap_or("-"),
                characters = refused.characters,
                limit = refused.limit,
                "refused: input longer than max_input_length"
            );
            let metrics = &self.shared.metrics;
            metrics.call_finished(&CallSample {
                sub: &metrics.subject_label(sub.as_deref()),
                method,
                model: model.as_ref().map(|m| m.id.as_str()),
                result: CallResult::InputLength,
                duration: started.elapsed(),
                tokens: None,
                cost_usd: 0.0,
            });
            return Err(refused.status());
        }
        // The token's model scope (an unknown model is answered in-band by the call).
        if let Some(allowed) = allowed_models.as_deref()
            && let Ok(model) = self.shared.registry.resolve(req.model_name.as_deref())
        {
            let name = req.model_name.as_deref().unwrap_or(&model.id);
            let (id, names) = self.shared.registry.scope_names(name);
            crate::scope::check(Some(allowed), &id, &names)?;
        }
        let ctx = CallContext {
            method,
            sub,
            kid,
            jti,
            deadline: limits.deadline(started),
        };
        Ok(call::run(self.shared.clone(), req, ctx, stamped))
    }
}

#[tonic::async_trait]
impl VibectlLlmProxy for ProxyService {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let (request_id, mut chunks) = self.start(request, Method::Execute.name(), false)?;
        let mut text = String::new();
        let mut model = String::new();
        let mut result = None;
        while let Some(chunk) = chunks.next().await {
            match chunk?.chunk_type {
                // The first piece as is: no copy for a one-chunk answer.
                Some(ChunkType::TextChunk(t)) if text.is_empty() => text = t,
                Some(ChunkType::TextChunk(t)) => text.push_str(&t),
                Some(ChunkType::Complete(c)) => model = c.actual_model_used,
                Some(ChunkType::FinalMetrics(metrics)) => {
                    result = Some(execute_response::Result::Success(ExecuteSuccess {
                        response_text: std::mem::take(&mut text),
                        metrics: Some(metrics),
                        actual_model_used: std::mem::take(&mut model),
                    }));
                }
                Some(ChunkType::Error(e)) => result = Some(execute_response::Result::Error(e)),
                None => {}
            }
        }
        let result = result.unwrap_or_else(|| {
            execute_response::Result::Error(ExecuteError {
                error_code: call::EXECUTION_FAILED.to_owned(),
                error_message: "the call ended without a result".to_owned(),
                error_details: None,
            })
        });
        Ok(Response::new(ExecuteResponse {
            request_id,
            result: Some(result),
        }))
    }

    type StreamExecuteStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, Status>> + Send>>;

    async fn stream_execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<Self::StreamExecuteStream>, Status> {
        let (_, chunks) = self.start(request, Method::StreamExecute.name(), true)?;
        Ok(Response::new(chunks))
    }

    async fn get_server_info(
        &self,
        request: Request<GetServerInfoRequest>,
    ) -> Result<Response<GetServerInfoResponse>, Status> {
        let limits = CallLimits::from_metadata(request.metadata());
        let allowed = crate::scope::allowed_models(request.metadata());
        let (sub, kid, _) = caller_of(request.metadata());
        let mut response = Response::new(crate::server_info::answer(
            &self.shared.registry,
            allowed.as_deref(),
            limits.server_limits(),
            self.shared.server_name.clone(),
        ));
        // The caller's remaining token and cost budgets, as response metadata.
        let caller = crate::quota::Caller {
            sub: sub.as_deref().unwrap_or("-"),
            kid: kid.as_deref(),
        };
        if let Some(value) = self.shared.usage.quotas.remaining_header(caller).await {
            response
                .metadata_mut()
                .insert(crate::quota::REMAINING_METADATA, value);
        }
        Ok(response)
    }
}
