//! `x-request-id`, and the credentials marked sensitive, in one layer: a
//! client's `x-request-id` is kept, else a new random id is set; either is
//! echoed on the response (unless the response has its own). The request's
//! `authorization` and `x-request-id` are marked sensitive before anything
//! could log or re-encode them: HPACK never indexes them and `Debug`
//! redacts them. The id is not sent to the core (forward removes it: the
//! core reads none). A request id is new on every call, so HPACK must not
//! index it (echoed to the client), or each call
//! inserts an entry that evicts the ones that do repeat, and the encoder
//! walks a chain of stale ids on every call.
//!
//! (tower-http's `SetSensitiveRequestHeaders`, `SetRequestId` and
//! `PropagateRequestId` did the same in three layers, and stored the id in
//! the request's and the response's extensions, which nothing read: two
//! allocations and some 1,500 instructions per call.)

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response,
    header::{AUTHORIZATION, Entry},
};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tower::{Layer, Service};

/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A new request id: 96 random bits in base64url, 16 characters (as
/// unlikely to repeat as a UUID v4's 122 bits over any log's lifetime; a
/// UUID's 36 characters were Huffman-coded by HPACK on every response),
/// marked sensitive (HPACK sends it as a never-indexed literal).
pub fn new_request_id() -> HeaderValue {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use rand::RngCore;
    let mut random = [0u8; 12];
    rand::rng().fill_bytes(&mut random);
    let mut text = [0u8; 16];
    let id = match URL_SAFE_NO_PAD.encode_slice(random, &mut text) {
        Ok(16) => HeaderValue::from_bytes(&text).ok(),
        _ => None,
    };
    let mut value = id.unwrap_or(HeaderValue::from_static("-"));
    value.set_sensitive(true);
    value
}

/// Headers the edge adds to a forwarded request beside the client's (room
/// for `x-request-id`, `grpc-timeout`, `x-vibectl-caller`,
/// `-allowed-models` and `-limits`, made once: growing the map insert by
/// insert re-hashed it up to twice per call).
const ADDED_HEADERS: usize = 5;

/// Marks every `authorization` and `x-request-id` value sensitive, in one
/// pass over the headers (two hashed lookups cost more: a request carries
/// a handful of headers); the first `x-request-id`, if any.
fn mark_sensitive(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut id = None;
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION {
            value.set_sensitive(true);
        } else if name == X_REQUEST_ID {
            value.set_sensitive(true);
            id.get_or_insert_with(|| value.clone());
        }
    }
    id
}

/// The layer (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer {
    on_request: bool,
}

impl RequestIdLayer {
    /// `on_request`: whether a new id is also set on the request, for the
    /// request span (without it, the id only goes back on the response:
    /// nothing after this layer reads it, and forward would remove it).
    pub fn new(on_request: bool) -> Self {
        Self { on_request }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId {
            inner,
            on_request: self.on_request,
        }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
    on_request: bool,
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = EchoId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let headers = request.headers_mut();
        headers.reserve(ADDED_HEADERS);
        let id = match mark_sensitive(headers) {
            Some(id) => id,
            None => {
                let id = new_request_id();
                if self.on_request {
                    headers.append(X_REQUEST_ID, id.clone());
                }
                id
            }
        };
        EchoId {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The response future: the request id set on the response.
    pub struct EchoId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for EchoId<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take()
            && let Entry::Vacant(entry) = response.headers_mut().entry(X_REQUEST_ID)
        {
            entry.insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn ids_are_set_or_kept_echoed_and_never_indexed() {
        let echo = tower::service_fn(|request: Request<()>| async move {
            let seen = request.headers().clone();
            Ok::<_, std::convert::Infallible>(Response::new(seen))
        });
        let unlogged = RequestIdLayer::new(false).layer(echo);
        let response = unlogged.oneshot(Request::new(())).await.expect("ok");
        assert!(response.headers()[X_REQUEST_ID].is_sensitive(), "echoed");
        assert!(response.body().is_empty(), "no span: not on the request");
        let service = RequestIdLayer::new(true).layer(echo);
        let response = service.clone().oneshot(Request::new(())).await.expect("ok");
        let id = &response.headers()[X_REQUEST_ID];
        assert!(id.is_sensitive(), "never indexed by HPACK");
        let text = id.to_str().expect("ascii");
        assert_eq!(text.len(), 16, "{text}");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url: {text}"
        );
        assert_ne!(new_request_id(), new_request_id(), "random");
        assert_eq!(
            response.body()[X_REQUEST_ID],
            text,
            "the request carried it"
        );

        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_static("client-id"));
        request
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        let response = service.oneshot(request).await.expect("ok");
        assert_eq!(response.headers()[X_REQUEST_ID], "client-id");
        assert!(response.body()[X_REQUEST_ID].is_sensitive());
        assert!(response.body()[AUTHORIZATION].is_sensitive());
    }
}
