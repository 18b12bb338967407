//! The innermost service: sends each HTTP/2 stream to the core as it is —
//! headers, body frames and trailers, both ways, frame by frame — after
//! rewriting the identity headers: client-sent `x-vibectl-*` and
//! `authorization` are removed (and `te`, `user-agent`, which the core
//! does not read), `x-vibectl-caller` is set from the verified token.
//! Dropping the response (a client reset) drops the core stream, so the
//! cancellation reaches the provider.

use crate::{
    http::{
        BoxError, EdgeBody,
        body::{GrpcResponseBody, IdleTimeout},
        context::RequestContext,
        core_client::CoreClient,
        grpc_status::GrpcCode,
        request_id::X_REQUEST_ID,
    },
    limits::deadline::ResponseWait,
};
use http::{HeaderMap, Request, Response, header};
use http_body::Body;
use http_body_util::BodyExt;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use vibectl_proto::wire::IDENTITY_PREFIX;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection to the core, or it failed before response headers.
    #[error("the core at {address} is unavailable: {reason}")]
    CoreUnavailable {
        /// `edge.core_address`.
        address: String,
        /// The transport error, with its sources.
        reason: String,
    },
    /// The core sent no response headers in time.
    #[error("the core at {address} sent no response headers within {after:?}")]
    CoreResponseTimeout {
        /// `edge.core_address`.
        address: String,
        /// `edge.core_response_timeout`.
        after: Duration,
    },
}

impl ForwardError {
    /// The gRPC status for the client.
    pub fn code(&self) -> GrpcCode {
        match self {
            Self::CoreUnavailable { .. } => GrpcCode::Unavailable,
            Self::CoreResponseTimeout { .. } => GrpcCode::DeadlineExceeded,
        }
    }

    /// The message for the client: no internal address or error detail.
    pub fn client_message(&self) -> String {
        match self {
            Self::CoreUnavailable { .. } => {
                "the LLM proxy core is unavailable; try again shortly".to_owned()
            }
            Self::CoreResponseTimeout { after, .. } => format!(
                "the LLM proxy core sent no response within {} s (edge.core_response_timeout \
                 for calls without a deadline); the call was cancelled",
                after.as_secs_f64()
            ),
        }
    }
}

/// Forwards to the core.
#[derive(Debug, Clone)]
pub struct Forward {
    core: CoreClient,
    idle: Duration,
}

impl Forward {
    /// Forwards over `core`, bounding the silence between frames by `idle`.
    pub fn new(core: CoreClient, idle: Duration) -> Self {
        Self { core, idle }
    }
}

impl<B> tower::Service<Request<B>> for Forward
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<EdgeBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let core = self.core.clone();
        let idle = self.idle;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let context = parts
                .extensions
                .remove::<RequestContext>()
                .unwrap_or_default();
            rewrite_identity(&mut parts.headers);
            // The request id stays on the edge (its span, the response):
            // the core reads none (its ledger and logs use the message's
            // `request_id`), and a value new on every call is a literal
            // that HPACK encodes, and the core decodes, on every call.
            parts.headers.remove(X_REQUEST_ID);
            // The verified caller (`sub`, key and token ids, for the core's
            // quotas and ledger) and the token's model scope, if any.
            if let Some(identity) = context.identity() {
                identity.set_core_headers(&mut parts.headers);
            }
            // The edge's own headers for the core (the caller's limits), set
            // by the limits layer: added after the client's were stripped.
            context.core_headers.set_on(&mut parts.headers);
            // A call with a deadline waits for the core up to it (plus the
            // grace): the limits layer's backstop, armed at the call's
            // start for that same moment, ends it then. One without waits
            // `edge.core_response_timeout`.
            let body = IdleTimeout::new(body, idle).boxed_unsync();
            let request = Request::from_parts(parts, body);
            let response = match context.response_wait {
                Some(ResponseWait(_)) => core.send_bounded_by_caller(request).await?,
                None => core.send(request).await?,
            };
            Ok(response.map(|b| GrpcResponseBody::new(b, idle).boxed_unsync()))
        })
    }
}

/// Removes what a client must not send the core (`authorization`, every
/// `x-vibectl-*`, hop-by-hop headers) and what the core does not read
/// (`te`, `user-agent`: on every call, each would cost its HPACK encoding
/// here and its decoding there). One pass over the names for the rest (a
/// call carries none of them), instead of a hashed lookup per name that
/// could be there. Forward then sets the verified caller's own.
pub fn rewrite_identity(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::TE);
    headers.remove(header::USER_AGENT);
    if headers.keys().any(stripped) {
        let doomed: Vec<_> = headers.keys().filter(|n| stripped(n)).cloned().collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// A header the core must not get from a client: identity (`x-vibectl-*`),
/// credentials or hop-by-hop.
fn stripped(name: &header::HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with(IDENTITY_PREFIX)
        || matches!(
            name,
            "authorization"
                | "connection"
                | "transfer-encoding"
                | "upgrade"
                | "proxy-authorization"
                | "host"
                | "keep-alive"
                | "proxy-connection"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use vibectl_proto::wire::CALLER_HEADER;

    #[test]
    fn identity_headers_cannot_be_spoofed() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer secret.token.here"),
        );
        h.insert(CALLER_HEADER, HeaderValue::from_static("admin"));
        h.insert("x-vibectl-sub", HeaderValue::from_static("admin"));
        h.insert("X-Vibectl-Role", HeaderValue::from_static("root"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("user-agent", HeaderValue::from_static("grpc-python/1.66"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        rewrite_identity(&mut h);
        assert!(h.get(CALLER_HEADER).is_none());
        assert!(h.get("x-vibectl-sub").is_none());
        assert!(h.get("x-vibectl-role").is_none());
        assert!(h.get("authorization").is_none());
        assert!(h.get("te").is_none(), "the core reads no te");
        assert!(h.get("user-agent").is_none(), "nor user-agent");
        assert_eq!(h["grpc-encoding"], "gzip");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h.len(), 2, "{h:?}");
    }
}
