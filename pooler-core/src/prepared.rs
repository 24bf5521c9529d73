//! Protocol-level prepared statements across pooled connections.
//!
//! A client names its statements as it likes (`s1`, `_pg3_0`, ...). In
//! transaction mode its next Bind may land on another server connection, so
//! the pooler gives every distinct statement (same query text and parameter
//! types) one server-side name, `_pooler_N`, prepares it on a server
//! connection the first time that connection needs it, and rewrites the
//! client's names to it. Clients never see each other's names: each client
//! resolves only through its own map, and a statement's server-side name is
//! reachable only through that map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use dashmap::DashMap;

/// Hashes the pooler's own statement ids (sequential, never chosen by a
/// client): a multiplication spreads them; SipHash would cost more than the
/// lookup it serves on every Bind.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`IdHash`]: for `u64` keys only.
#[derive(Debug)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One distinct statement: its server-side name and the Parse body after the
/// name (query text and parameter types), shared by every client that
/// prepared the same thing.
#[derive(Debug)]
pub(crate) struct StatementDef {
    /// Unique over the pooler's life.
    pub(crate) id: u64,
    /// The name used on servers.
    pub(crate) server_name: String,
    /// Query text, NUL, parameter type count and types, as in Parse.
    pub(crate) body: Bytes,
    /// Some server accepted it: a Parse of it can be answered without a
    /// server connection (the server would accept it again).
    pub(crate) valid: std::sync::atomic::AtomicBool,
    /// A server refused it as stale ("cached plan must not change result
    /// type": DDL changed what it returns): clients that prepared it before
    /// get that error, as from PostgreSQL; a new Parse of the text gets a
    /// new statement.
    pub(crate) stale: std::sync::atomic::AtomicBool,
    /// What the router makes of its text, decided once...
    pub(crate) class: crate::classify::Classification,
    /// ...under this generation of the routing lists (a reload that
    /// changes them makes `class` stale).
    pub(crate) generation: u64,
}

/// Every statement some client has prepared, by content. Entries are weak: a
/// statement no client holds any more is forgotten by [`Registry::prune`].
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By key: the body, or the body and what else sets the statement
    /// apart (an unnamed statement's `search_path` and `role`).
    by_body: DashMap<Bytes, Weak<StatementDef>>,
    next: AtomicU64,
    /// Hashes of unnamed statements' keys seen once, not yet worth a name
    /// on servers (bounded: cleared when full).
    seen: DashMap<u64, ()>,
    hasher: std::hash::RandomState,
}

/// The most unnamed statements remembered as seen once.
const MAX_SEEN: usize = 16_384;

impl Registry {
    /// The statement for this Parse body (after the name), created if new.
    pub(crate) fn intern(
        &self,
        body: &[u8],
        generation: u64,
        classify: impl FnOnce() -> crate::classify::Classification,
    ) -> Arc<StatementDef> {
        self.intern_as(body, body, generation, classify)
    }

    /// The live statement under `key` classified under `generation`, if
    /// some client or connection holds it.
    pub(crate) fn find(&self, key: &[u8], generation: u64) -> Option<Arc<StatementDef>> {
        self.by_body
            .get(key)
            .and_then(|w| w.upgrade())
            .filter(|d| d.generation == generation && !d.stale.load(Ordering::Relaxed))
    }

    /// True when an unnamed statement under `key` was offered before;
    /// otherwise notes it and says false (a statement seen once is not yet
    /// worth a name on servers: ad-hoc SQL would fill their caches).
    pub(crate) fn seen_before(&self, key: &[u8]) -> bool {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        if self.seen.contains_key(&h) {
            return true;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(h, ());
        false
    }

    /// The statement for Parse body `body` under `key` (the body, or the
    /// body and what else sets it apart), created if new.
    pub(crate) fn intern_as(
        &self,
        key: &[u8],
        body: &[u8],
        generation: u64,
        classify: impl FnOnce() -> crate::classify::Classification,
    ) -> Arc<StatementDef> {
        if let Some(def) = self.find(key, generation) {
            return def;
        }
        let mut entry = self.by_body.entry(Bytes::copy_from_slice(key)).or_default();
        if let Some(def) = entry.upgrade().filter(|d| d.generation == generation && !d.stale.load(Ordering::Relaxed)) {
            return def;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let def = Arc::new(StatementDef {
            id,
            server_name: format!("_pooler_{id}"),
            body: Bytes::copy_from_slice(body),
            valid: Default::default(),
            stale: Default::default(),
            class: classify(),
            generation,
        });
        *entry = Arc::downgrade(&def);
        def
    }

    /// The statement for this Parse body if a server has accepted it before.
    pub(crate) fn find_valid(&self, body: &[u8]) -> Option<Arc<StatementDef>> {
        self.by_body
            .get(body)
            .and_then(|w| w.upgrade())
            .filter(|d| d.valid.load(Ordering::Relaxed) && !d.stale.load(Ordering::Relaxed))
    }

    /// Forgets statements that no client holds.
    pub(crate) fn prune(&self) {
        self.by_body.retain(|_, w| w.strong_count() > 0);
    }

    /// Every statement some client holds now (`SHOW PREPARED_STATEMENTS`).
    pub(crate) fn list(&self) -> Vec<Arc<StatementDef>> {
        let mut all: Vec<_> = self.by_body.iter().filter_map(|e| e.value().upgrade()).collect();
        all.sort_by_key(|d| d.id);
        all
    }

    /// Distinct statements known now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_body.len()
    }
}

/// One client's named statements: its own names to the shared definitions.
/// The empty name (the unnamed statement, when the pooler caches it on its
/// connections) is kept apart: looked up on every request, never hashed.
#[derive(Debug, Default)]
pub(crate) struct ClientStatements {
    map: HashMap<Box<[u8]>, Arc<StatementDef>>,
    unnamed: Option<Arc<StatementDef>>,
}

impl ClientStatements {
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Arc<StatementDef>> {
        if name.is_empty() {
            return self.unnamed.as_ref();
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.get(name)
    }

    /// Every statement, with the client's name for it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Arc<StatementDef>)> {
        self.unnamed.iter().map(|d| (&b""[..], d)).chain(self.map.iter().map(|(k, v)| (&**k, v)))
    }

