//! Tokens that verified, remembered so a client sending the same token on
//! every call pays for its signature and claims once, not per call (the
//! verification was a tenth of the edge's CPU per call under load).
//!
//! Only accepted tokens are kept, each until its `exp` at the latest, and
//! only for the key set it was verified under: a reload of the key set (a
//! key added, retired or removed) makes every entry stale, so the next call
//! verifies again. Revocation is checked on every hit by the caller, never
//! cached. The map is bounded ([`MAX_ENTRIES`]); when full it is emptied,
//! which costs one verification per live token and keeps memory flat.

use crate::auth::{Decision, KeySet};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Most tokens remembered at once.
pub const MAX_ENTRIES: usize = 4096;

struct Entry {
    decision: Decision,
    keys: Arc<KeySet>,
    exp: i64,
}

/// The cache of accepted tokens (keyed by the whole token: equal bytes,
/// equal signature; never logged). Hashed with foldhash, keyed at random
/// per process: a token is some 250 bytes and SipHash cost ~750
/// instructions per call; only verified tokens are ever inserted, so a
/// client cannot fill the map with keys of its choosing.
#[derive(Default)]
pub struct VerifiedCache {
    map: Mutex<HashMap<Box<str>, Entry, foldhash::fast::RandomState>>,
}

impl VerifiedCache {
    /// The remembered accepted decision for `token`, if it was verified
    /// under the key set `keys` and its `exp` is still ahead of `now`.
    pub fn get(&self, token: &str, keys: &Arc<KeySet>, now: i64) -> Option<Decision> {
        let map = self.map.lock().ok()?;
        let entry = map.get(token)?;
        (Arc::ptr_eq(&entry.keys, keys) && now < entry.exp).then(|| entry.decision.clone())
    }

    /// Remembers an accepted `decision` for `token`, verified under `keys`,
    /// until the token's `exp`.
    pub fn insert(&self, token: &str, keys: Arc<KeySet>, decision: &Decision, now: i64) {
        let Ok(verified) = &decision.verdict else {
            return;
        };
        let exp = verified.claims.exp;
        if exp <= now {
            return;
        }
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= MAX_ENTRIES && !map.contains_key(token) {
            map.retain(|_, e| Arc::ptr_eq(&e.keys, &keys) && now < e.exp);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            token.into(),
            Entry {
                decision: decision.clone(),
                keys,
                exp,
            },
        );
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, Claims, KeyAlg, Verified};

    fn accepted(sub: &str) -> Decision {
        Decision {
            verdict: Ok(Arc::new(Verified {
                claims: Claims {
                    sub: sub.into(),
                    exp: 100,
                    ..Claims::default()
                },
                kid: None,
                alg: KeyAlg::HS256,
                memo: Default::default(),
            })),
            kid: None,
            sub: Some(sub.into()),
            jti: None,
        }
    }

    #[test]
    fn serves_until_exp_and_only_for_the_same_key_set() {
        let cache = VerifiedCache::default();
        let keys = Arc::new(KeySet::default());
        cache.insert("t", keys.clone(), &accepted("alice"), 10);
        let hit = cache.get("t", &keys, 99).expect("hit before exp");
        assert_eq!(hit.sub.as_deref(), Some("alice"));
        assert!(cache.get("t", &keys, 100).is_none(), "expired at exp");
        let reloaded = Arc::new(KeySet::default());
        assert!(cache.get("t", &reloaded, 50).is_none(), "new key set");
        assert!(cache.get("other", &keys, 50).is_none());
    }

    #[test]
    fn never_keeps_refusals_or_expired_tokens() {
        let cache = VerifiedCache::default();
        let keys = Arc::new(KeySet::default());
        let mut refused = accepted("mallory");
        refused.verdict = Err(AuthError::BadSignature);
        cache.insert("bad", keys.clone(), &refused, 10);
        cache.insert("old", keys.clone(), &accepted("bob"), 100);
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let cache = VerifiedCache::default();
        let keys = Arc::new(KeySet::default());
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&format!("t{i}"), keys.clone(), &accepted("a"), 10);
        }
        assert!(cache.len() <= MAX_ENTRIES);
        assert!(
            cache
                .get(&format!("t{}", MAX_ENTRIES + 9), &keys, 50)
                .is_some()
        );
    }
}
