//! JWT verification as a tower `Filter`: a request without a valid
//! `authorization: Bearer <jwt>` never reaches the forwarder; it fails with a
//! boxed [`AuthError`] that the rescue layer turns into `UNAUTHENTICATED`.
//! A valid request carries its [`Identity`] in its [`RequestContext`], for
//! the rate limits (keyed by `sub`, or the `kid`) and the forwarder
//! (`x-vibectl-sub`, and `x-vibectl-allowed-models` when the token
//! restricts models).
//!
//! Every decision is one line of the audit log ([`crate::audit`]). An
//! address (the context's `peer`, set by the accept loop) that keeps
//! failing spends its [`FailureBudget`]; until its window ends, its tokens
//! that fail the checks needing no signature are refused without
//! verification work, and a token that verifies is still served.

use super::{BoxError, context::RequestContext};
use crate::{
    audit,
    auth::{AuthError, TokenVerifier, budget::FailureBudget},
};
use http::{HeaderMap, Request, header::AUTHORIZATION};
use std::{net::SocketAddr, sync::Arc};
use tower::filter::{FilterLayer, Predicate};

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
) -> FilterLayer<Authenticate> {
    FilterLayer::new(Authenticate { verifier, budget })
}

impl Authenticate {
    /// Decides on a request's headers; the identity, or why not.
    fn decide(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        path: &str,
    ) -> Result<Identity, AuthError> {
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
                    return Err(error);
                }
                let decision = self.verifier.decide(token);
                audit::decision(peer, path, &decision);
                decision.verdict.map(|v| Identity {
                    sub: v.claims.sub,
                    kid: v.kid,
                    jti: v.claims.jti,
                    models: v.claims.models.map(Arc::from),
                })
            }
        };
        if result.is_err()
            && let Some(peer) = peer
        {
            self.budget.record_failure(peer.ip(), now);
        }
        result
    }
}

impl<B> Predicate<Request<B>> for Authenticate {
    type Request = Request<B>;

    fn check(&mut self, mut request: Request<B>) -> Result<Request<B>, BoxError> {
        let peer = RequestContext::of(&request).and_then(|c| c.peer);
        match self.decide(request.headers(), peer, request.uri().path()) {
            Ok(identity) => {
                let span = tracing::Span::current();
                span.record("sub", identity.sub.as_str());
                RequestContext::of_mut(&mut request).verified(identity);
                Ok(request)
            }
            Err(error) => Err(Box::new(error)),
        }
    }
}

/// The token of `authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthError::MissingHeader)?;
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
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
