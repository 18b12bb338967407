//! The real layer order of [`super::service_with`] over a stub leaf: a
//! well-formed gRPC request passes the policy; a refused token never reaches the leaf and is a gRPC status; an accepted
//! one reaches it with its identity and the caller's limits in the one
//! request context, and every response carries the request id.

use super::{
    BoxError, EdgeBody, RequestContext, context::Identity, message_size::Replayed, service_with,
};
use crate::{Edge, Transport, auth::mint_token};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use http_body_util::{BodyExt, Empty};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tower::ServiceExt;
use vibectl_config::{Config, Secret};
use vibectl_proto::wire::{LIMITS_HEADER, Method};

const SECRET: &str = "stack-test-secret-0123456789abcdefgh";

#[tokio::test]
async fn the_layers_run_in_order_over_a_stub_leaf() {
    let state = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[edge]\nstate_dir = \"{}\"\n[limits.global]\nmax_requests_per_minute = 60\n",
        state.path().display()
    );
    let config = Config::from_toml(&text, std::path::Path::new("t.toml")).expect("config");
    let edge = Edge::new(
        Arc::new(config),
        Transport::Insecure,
        Some(Secret::new(SECRET)),
        None,
    )
    .expect("edge");
    let seen: Arc<Mutex<Vec<RequestContext>>> = Arc::default();
    let record = seen.clone();
    let leaf = tower::service_fn(move |request: Request<Replayed<Empty<bytes::Bytes>>>| {
        let context = RequestContext::of(&request).cloned().unwrap_or_default();
        record.lock().expect("lock").push(context);
        async {
            let body: EdgeBody = Empty::new().map_err(|never| match never {}).boxed_unsync();
            let mut response = Response::new(body);
            let ok = HeaderValue::from_static("0");
            response.headers_mut().insert("grpc-status", ok);
            Ok::<_, BoxError>(response)
        }
    });
    let service = service_with(&edge, leaf);
    let request = |token: Option<&str>| {
        let mut request = Request::post(Method::GetServerInfo.path())
            .header("content-type", "application/grpc")
            .body(Empty::new())
            .expect("request");
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("ascii");
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        request
    };

    let refused = service
        .clone()
        .oneshot(request(None))
        .await
        .expect("infallible");
    assert_eq!(refused.headers()["grpc-status"], "16");
    assert!(refused.headers().contains_key("x-request-id"));
    assert!(seen.lock().expect("lock").is_empty(), "auth stops it");

    let token = mint_token(
        &Secret::new(SECRET),
        "vibectl-server",
        "alice",
        Duration::from_secs(60),
    )
    .expect("token");
    let passed = service
        .oneshot(request(Some(&token)))
        .await
        .expect("infallible");
    assert_eq!(passed.headers()["grpc-status"], "0");
    assert!(passed.headers().contains_key("x-request-id"));
    let seen = seen.lock().expect("lock");
    let context = seen.first().expect("the leaf was called");
    assert_eq!(context.identity().map(Identity::sub), Some("alice"));
    assert_eq!(
        context
            .core_headers
            .get(LIMITS_HEADER)
            .map(|v| v.as_bytes()),
        Some(&b"rpm=60"[..])
    );
}
