//! The key set: [`KeySet::parse`] validates a whole JWKS document or
//! refuses it (the caller keeps its last good set); [`JwksDoc`] edits the
//! file for the `keys` commands, writing it atomically.

use crate::{
    auth::{JwtError, KeyError, VerifyKey},
    fsutil,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

/// A validated key set, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, Arc<VerifyKey>>,
    /// SHA-256 of the file content it was read from (to skip unchanged re-reads).
    pub(crate) digest: [u8; 32],
    /// Whether it holds a shared (HS256) secret.
    pub has_secret_keys: bool,
}

impl KeySet {
    /// Parses and validates a JWKS document: every key or none.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(KeyError::Json)?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeyError::NotJwks)?;
        let mut keys = BTreeMap::new();
        for jwk in list {
            let jwk = jwk.as_object().ok_or(KeyError::NotObject)?;
            let key = VerifyKey::from_jwk(jwk)?;
            let kid = key.kid.clone().unwrap_or_default();
            if keys.insert(kid.clone(), Arc::new(key)).is_some() {
                return Err(KeyError::DuplicateKid(kid));
            }
        }
        Ok(Self {
            has_secret_keys: keys.values().any(|k| k.alg.is_symmetric()),
            keys,
            digest: Sha256::digest(bytes).into(),
        })
    }

    /// The key `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.get(kid)
    }

    /// Every key, by `kid`.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.keys.values()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads `path`: `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, JwtError> {
        match read_optional(path)? {
            None => Ok(None),
            Some(bytes) => Self::parse(&bytes)
                .map(Some)
                .map_err(|reason| JwtError::KeySet {
                    path: path.to_owned(),
                    reason,
                }),
        }
    }
}

/// Reads a file; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, JwtError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JwtError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The key set file as the `keys` commands edit it: unknown members are
/// kept; every write is validated first and lands atomically (a temporary
/// file renamed over it), mode 0600 when it holds a shared secret.
#[derive(Debug, Clone)]
pub struct JwksDoc {
    path: PathBuf,
    doc: Value,
}

impl JwksDoc {
    /// Reads `path`, or starts an empty set when it does not exist.
    pub fn open(path: &Path) -> Result<Self, JwtError> {
        let doc = match read_optional(path)? {
            Some(bytes) => {
                KeySet::parse(&bytes).map_err(|reason| JwtError::KeySet {
                    path: path.to_owned(),
                    reason,
                })?;
                serde_json::from_slice(&bytes).map_err(|e| JwtError::KeySet {
                    path: path.to_owned(),
                    reason: KeyError::Json(e),
                })?
            }
            None => json!({ "keys": [] }),
        };
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keys_mut(&mut self) -> &mut Vec<Value> {
        if !self.doc.get("keys").is_some_and(Value::is_array) {
            self.doc = json!({ "keys": [] });
        }
        match self.doc.get_mut("keys") {
            Some(Value::Array(keys)) => keys,
            _ => unreachable!("set just above"),
        }
    }

    /// The validated set this document describes.
    pub fn key_set(&self) -> Result<KeySet, JwtError> {
        KeySet::parse(self.doc.to_string().as_bytes()).map_err(|reason| JwtError::KeySet {
            path: self.path.clone(),
            reason,
        })
    }

    /// Adds a key; refuses a `kid` already present.
    pub fn add(&mut self, jwk: Map<String, Value>) -> Result<(), JwtError> {
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or_default();
        if self.key_set()?.get(kid).is_some() {
            return Err(JwtError::Refused(format!(
                "kid `{kid}` is already in {}; choose another --kid",
                self.path.display()
            )));
        }
        self.keys_mut().push(Value::Object(jwk));
        self.key_set().map(|_| ())
    }

    /// Marks `kid` retired (with the time); false when it already was.
    pub fn retire(&mut self, kid: &str, now: i64) -> Result<bool, JwtError> {
        let path = self.path.clone();
        let key = self
            .keys_mut()
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .ok_or_else(|| JwtError::Refused(format!("no key `{kid}` in {}", path.display())))?;
        if key.get("status").and_then(Value::as_str) == Some("retired") {
            return Ok(false);
        }
        key.insert("status".into(), "retired".into());
        key.insert("retired".into(), now.into());
        Ok(true)
    }

    /// Validates and writes the file atomically.
    pub fn save(&self) -> Result<(), JwtError> {
        let set = self.key_set()?;
        let file_err = |action, source| JwtError::File {
            action,
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::create_private_dir(dir)
                .map_err(|e| file_err("cannot create the directory of", e))?;
        }
        let mut text = serde_json::to_string_pretty(&self.doc)
            .map_err(|e| file_err("cannot encode", std::io::Error::other(e)))?;
        text.push('\n');
        let tmp = self.path.with_extension("json.tmp");
        let written = if set.has_secret_keys {
            fsutil::write_private(&tmp, text.as_bytes())
        } else {
            fsutil::write_public(&tmp, text.as_bytes())
        };
        written.map_err(|e| file_err("cannot write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| file_err("cannot replace", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{KeyStatus, keys::tests::ec_jwk};
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    #[test]
    fn doc_add_retire_save_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("keys/jwks.json");
        let mut doc = JwksDoc::open(&path).expect("empty");
        let Value::Object(jwk) = ec_jwk("k1") else {
            panic!("object")
        };
        doc.add(jwk.clone()).expect("add");
        assert!(doc.add(jwk).is_err(), "duplicate kid refused");
        doc.save().expect("save");
        let set = KeySet::read(&path).expect("read").expect("exists");
        assert_eq!(
            set.get("k1").expect("k1").status,
            KeyStatus::Active,
            "{set:?}"
        );
        let mut doc = JwksDoc::open(&path).expect("open");
        assert!(doc.retire("k1", 5).expect("retire"));
        assert!(!doc.retire("k1", 6).expect("again"));
        assert!(doc.retire("nope", 6).is_err());
        doc.save().expect("save");
        let set = KeySet::read(&path).expect("read").expect("exists");
        assert_eq!(set.get("k1").expect("k1").status, KeyStatus::Retired);
        assert!(!format!("{set:?}").contains(&URL_SAFE_NO_PAD.encode([1u8; 32])));
    }
}
