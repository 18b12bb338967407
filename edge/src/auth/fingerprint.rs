//! Keys are never rotated by accident: the edge remembers, in
//! `<state_dir>/jwt-key-fingerprints.json`, a short fingerprint (the first
//! 64 bits of a SHA-256) of the HS256 secret and of each key of the set it
//! used, and logs loudly (at `error`) when one changes or disappears —
//! every token made with the old key then stops working. Only fingerprints
//! are stored, never a key.

use crate::{auth::KeySet, fsutil};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};
use vibectl_config::defaults::JWT_KEY_FINGERPRINTS_FILE_NAME;

/// The record name of the legacy secret.
pub const HS256_SECRET: &str = "hs256-secret";

/// One remembered key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Remembered {
    /// The key's fingerprint.
    pub fingerprint: String,
    /// Where it came from (safe to show).
    pub source: String,
    /// First seen, Unix seconds.
    pub since: i64,
}

type Record = BTreeMap<String, Remembered>;

fn read(state_dir: &Path) -> Record {
    let path = state_dir.join(JWT_KEY_FINGERPRINTS_FILE_NAME);
    std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write(state_dir: &Path, record: &Record) {
    let path = state_dir.join(JWT_KEY_FINGERPRINTS_FILE_NAME);
    let result = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            fsutil::create_private_dir(state_dir)?;
            fsutil::write_private(&path, &bytes)
        });
    if let Err(error) = result {
        tracing::debug!(%error, file = %path.display(), "cannot remember JWT key fingerprints");
    }
}

/// What [`remember`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Never seen before (now remembered).
    New,
    /// The same key as before.
    Same,
    /// Another key than before (now remembered); the old one is returned.
    Changed(Remembered),
}

/// Remembers `fingerprint` under `name`; warns loudly when it changed.
pub fn remember(state_dir: &Path, name: &str, fingerprint: &str, source: &str) -> Seen {
    let mut record = read(state_dir);
    let seen = match record.get(name) {
        Some(old) if old.fingerprint == fingerprint => return Seen::Same,
        Some(old) => {
            tracing::error!(
                key = name,
                old_fingerprint = %old.fingerprint,
                old_source = %old.source,
                new_fingerprint = %fingerprint,
                new_source = %source,
                "THE JWT KEY `{name}` HAS CHANGED since this edge last used it: every token signed \
                 with the old key is now refused. If this was not intended, restore the old key \
                 (its source is logged here)."
            );
            Seen::Changed(old.clone())
        }
        None => Seen::New,
    };
    record.insert(
        name.to_owned(),
        Remembered {
            fingerprint: fingerprint.to_owned(),
            source: source.to_owned(),
            since: crate::auth::now_secs(),
        },
    );
    write(state_dir, &record);
    seen
}

/// The record of `name`, if any.
pub fn recalled(state_dir: &Path, name: &str) -> Option<Remembered> {
    read(state_dir).remove(name)
}

/// Checks every key of `set` against the record (`kid:<kid>`), and warns
/// about remembered keys the set no longer holds.
pub fn check_key_set(state_dir: &Path, set: &KeySet) {
    for key in set.iter() {
        let kid = key.kid.as_deref().unwrap_or_default();
        remember(state_dir, &format!("kid:{kid}"), &key.thumbprint, "key set");
    }
    let record = read(state_dir);
    for name in record.keys() {
        if let Some(kid) = name.strip_prefix("kid:")
            && set.get(kid).is_none()
        {
            tracing::warn!(
                kid,
                "JWT key `{kid}` was in the key set before and is gone: tokens signed with it \
                 are refused (use `keys retire` to stop a key on purpose)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_detects_a_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(remember(tmp.path(), "a", "f1", "env"), Seen::New);
        assert_eq!(remember(tmp.path(), "a", "f1", "env"), Seen::Same);
        let Seen::Changed(old) = remember(tmp.path(), "a", "f2", "file") else {
            panic!("a change")
        };
        assert_eq!(old.fingerprint, "f1");
        assert_eq!(recalled(tmp.path(), "a").expect("kept").fingerprint, "f2");
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(tmp.path().join(JWT_KEY_FINGERPRINTS_FILE_NAME)).expect("written");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
