//! JWT verification as a tower `Filter`: a request without a valid
//! `authorization: Bearer <jwt>` never reaches the forwarder; it fails with a
//! boxed [`AuthError`] that the rescue layer turns into `UNAUTHENTICATED`.
//! A valid request carries its [`Identity`] in its [`RequestContext`], for
//! the rate limits (keyed by `sub`, or the `kid`) and the forwarder
//! (`x-vibectl-caller`, and `x-vibectl-allowed-models` when the token
//! restricts models).
//!
//! Every decision is one line of the audit log ([`crate::audit`]). An
//! address (the context's `peer`, set by the accept loop) that keeps
//! failing spends its [`FailureBudget`]; until its window ends, its tokens
//! that fail the checks needing no signature are refused without
//! verification work, and a token that verifies is still served. Such an
//! address's refusals are answered after [`FailureBudget::delay`] (a
//! tarpit): a client retrying bad tokens in a loop makes one call a second
//! per connection instead of thousands, which the others would wait behind.

use super::{BoxError, context::RequestContext};
use crate::{
    audit,
    auth::{AuthError, TokenVerifier, budget::FailureBudget},
};
use http::{HeaderMap, Request, header::AUTHORIZATION};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::filter::{AsyncFilterLayer, AsyncPredicate};

pub use super::context::Identity;

/// The predicate: verifies the bearer token and records the [`Identity`].
#[derive(Debug, Clone)]
pub struct Authenticate {
    verifier: Arc<TokenVerifier>,
    budget: Arc<FailureBudget>,
}

/// The auth layer for the request path, spending `budget`.
pub fn layer(
    verifier: Arc<TokenVerifier>,
    budget: Arc<FailureBudget>,
) -> AsyncFilterLayer<Authenticate> {
    AsyncFilterLayer::new(Authenticate { verifier, budget })
}

/// The predicate's answer: at once, or after the tarpit's delay.
pub struct Checked<R> {
    result: Option<Result<R, BoxError>>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

// `R` is only moved out, never pinned.
impl<R> Unpin for Checked<R> {}

impl<R> Future for Checked<R> {
    type Output = Result<R, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(delay) = self.delay.as_mut() {
            std::task::ready!(delay.as_mut().poll(cx));
            self.delay = None;
        }
        Poll::Ready(
            self.result
                .take()
                .unwrap_or_else(|| Err("polled again".into())),
        )
    }
}

impl Authenticate {
    /// Decides on a request's headers; the identity, or why not and
    /// whether the address has spent its failure budget (its refusal is
    /// then tarpitted).
    fn decide(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        path: &str,
    ) -> Result<Identity, (AuthError, bool)> {
        let now = tokio::time::Instant::now();
        let over_budget = peer.is_some_and(|p| self.budget.check(p.ip(), now).is_err());
        let result = match bearer_token(headers) {
            Err(error) => {
                audit::refused_early(peer, path, &error);
                Err(error)
            }
            Ok(token) => {
                if over_budget && let Err(error) = self.verifier.precheck(token) {
                    self.budget.refused();
                    audit::refused_early(peer, path, &error);
                    return Err((error, true));
                }
                let decision = self.verifier.decide(token);
                audit::decision(peer, path, &decision);
                decision.verdict.map(Identity::new)
            }
        };
        result.map_err(|error| {
            let over = peer.is_some_and(|p| self.budget.record_failure(p.ip(), now));
            (error, over)
        })
    }
}

impl<B> AsyncPredicate<Request<B>> for Authenticate {
    type Request = Request<B>;
    type Future = Checked<Request<B>>;

    fn check(&mut self, mut request: Request<B>) -> Self::Future {
        let peer = RequestContext::of(&request).and_then(|c| c.peer);
        let (result, delay) = match self.decide(request.headers(), peer, request.uri().path()) {
            Ok(identity) => {
                let span = tracing::Span::current();
                span.record("sub", identity.sub());
                RequestContext::of_mut(&mut request).verified(identity);
                (Ok(request), None)
            }
            Err((error, over)) => {
                let delay = self.budget.delay().filter(|_| over);
                let error: BoxError = Box::new(error);
                (Err(error), delay.map(|d| Box::pin(tokio::time::sleep(d))))
            }
        };
        Checked {
            result: Some(result),
            delay,
        }
    }
}

/// The token of `authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthError::MissingHeader)?;
    // On bytes: a header value holds no control byte but tab, so ASCII
    // whitespace is all `trim` could remove, and the scheme ends at the
    // first space (str searches and trims cost ~600 instructions per call).
    let value = value.as_bytes().trim_ascii();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(AuthError::NotBearer)?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::NotBearer);
    }
    // ASCII only, as `HeaderValue::to_str`: an OR of every byte, which the
    // compiler vectorises (`is_ascii` cost ~440 instructions for a JWT).
    if token.iter().fold(0, |all, &b| all | b) >= 0x80 {
        return Err(AuthError::NotBearer);
    }
    let token = std::str::from_utf8(token).map_err(|_| AuthError::NotBearer)?;
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::MissingHeader)
        );
        assert_eq!(
            bearer_token(&with("Basic dXNlcjpwYXNz")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            bearer_token(&with("token-without-scheme")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(bearer_token(&with("Bearer ")), Err(AuthError::NotBearer));
        assert_eq!(bearer_token(&with("Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer_token(&with("bearer  a.b.c ")), Ok("a.b.c"));
        assert_eq!(bearer_token(&with("\tBearer a.b.c\t")), Ok("a.b.c"));
        assert_eq!(
            bearer_token(&with("Bearer\ta.b.c")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(bearer_token(&with("Bearer  ")), Err(AuthError::NotBearer));
        let latin = HeaderValue::from_bytes(b"Bearer a.b\xe9").expect("value");
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, latin);
        assert_eq!(bearer_token(&h), Err(AuthError::NotBearer));
    }

    #[test]
    fn messages_say_how_to_send_a_token() {
        for err in [AuthError::MissingHeader, AuthError::NotBearer] {
            let msg = err.client_message();
            assert!(msg.contains("authorization: Bearer <jwt>"), "{msg}");
        }
        assert!(
            AuthError::MissingHeader
                .client_message()
                .contains("missing")
        );
        assert!(
            AuthError::NotBearer
                .client_message()
                .contains("not a Bearer")
        );
    }
}
