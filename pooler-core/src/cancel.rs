//! Cancel keys: the pooler gives each client its own BackendKeyData and maps
//! it to the server connection that currently serves that client.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use rand::RngExt;

use crate::backend::ServerAddr;
use crate::protocol::messages::BackendKeyData;
use crate::protocol::CancelKey;

/// Where a cancel for one client must go right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelTarget {
    /// The server serving the client.
    pub addr: ServerAddr,
    /// That server connection's own key.
    pub key: BackendKeyData,
}

#[derive(Debug)]
struct Entry {
    secret: i32,
    target: Mutex<Option<CancelTarget>>,
}

/// The table of live client keys.
#[derive(Debug)]
pub struct CancelRegistry {
    next_id: AtomicI32,
    entries: DashMap<i32, Arc<Entry>>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        CancelRegistry::new()
    }
}

impl CancelRegistry {
    /// An empty registry. Ids start at a random point so that keys from a
    /// restarted pooler do not collide with keys clients still hold.
    pub fn new() -> Self {
        CancelRegistry { next_id: AtomicI32::new(rand::rng().random_range(1..i32::MAX / 2)), entries: DashMap::new() }
    }

    /// Issues a fresh key for a new client; it is withdrawn when the returned
    /// handle is dropped.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let secret: i32 = rand::rng().random();
        let entry = Arc::new(Entry { secret, target: Mutex::new(None) });
        loop {
            let mut pid = self.next_id.fetch_add(1, Ordering::Relaxed);
            if pid <= 0 {
                // Wrapped around: keep ids positive, like real process ids.
                self.next_id.store(2, Ordering::Relaxed);
                pid = 1;
            }
            if let dashmap::Entry::Vacant(v) = self.entries.entry(pid) {
                v.insert(entry.clone());
                return CancelHandle { registry: self.clone(), key: CancelKey { pid, secret }, entry };
            }
        }
    }

    /// The server a cancel with this key must reach, if the key is live and
    /// its client is being served. A wrong secret finds nothing.
    pub fn lookup(&self, key: CancelKey) -> Option<CancelTarget> {
        let entry = self.entries.get(&key.pid)?.clone();
        if entry.secret != key.secret {
            return None;
        }
        let target = entry.target.lock().ok()?.clone();
        target
    }

    /// Live keys now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A client's key, live for as long as this handle is.
#[derive(Debug)]
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
    entry: Arc<Entry>,
}

impl CancelHandle {
    /// The key to send the client in BackendKeyData.
    pub fn key(&self) -> CancelKey {
        self.key
    }

    /// Points cancels at a server connection (or at none).
    pub fn set_target(&self, target: Option<CancelTarget>) {
        if let Ok(mut t) = self.entry.target.lock() {
            *t = target;
        }
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.entries.remove(&self.key.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CancelTarget {
        CancelTarget {
            addr: ServerAddr { host: "127.0.0.1".into(), port: 5432 },
            key: BackendKeyData { pid: 7, secret: 9 },
        }
    }

    #[test]
    fn cancel_finds_target_only_with_the_right_secret() {
        let reg = Arc::new(CancelRegistry::new());
        let h = reg.register();
        h.set_target(Some(target()));
        assert_eq!(reg.lookup(h.key()), Some(target()));
        let wrong = CancelKey { pid: h.key().pid, secret: h.key().secret.wrapping_add(1) };
        assert_eq!(reg.lookup(wrong), None);
    }

    #[test]
    fn key_is_withdrawn_when_client_leaves() {
        let reg = Arc::new(CancelRegistry::new());
        let h = reg.register();
        h.set_target(Some(target()));
        let key = h.key();
        drop(h);
        assert_eq!(reg.lookup(key), None);
        assert!(reg.is_empty());
    }

    #[test]
    fn keys_are_unique() {
        let reg = Arc::new(CancelRegistry::new());
        let a = reg.register();
        let b = reg.register();
        assert_ne!(a.key().pid, b.key().pid);
    }
}
