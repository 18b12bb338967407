//! JWT verification as a tower `Filter`: a request without a valid
//! `authorization: Bearer <jwt>` never reaches the forwarder; it fails with a
//! boxed [`AuthError`] that the rescue layer turns into `UNAUTHENTICATED`.
//! A valid request carries its [`Identity`] in its extensions, for the rate
//! limits (keyed by `sub`) and the forwarder (`x-vibectl-sub`).

use crate::{
    http::BoxError,
    jwt::{AuthError, TokenVerifier},
};
use http::{HeaderMap, Request, header::AUTHORIZATION};
use std::sync::Arc;
use tower::filter::{FilterLayer, Predicate};

/// Who a verified request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub sub: String,
}

/// The predicate: verifies the bearer token and records the `sub`.
#[derive(Debug, Clone)]
pub struct Authenticate {
    verifier: Arc<TokenVerifier>,
}

/// The auth layer for the request path.
pub fn layer(verifier: Arc<TokenVerifier>) -> FilterLayer<Authenticate> {
    FilterLayer::new(Authenticate { verifier })
}

impl<B> Predicate<Request<B>> for Authenticate {
    type Request = Request<B>;

    fn check(&mut self, mut request: Request<B>) -> Result<Request<B>, BoxError> {
        let span = tracing::Span::current();
        let result = bearer_token(request.headers()).and_then(|t| self.verifier.verify(t));
        match result {
            Ok(claims) => {
                span.record("sub", claims.sub.as_str());
                request
                    .extensions_mut()
                    .insert(Identity { sub: claims.sub });
                Ok(request)
            }
            Err(error) => {
                tracing::debug!(%error, "refused: unauthenticated");
                Err(Box::new(error))
            }
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
