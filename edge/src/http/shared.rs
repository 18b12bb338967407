//! The request path as a connection holds it: one stack shared by every
//! connection of a listener; a call clones it onto the stack frame (its
//! layers' reference counts) and boxes only the call's future. tower's
//! `BoxCloneService` also boxed a copy of the whole stack per call (an
//! allocation, a copy and a free per call).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};
use tower::{Service, ServiceExt};

/// A call's response future.
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// A shared request path for requests `Req` and responses `Res` (see the
/// module doc); cloning it is one reference count.
pub struct SharedService<Req, Res>(Arc<dyn Handle<Req, Res>>);

impl<Req, Res> Clone for SharedService<Req, Res> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<Req, Res> std::fmt::Debug for SharedService<Req, Res> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedService")
    }
}

impl<Req: Send + 'static, Res: 'static> SharedService<Req, Res> {
    /// Shares `service`.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Req, Response = Res, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        Self(Arc::new(service))
    }
}

/// One call of the shared stack.
trait Handle<Req, Res>: Send + Sync {
    fn handle(&self, request: Req) -> CallFuture<Res>;
}

impl<S, Req, Res> Handle<Req, Res> for S
where
    S: Service<Req, Response = Res, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    fn handle(&self, request: Req) -> CallFuture<Res> {
        let mut service = self.clone();
        // The edge's layers are always ready (those that wait do it in
        // their call's future); one that is not is driven by `oneshot`.
        match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Box::pin(service.call(request)),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Box::pin(service.oneshot(request)),
        }
    }
}

impl<Req, Res> Service<Req> for SharedService<Req, Res> {
    type Response = Res;
    type Error = Infallible;
    type Future = CallFuture<Res>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.0.handle(request)
    }
}
