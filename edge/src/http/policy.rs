//! The request policy, before any auth work: only what a gRPC client of
//! this service sends is forwarded. As gRPC over HTTP/2 specifies, a
//! method other than `POST` gets HTTP 405 and a content type other than
//! `application/grpc` / `application/grpc+proto` HTTP 415 (both also carry
//! a `grpc-status`, for gRPC clients); a path outside the allowlist (the
//! vibectl service, `grpc.health.v1.Health`, and server reflection only
//! with `edge.forward_reflection = true`) gets `UNIMPLEMENTED`. None of
//! them reaches the token check, the limits or the core.

use crate::http::{
    BoxError, EdgeBody,
    grpc_status::{GrpcCode, response},
};
use futures::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use std::{
    future::Ready,
    task::{Context, Poll},
};
use vibectl_proto::wire;

/// The gRPC health service's methods.
const HEALTH: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];
/// Server reflection (v1 and v1alpha).
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Why a request is refused, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `POST`: 405.
    Method,
    /// Not a gRPC content type: 415.
    ContentType,
    /// Server reflection while `edge.forward_reflection = false`.
    Reflection,
    /// Not a method this edge forwards.
    Path,
}

/// Decides on a request's method, content type and path.
pub fn check(
    method: &Method,
    content_type: Option<&HeaderValue>,
    path: &str,
    forward_reflection: bool,
) -> Result<(), Refusal> {
    if method != Method::POST {
        return Err(Refusal::Method);
    }
    if !content_type.is_some_and(is_grpc) {
        return Err(Refusal::ContentType);
    }
    if REFLECTION.contains(&path) {
        return if forward_reflection {
            Ok(())
        } else {
            Err(Refusal::Reflection)
        };
    }
    if wire::Method::from_path(path).is_none() && !HEALTH.contains(&path) {
        return Err(Refusal::Path);
    }
    Ok(())
}

/// `application/grpc` or `application/grpc+proto`, parameters allowed.
fn is_grpc(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/grpc")
        || media.eq_ignore_ascii_case("application/grpc+proto")
}

/// The answer to a refused request.
pub fn refusal_response(refusal: Refusal, path: &str) -> Response<EdgeBody> {
    let (status, code, message) = match refusal {
        Refusal::Method => (
            StatusCode::METHOD_NOT_ALLOWED,
            GrpcCode::Unimplemented,
            "only POST is served (gRPC over HTTP/2)".to_owned(),
        ),
        Refusal::ContentType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GrpcCode::Unimplemented,
            "content-type must be application/grpc or application/grpc+proto".to_owned(),
        ),
        Refusal::Reflection => (
            StatusCode::OK,
            GrpcCode::Unimplemented,
            "server reflection is not served through the edge (edge.forward_reflection)".to_owned(),
        ),
        Refusal::Path => (
            StatusCode::OK,
            GrpcCode::Unimplemented,
            format!(
                "method {} is not served by this proxy",
                path.escape_default()
            ),
        ),
    };
    let mut r = response(code, &message);
    *r.status_mut() = status;
    if refusal == Refusal::Method {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

/// The layer: see the module doc.
#[derive(Debug, Clone, Copy)]
pub struct PolicyLayer {
    forward_reflection: bool,
}

impl PolicyLayer {
    /// The policy; reflection forwarded only with `forward_reflection`.
    pub fn new(forward_reflection: bool) -> Self {
        Self { forward_reflection }
    }
}

impl<S> tower::Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Policy<S> {
        Policy {
            inner,
            forward_reflection: self.forward_reflection,
        }
    }
}

/// The service of [`PolicyLayer`].
#[derive(Debug, Clone)]
pub struct Policy<S> {
    inner: S,
    forward_reflection: bool,
}

impl<S, B> tower::Service<Request<B>> for Policy<S>
where
    S: tower::Service<Request<B>, Response = Response<EdgeBody>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<EdgeBody>;
    type Error = BoxError;
    /// The inner call's future, or the refusal (no box per call).
    type Future = Either<S::Future, Ready<Result<Response<EdgeBody>, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let content_type = request.headers().get(header::CONTENT_TYPE);
        match check(
            request.method(),
            content_type,
            path,
            self.forward_reflection,
        ) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(refusal) => {
                tracing::debug!(?refusal, method = %request.method(), "request refused by policy");
                let answer = refusal_response(refusal, path);
                Either::Right(std::future::ready(Ok(answer)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_posts_to_allowed_paths_pass() {
        let grpc = HeaderValue::from_static("application/grpc");
        let execute = wire::Method::Execute.path();
        assert_eq!(check(&Method::POST, Some(&grpc), execute, false), Ok(()));
        let proto = HeaderValue::from_static("application/grpc+proto; charset=utf-8");
        assert_eq!(check(&Method::POST, Some(&proto), HEALTH[0], false), Ok(()));
        assert_eq!(
            check(&Method::GET, Some(&grpc), execute, false),
            Err(Refusal::Method)
        );
        assert_eq!(
            check(&Method::PUT, Some(&grpc), execute, false),
            Err(Refusal::Method)
        );
        for bad in [
            "application/json",
            "text/plain",
            "application/grpc-web",
            "application/grpc+json",
        ] {
            let ct = HeaderValue::from_static(bad);
            assert_eq!(
                check(&Method::POST, Some(&ct), execute, false),
                Err(Refusal::ContentType),
                "{bad}"
            );
        }
        assert_eq!(
            check(&Method::POST, None, execute, false),
            Err(Refusal::ContentType)
        );
        assert_eq!(
            check(&Method::POST, Some(&grpc), REFLECTION[0], false),
            Err(Refusal::Reflection)
        );
        assert_eq!(
            check(&Method::POST, Some(&grpc), REFLECTION[1], true),
            Ok(())
        );
        assert_eq!(
            check(
                &Method::POST,
                Some(&grpc),
                "/vibectl.llm_proxy.VibectlLLMProxy/Nope",
                false
            ),
            Err(Refusal::Path)
        );
        let r = refusal_response(Refusal::Method, execute);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
        assert_eq!(r.headers()["grpc-status"], "12");
        let r = refusal_response(Refusal::ContentType, execute);
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
