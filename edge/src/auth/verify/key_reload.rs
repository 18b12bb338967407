//! Key set hot reload of a running verifier: a changed, valid file is put
//! in force (a key whose material changed under the same `kid` is logged
//! as an error); an invalid one keeps the last good set and is logged once.

use super::Shared;
use crate::auth::{KeySet, KeyStatus, fingerprint, reload, revocation::Revocations};
use sha2::Digest;
use std::sync::Arc;

impl reload::Reloadable for Shared {
    fn reload_files(&self) {
        self.reload_keys();
        self.revocations.reload_file();
    }

    fn revocations(&self) -> &Revocations {
        &self.revocations
    }
}

impl Shared {
    pub(crate) fn reload_keys(&self) {
        let Some(path) = &self.jwks_path else { return };
        let current = self.keys.load();
        let bytes = match crate::auth::key_set::read_optional(path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                if !current.is_empty() && self.note_bad([0; 32]) {
                    tracing::error!(
                        file = %path.display(),
                        keys = current.len(),
                        "the JWT key set file has disappeared; keeping the last good set"
                    );
                }
                return;
            }
            Err(error) => {
                if self.note_bad([1; 32]) {
                    tracing::error!(%error, "cannot read the JWT key set; keeping the last good set");
                }
                return;
            }
        };
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if digest == current.digest {
            return;
        }
        match KeySet::parse(&bytes) {
            Ok(set) => {
                for old in current.iter() {
                    let kid = old.kid.as_deref().unwrap_or_default();
                    if let Some(new) = set.get(kid)
                        && new.thumbprint != old.thumbprint
                    {
                        tracing::error!(
                            kid,
                            old = %old.thumbprint,
                            new = %new.thumbprint,
                            "JWT key `{kid}` was REPLACED by a different key under the same kid: \
                             tokens signed with the old key are now refused"
                        );
                    }
                }
                if let Some(kid) = &self.default_kid
                    && set.get(kid).is_none_or(|k| k.status == KeyStatus::Retired)
                {
                    tracing::warn!(
                        kid,
                        "jwt.default_kid is missing or retired in the reloaded key set: \
                         tokens without `kid` are refused"
                    );
                }
                let kids: Vec<String> = set
                    .iter()
                    .map(|k| {
                        format!(
                            "{}({},{})",
                            k.kid.as_deref().unwrap_or("-"),
                            k.alg,
                            k.status.name()
                        )
                    })
                    .collect();
                tracing::info!(file = %path.display(), keys = %kids.join(" "), "JWT key set reloaded");
                if let Ok(mut bad) = self.bad_digest.lock() {
                    *bad = None;
                }
                if let Some(state_dir) = &self.state_dir {
                    fingerprint::check_key_set(state_dir, &set);
                }
                check_jwks_mode(path, &set);
                self.keys.store(Arc::new(set));
            }
            Err(reason) => {
                if self.note_bad(digest) {
                    tracing::error!(
                        file = %path.display(),
                        %reason,
                        keys = current.len(),
                        "the JWT key set file is invalid; keeping the last good set"
                    );
                }
            }
        }
    }

    /// Records a refused file state; true the first time it is seen.
    fn note_bad(&self, digest: [u8; 32]) -> bool {
        match self.bad_digest.lock() {
            Ok(mut bad) => bad.replace(digest) != Some(digest),
            Err(_) => true,
        }
    }
}

/// Warns when a key set holding shared secrets is readable by others.
pub(super) fn check_jwks_mode(path: &std::path::Path, keys: &KeySet) {
    use std::os::unix::fs::PermissionsExt;
    if !keys.has_secret_keys {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the JWT key set holds HS256 secrets but is readable by other users; chmod 600 it"
        );
    }
}
