//! The one place where typed errors become gRPC statuses. Inside the stack
//! errors travel boxed; here an [`AuthError`] becomes `UNAUTHENTICATED`, a
//! [`ForwardError`] `UNAVAILABLE` or `DEADLINE_EXCEEDED`, and anything else
//! `INTERNAL` with a generic message (the detail is logged, never sent).
//! After this layer the service cannot fail.

use crate::{
    auth::AuthError,
    conn::streams::ClientReset,
    http::{
        BoxError, EdgeBody, ForwardError,
        grpc_status::{GrpcCode, response},
    },
};
use futures::{
    FutureExt,
    future::{Either, Map},
};
use http::Response;
use std::{
    convert::Infallible,
    future::Ready,
    task::{Context, Poll},
};
use tower::{Layer, Service};
use vibectl_proto::wire::error_chain;

/// The rescue layer (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue {
            inner,
            not_ready: None,
        }
    }
}

/// Turns every error of `S` (readiness included) into a gRPC status
/// response; its own error type is `Infallible`.
#[derive(Debug)]
pub struct Rescue<S> {
    inner: S,
    /// Why `inner` could not become ready; the next call answers with it.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

impl<S, R> Service<R> for Rescue<S>
where
    S: Service<R, Response = Response<EdgeBody>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = Response<EdgeBody>;
    type Error = Infallible;
    /// The inner call's future mapped by [`rescue`], or a rescued
    /// readiness error (no box per call).
    type Future = Either<Ready<Result<Response<EdgeBody>, Infallible>>, Map<S::Future, Rescuer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A readiness error is kept and answered by the next call, so it is
        // rescued too and this service stays infallible.
        if self.not_ready.is_none()
            && let Err(error) = std::task::ready!(self.inner.poll_ready(cx))
        {
            self.not_ready = Some(error);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        if let Some(error) = self.not_ready.take() {
            return Either::Left(std::future::ready(rescue(Err(error))));
        }
        Either::Right(self.inner.call(request).map(rescue as Rescuer))
    }
}

/// [`rescue`], as the type of the response future's map.
type Rescuer = fn(Result<Response<EdgeBody>, BoxError>) -> Result<Response<EdgeBody>, Infallible>;

/// Maps a failed request to its gRPC status response; passes responses on.
pub fn rescue(
    result: Result<Response<EdgeBody>, BoxError>,
) -> Result<Response<EdgeBody>, Infallible> {
    match result {
        Ok(response) => Ok(response),
        Err(error) => Ok(to_status(error)),
    }
}

fn to_status(error: BoxError) -> Response<EdgeBody> {
    if let Some(auth) = error.downcast_ref::<AuthError>() {
        return response(GrpcCode::Unauthenticated, &auth.client_message());
    }
    if let Some(forward) = error.downcast_ref::<ForwardError>() {
        tracing::warn!(error = %forward, "cannot forward to the core");
        return response(forward.code(), &forward.client_message());
    }
    if reset_by_client(error.as_ref()) {
        // The client reset the stream while the edge read its body: not an
        // error of the edge (and logged per stream only at debug, so a
        // resetting client cannot amplify the log).
        tracing::debug!("the client reset the stream");
        let mut r = response(GrpcCode::Cancelled, "the client cancelled the call");
        r.extensions_mut().insert(ClientReset);
        return r;
    }
    tracing::warn!(error = %error_chain(error.as_ref()), "unexpected error in the request path");
    response(GrpcCode::Internal, "internal error in the LLM proxy edge")
}

/// Whether `error` comes from the client's RST_STREAM (an h2 reset sent
/// by the remote end), anywhere in its source chain.
fn reset_by_client(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.is_reset()
            && h2.is_remote()
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(error: BoxError) -> (String, String) {
        let r = rescue(Err(error)).unwrap_or_else(|never| match never {});
        let get = |k: &str| r.headers()[k].to_str().expect("ascii").to_owned();
        (get("grpc-status"), get("grpc-message"))
    }

    #[test]
    fn each_error_type_has_its_status() {
        assert_eq!(status(Box::new(AuthError::TokenExpired)).0, "16");
        let unavailable = ForwardError::CoreUnavailable {
            address: "10.0.0.7:50052".into(),
            reason: "connection refused".into(),
        };
        let (code, message) = status(Box::new(unavailable));
        assert_eq!(code, "14");
        assert!(
            !message.contains("10.0.0.7"),
            "no internal detail: {message}"
        );
        let (code, message) = status("some internal detail".into());
        assert_eq!(code, "13");
        assert!(!message.contains("detail"), "{message}");
    }

    /// Fails readiness once (the core unreachable), then answers with its
    /// own status (CANCELLED, to tell it from the rescued one).
    #[derive(Clone, Default)]
    struct FlakyReady {
        failed: bool,
    }

    impl Service<()> for FlakyReady {
        type Response = Response<EdgeBody>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<EdgeBody>, BoxError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if std::mem::replace(&mut self.failed, true) {
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(Box::new(ForwardError::CoreUnavailable {
                address: "127.0.0.1:1".into(),
                reason: "connection refused".into(),
            })))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(response(GrpcCode::Cancelled, "from the service")))
        }
    }

    #[tokio::test]
    async fn a_readiness_error_is_answered_and_the_next_call_goes_through() {
        use tower::ServiceExt;
        let mut service = RescueLayer.layer(FlakyReady::default());
        let code = |r: &Response<EdgeBody>| r.headers()["grpc-status"].to_str().unwrap().to_owned();
        let first = service.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(code(&first), "14", "UNAVAILABLE, from the readiness error");
        let second = service.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(code(&second), "1", "the service's own answer");
    }
}