    pub(crate) fn insert(&mut self, name: &[u8], def: Arc<StatementDef>) {
        if name.is_empty() {
            self.unnamed = Some(def);
        } else {
            self.map.insert(name.into(), def);
        }
    }

    /// Removes `name`, only if it still means statement `id`.
    pub(crate) fn remove_if(&mut self, name: &[u8], id: u64) {
        if self.get(name).is_some_and(|d| d.id == id) {
            self.remove(name);
        }
    }

    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<Arc<StatementDef>> {
        if name.is_empty() {
            return self.unnamed.take();
        }
        if self.map.is_empty() {
            return None;
        }
        self.map.remove(name)
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.unnamed = None;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len() + usize::from(self.unnamed.is_some())
    }
}

/// The statements prepared on one server connection, least recently used
/// first out. Lives with the connection, across clients.
#[derive(Debug, Default)]
pub(crate) struct ServerStatements {
    /// Statement id -> last use tick.
    used: HashMap<u64, u64, IdHash>,
    /// Server-side names by id, to close evicted ones.
    names: HashMap<u64, Arc<StatementDef>, IdHash>,
    tick: u64,
    /// The set may not match the server (a client ran DISCARD ALL or
    /// DEALLOCATE ALL, which may or may not have taken effect): the pooler
    /// runs `DEALLOCATE ALL` itself before the connection is lent again.
    pub(crate) unsure: bool,
}

impl ServerStatements {
    /// True when statement `id` is prepared on the connection; marks it used.
    pub(crate) fn touch(&mut self, id: u64) -> bool {
        self.tick += 1;
        match self.used.get_mut(&id) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records that `def` is (being) prepared; returns the statement to close
    /// first if the cache was full.
    pub(crate) fn add(&mut self, def: &Arc<StatementDef>, capacity: usize) -> Option<Arc<StatementDef>> {
        let mut evicted = None;
        if self.used.len() >= capacity.max(1) {
            if let Some((&old, _)) = self.used.iter().min_by_key(|(_, &t)| t) {
                self.used.remove(&old);
                evicted = self.names.remove(&old);
            }
        }
        self.tick += 1;
        self.used.insert(def.id, self.tick);
        self.names.insert(def.id, def.clone());
        evicted
    }

    /// Forgets statement `id` (its Parse failed).
    pub(crate) fn forget(&mut self, id: u64) {
        self.used.remove(&id);
        self.names.remove(&id);
    }

    /// Forgets everything (the server's statements are gone).
    pub(crate) fn clear(&mut self) {
        self.used.clear();
        self.names.clear();
    }

    /// Statements prepared on the connection.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> crate::classify::Classification {
        crate::classify::Classifier::default().classify(b"SELECT 1")
    }

    #[test]
    fn same_text_and_types_share_one_server_name() {
        let r = Registry::default();
        let a = r.intern(b"SELECT 1\0\0\0", 0, any);
        let b = r.intern(b"SELECT 1\0\0\0", 0, any);
        let c = r.intern(b"SELECT 1\0\0\x01\0\0\0\x17", 0, any);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.server_name, format!("_pooler_{}", a.id));
        drop((a, b, c));
        r.prune();
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn server_cache_evicts_least_recently_used() {
        let r = Registry::default();
        let defs: Vec<_> = (0..3).map(|i| r.intern(format!("SELECT {i}\0\0\0").as_bytes(), 0, any)).collect();
        let mut s = ServerStatements::default();
        assert!(s.add(&defs[0], 2).is_none());
        assert!(s.add(&defs[1], 2).is_none());
        assert!(s.touch(defs[0].id));
        let evicted = s.add(&defs[2], 2).expect("full cache evicts");
        assert_eq!(evicted.id, defs[1].id);
        assert!(!s.touch(defs[1].id));
        assert!(s.touch(defs[0].id) && s.touch(defs[2].id));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn client_names_resolve_only_in_their_own_map() {
        let r = Registry::default();
        let def = r.intern(b"SELECT 1\0\0\0", 0, any);
        let mut a = ClientStatements::default();
        let b = ClientStatements::default();
        a.insert(b"s1", def.clone());
        assert!(a.get(b"s1").is_some());
        assert!(b.get(b"s1").is_none());
        a.remove_if(b"s1", def.id + 1);
        assert!(a.get(b"s1").is_some());
        a.remove_if(b"s1", def.id);
        assert_eq!(a.len(), 0);
    }
}
