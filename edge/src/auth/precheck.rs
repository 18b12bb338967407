//! The checks a token can fail without its signature being verified:
//! size, header, key by `kid`, pinned `alg`, then the (unverified) claims:
//! `exp`, `nbf`, `iss`, `aud`, `sub` rules, lifetime, `models`, revocation.
//! Used for an address past its failure budget ([`super::budget`]): a token
//! that fails here is refused at the cost of a base64 and JSON decode; one
//! that passes is verified in full, so a valid token is always served.

use crate::auth::{AuthError, Claims, TokenVerifier, now_secs};

impl TokenVerifier {
    /// `Err` when `token` would fail verification whatever its signature.
    /// `Ok` says nothing about the signature: verify it with `decide`.
    pub fn precheck(&self, token: &str) -> Result<(), AuthError> {
        let keys = self.shared.keys.load();
        let mut kid = None;
        self.header_and_key(token, &keys, &mut kid)?;
        let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Malformed)?;
        let policy = self.policy();
        let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(0);
        let now = now_secs();
        if claims.exp.saturating_add(leeway) < now {
            return Err(AuthError::TokenExpired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(AuthError::TokenNotYetValid);
        }
        if !policy.issuer.is_empty() && claims.iss.as_deref() != Some(policy.issuer.as_str()) {
            return Err(self.wrong_issuer());
        }
        if let Some(audience) = &policy.audience
            && !claims.aud.as_ref().is_some_and(|a| a.contains(audience))
        {
            return Err(self.wrong_audience());
        }
        self.check_claims(&claims)
    }
}
