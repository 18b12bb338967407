//! The ids a SQLite ledger row keeps instead of its words (migration 4):
//! its caller's (`sub`, `kid`, `jti`) in `ledger_callers` and its shape's
//! (model, provider, method, outcome, status) in `ledger_shapes`, each
//! part a `ledger_words` id. Looked up in memory: first the previous
//! row's (most rows repeat it: a few compares), then a map, then the file
//! (once per caller or shape), adding what is new.

use super::{CallRow, Text};
use crate::registry::ModelEntry;
use rusqlite::{Connection, OptionalExtension, Statement};
use std::{collections::HashMap, sync::Arc};

/// Entries kept in each map at most (a caller per token, a few shapes per
/// model): past it the map starts again.
const MAX_CACHED: usize = 100_000;

type Map<K> = HashMap<K, i64, foldhash::fast::RandomState>;

/// The previous row's caller's words, as bytes.
#[derive(Default)]
struct LastCaller {
    sub: Vec<u8>,
    kid: Option<Vec<u8>>,
    jti: Option<Vec<u8>>,
    id: i64,
}

/// The previous row's shape: the model and the fixed words by address
/// (the registry's entry, the core's constants), the status by value.
struct LastShape {
    model: Option<Arc<ModelEntry>>,
    method: &'static str,
    outcome: &'static str,
    status: String,
    id: i64,
}

/// A connection's id lookups and their cache.
pub(super) struct Ids<'c> {
    conn: &'c Connection,
    find_word: Statement<'c>,
    add_word: Statement<'c>,
    find_caller: Statement<'c>,
    add_caller: Statement<'c>,
    find_shape: Statement<'c>,
    add_shape: Statement<'c>,
    words: Map<Box<str>>,
    callers: Map<Box<[u8]>>,
    shapes: Map<Box<[u8]>>,
    last_caller: Option<LastCaller>,
    last_shape: Option<LastShape>,
    /// A caller's or shape's words, length-prefixed: its map key.
    key: Vec<u8>,
}

fn push_word(key: &mut Vec<u8>, word: Option<&[u8]>) {
    match word {
        None => key.push(0),
        Some(w) => {
            key.push(1);
            key.extend_from_slice(&(w.len() as u64).to_le_bytes());
            key.extend_from_slice(w);
        }
    }
}

impl<'c> Ids<'c> {
    pub(super) fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            find_word: conn.prepare("SELECT id FROM ledger_words WHERE word = ?1")?,
            add_word: conn.prepare("INSERT INTO ledger_words (word) VALUES (?1)")?,
            find_caller: conn.prepare(
                "SELECT id FROM ledger_callers WHERE sub = ?1 AND kid = ?2 AND jti = ?3",
            )?,
            add_caller: conn
                .prepare("INSERT INTO ledger_callers (sub, kid, jti) VALUES (?1, ?2, ?3)")?,
            find_shape: conn.prepare(
                "SELECT id FROM ledger_shapes WHERE model = ?1 AND provider = ?2 \
                 AND method = ?3 AND outcome = ?4 AND status = ?5",
            )?,
            add_shape: conn.prepare(
                "INSERT INTO ledger_shapes (model, provider, method, outcome, status) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            words: Map::default(),
            callers: Map::default(),
            shapes: Map::default(),
            last_caller: None,
            last_shape: None,
            key: Vec::new(),
        })
    }

    /// After a rolled-back batch: its new ids are gone too.
    pub(super) fn forget(&mut self) {
        self.words.clear();
        self.callers.clear();
        self.shapes.clear();
        self.last_caller = None;
        self.last_shape = None;
    }

    /// The id of `r`'s `(sub, kid, jti)`.
    pub(super) fn caller(&mut self, r: &CallRow) -> rusqlite::Result<i64> {
        let (sub, kid, jti) = (
            r.sub.as_bytes(),
            r.kid.as_ref().map(Text::as_bytes),
            r.jti.as_ref().map(Text::as_bytes),
        );
        if let Some(last) = &self.last_caller
            && last.sub == sub
            && last.kid.as_deref() == kid
            && last.jti.as_deref() == jti
        {
            return Ok(last.id);
        }
        self.key.clear();
        for word in [Some(sub), kid, jti] {
            push_word(&mut self.key, word);
        }
        let id = match self.callers.get(self.key.as_slice()) {
            Some(id) => *id,
            None => {
                let parts = [
                    self.word(r.sub.as_str())?,
                    r.kid
                        .as_ref()
                        .map(|w| self.word(w.as_str()))
                        .transpose()?
                        .unwrap_or(0),
                    r.jti
                        .as_ref()
                        .map(|w| self.word(w.as_str()))
                        .transpose()?
                        .unwrap_or(0),
                ];
                let id = find_or_add(
                    self.conn,
                    &mut self.find_caller,
                    &mut self.add_caller,
                    &parts,
                )?;
                remember(&mut self.callers, &self.key, id);
                id
            }
        };
        let last = self.last_caller.get_or_insert_with(LastCaller::default);
        last.sub.clear();
        last.sub.extend_from_slice(sub);
        last.kid = kid.map(<[u8]>::to_vec);
        last.jti = jti.map(<[u8]>::to_vec);
        last.id = id;
        Ok(id)
    }

    /// The id of `r`'s `(model, provider, method, outcome, status)`.
    pub(super) fn shape(&mut self, r: &CallRow) -> rusqlite::Result<i64> {
        if let Some(last) = &self.last_shape
            && match (&last.model, &r.model) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && std::ptr::eq(last.method, r.method)
            && std::ptr::eq(last.outcome, r.outcome)
            && last.status == *r.status
        {
            return Ok(last.id);
        }
        let words = [r.model_id(), r.provider(), r.method, r.outcome, &r.status];
        self.key.clear();
        for word in words {
            push_word(&mut self.key, Some(word.as_bytes()));
        }
        let id = match self.shapes.get(self.key.as_slice()) {
            Some(id) => *id,
            None => {
                let mut parts = [0; 5];
                for (part, word) in parts.iter_mut().zip(words) {
                    *part = self.word(word)?;
                }
                let id = find_or_add(self.conn, &mut self.find_shape, &mut self.add_shape, &parts)?;
                remember(&mut self.shapes, &self.key, id);
                id
            }
        };
        self.last_shape = Some(LastShape {
            model: r.model.clone(),
            method: r.method,
            outcome: r.outcome,
            status: r.status.to_string(),
            id,
        });
        Ok(id)
    }

    /// The id of `word` in `ledger_words`, added if new.
    fn word(&mut self, word: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.words.get(word) {
            return Ok(*id);
        }
        let id = find_or_add(self.conn, &mut self.find_word, &mut self.add_word, &[word])?;
        remember(&mut self.words, word, id);
        Ok(id)
    }
}

/// The id `find` returns for `parts`, or the new row's `add` inserts.
fn find_or_add<P: rusqlite::ToSql>(
    conn: &Connection,
    find: &mut Statement<'_>,
    add: &mut Statement<'_>,
    parts: &[P],
) -> rusqlite::Result<i64> {
    let params = rusqlite::params_from_iter(parts);
    if let Some(id) = find.query_row(params, |r| r.get(0)).optional()? {
        return Ok(id);
    }
    add.execute(rusqlite::params_from_iter(parts))?;
    Ok(conn.last_insert_rowid())
}

/// Keeps `key`'s id (the map starts again past [`MAX_CACHED`]).
fn remember<K: ?Sized>(map: &mut Map<Box<K>>, key: &K, id: i64)
where
    Box<K>: for<'a> From<&'a K> + Eq + std::hash::Hash,
{
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(key.into(), id);
}
