//! `x-request-id`, and the credentials marked sensitive, in one layer: a
//! client's `x-request-id` is kept, else a new UUID is set; either is
//! echoed on the response (unless the response has its own). The request's
//! `authorization` and `x-request-id` are marked sensitive before anything
//! could log or re-encode them: HPACK never indexes them and `Debug`
//! redacts them. A request id is new on every call, so HPACK must not
//! index it (on the core leg, nor echoed to the client), or each call
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

/// A new request id: a random UUID (v4), encoded in place, marked
/// sensitive (HPACK sends it as a never-indexed literal).
pub fn new_request_id() -> HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    let mut value = HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"));
    value.set_sensitive(true);
    value
}

/// Headers the edge adds to a forwarded request beside the client's:
/// `x-request-id`, `grpc-timeout`, `x-vibectl-sub`, `-jti` and the four
/// `x-vibectl-limit-*` (room made once: growing the map insert by insert
/// re-hashed it up to twice per call).
const ADDED_HEADERS: usize = 8;

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
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
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
                headers.append(X_REQUEST_ID, id.clone());
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
        let service = RequestIdLayer.layer(echo);
        let response = service.clone().oneshot(Request::new(())).await.expect("ok");
        let id = &response.headers()[X_REQUEST_ID];
        assert!(id.is_sensitive(), "never indexed by HPACK");
        let text = id.to_str().expect("ascii");
        assert_eq!(
            uuid::Uuid::parse_str(text).map(|u| u.get_version_num()),
            Ok(4)
        );
        assert_eq!(response.body()[X_REQUEST_ID], text, "the request carried it");

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
