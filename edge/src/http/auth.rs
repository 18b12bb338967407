//! JWT verification as a tower `Filter`: a request without a valid
//! `authorization: Bearer <jwt>` never reaches the forwarder; it fails with a
//! boxed [`AuthError`] that the rescue layer turns into `UNAUTHENTICATED`.
//! A valid request carries its [`Identity`] in its extensions, for the rate
//! limits (keyed by `sub`, or the `kid`) and the forwarder (`x-vibectl-sub`,
//! and [`ALLOWED_MODELS_HEADER`] when the token restricts models).
//!
//! Every decision is one line of the audit log ([`crate::audit`]). An
//! address ([`PeerAddr`], put in the extensions by the listener) that keeps
//! failing spends its [`FailureBudget`]; until its window ends, its tokens
//! that fail the checks needing no signature are refused without
//! verification work, and a token that verifies is still served.

use crate::{
    audit,
    http::BoxError,
    jwt::{AuthError, TokenVerifier, budget::FailureBudget},
};
use http::{HeaderMap, HeaderValue, Request, header::AUTHORIZATION};
use std::{net::SocketAddr, sync::Arc};
use tower::filter::{FilterLayer, Predicate};
use vibectl_proto::wire::ALLOWED_MODELS_HEADER;

/// Who a verified request is from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The token's `sub`.
    pub sub: String,
    /// The `kid` of the key that verified the token (`None`: the legacy
    /// HS256 secret). Limits may key on it (`LimitsConfig::for_token`).
    pub kid: Option<String>,
    /// The token's `jti`.
    pub jti: Option<String>,
    /// The models the token may use (`models` claim); `None`: any.
    pub models: Option<Arc<[String]>>,
}

impl Identity {
    /// The value of [`ALLOWED_MODELS_HEADER`] for this identity, if it is
    /// restricted: `a,b` (names were checked to be header-safe, comma-free).
    pub fn allowed_models_header(&self) -> Option<HeaderValue> {
        let models = self.models.as_ref()?;
        HeaderValue::from_str(&models.join(",")).ok()
    }

    /// Sets (or removes) [`ALLOWED_MODELS_HEADER`] on a request to the core.
    /// Call it after client-sent `x-vibectl-*` headers were stripped.
    pub fn apply_scope(&self, headers: &mut HeaderMap) {
        headers.remove(ALLOWED_MODELS_HEADER);
        if let Some(value) = self.allowed_models_header() {
            headers.insert(ALLOWED_MODELS_HEADER, value);
        }
    }
}

/// The TCP peer of the connection a request came on. The listener inserts
/// it into every request's extensions; the failure budget and the audit
/// log read it (never `x-forwarded-for`: clients can write that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

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
        let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
        match self.decide(request.headers(), peer, request.uri().path()) {
            Ok(identity) => {
                let span = tracing::Span::current();
                span.record("sub", identity.sub.as_str());
                request.extensions_mut().insert(identity);
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

    #[test]
    fn scope_header_replaces_any_client_copy() {
        let mut headers = HeaderMap::new();
        headers.insert(ALLOWED_MODELS_HEADER, HeaderValue::from_static("*"));
        let open = Identity::default();
        open.apply_scope(&mut headers);
        assert!(headers.get(ALLOWED_MODELS_HEADER).is_none());
        let scoped = Identity {
            models: Some(Arc::from(vec!["echo".to_owned(), "4o".to_owned()])),
            ..Identity::default()
        };
        scoped.apply_scope(&mut headers);
        assert_eq!(headers[ALLOWED_MODELS_HEADER], "echo,4o");
    }
}
