//! Cancel keys: the pooler gives each client its own BackendKeyData and maps
//! it to the server connection that currently serves that client.
//!
//! A cancel must never reach a server connection after it has moved on to
//! another client. So a forwarded cancel holds a [`CancelTicket`] while it is
//! on its way, and a session releasing its server connection first
//! [`CancelHandle::detach`]es: no new ticket can be taken, and it waits until
//! the tickets already taken are done (the server has received the cancel, so
//! it lands on the leaving client's work or on the reset, never later).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use rand::RngExt;

use crate::backend::ServerAddr;
use crate::protocol::messages::BackendKeyData;
use crate::protocol::CancelKey;

/// Where a cancel for one client must go right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelTarget {
    /// The server serving the client (shared with its connection: setting a
    /// target per transaction copies no string).
    pub addr: Arc<ServerAddr>,
    /// That server connection's own key.
    pub key: BackendKeyData,
}

#[derive(Debug, Default)]
struct EntryState {
    target: Option<CancelTarget>,
    /// Cancels forwarded to `target` and not yet acknowledged by the server.
    in_flight: usize,
}

#[derive(Debug)]
struct Entry {
    secret: i32,
    state: Mutex<EntryState>,
    /// Signalled when `in_flight` drops to zero.
    quiet: tokio::sync::Notify,
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
        let entry =
            Arc::new(Entry { secret, state: Mutex::new(EntryState::default()), quiet: tokio::sync::Notify::new() });
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
        self.begin(key).map(|t| t.target.clone())
    }

    /// Like [`CancelRegistry::lookup`], and holds the target until the returned
    /// ticket is dropped: the session will not hand its server connection to
    /// anyone else before that. Drop the ticket once the server has the cancel.
    pub fn begin(&self, key: CancelKey) -> Option<CancelTicket> {
        let entry = self.entries.get(&key.pid)?.clone();
        if entry.secret != key.secret {
            return None;
        }
        let target = {
            let mut state = entry.state.lock().ok()?;
            let target = state.target.clone()?;
            state.in_flight += 1;
            target
        };
        Some(CancelTicket { entry, target })
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
        if let Ok(mut state) = self.entry.state.lock() {
            state.target = target;
        }
    }

    /// [`CancelHandle::detach`] without waiting: clears the target and is
    /// true when no cancel is on its way (the usual case; a cancel starting
    /// later finds no target). False: wait with `detach`.
    pub fn try_detach(&self) -> bool {
        match self.entry.state.lock() {
            Ok(mut state) => {
                state.target = None;
                state.in_flight == 0
            }
            Err(_) => true,
        }
    }

    /// Stops pointing cancels at the current server connection and waits, up to
    /// `timeout`, until cancels already on their way have reached the server.
    /// True when none is left in flight: the connection may serve someone else.
    pub async fn detach(&self, timeout: Duration) -> bool {
        if self.try_detach() {
            return true;
        }
        let settled = async {
            loop {
                let quiet = self.entry.quiet.notified();
                tokio::pin!(quiet);
                quiet.as_mut().enable();
                if self.entry.state.lock().map(|s| s.in_flight == 0).unwrap_or(true) {
                    return;
                }
                quiet.await;
            }
        };
        // Boxed: the rare wait keeps its timer out of every caller's future.
        Box::pin(tokio::time::timeout(timeout, settled)).await.is_ok()
    }
}

/// A cancel on its way to a server (see [`CancelRegistry::begin`]).
#[derive(Debug)]
pub struct CancelTicket {
    entry: Arc<Entry>,
    target: CancelTarget,
}

impl CancelTicket {
    /// Where the cancel must go.
    pub fn target(&self) -> &CancelTarget {
        &self.target
    }
}

impl Drop for CancelTicket {
    fn drop(&mut self) {
        let now_quiet = match self.entry.state.lock() {
            Ok(mut state) => {
                state.in_flight = state.in_flight.saturating_sub(1);
                state.in_flight == 0
            }
            Err(_) => true,
        };
        if now_quiet {
            self.entry.quiet.notify_waiters();
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
            addr: Arc::new(ServerAddr { host: "127.0.0.1".into(), port: 5432 }),
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

    #[tokio::test]
    async fn detach_waits_for_cancels_on_their_way_and_stops_new_ones() {
        let reg = Arc::new(CancelRegistry::new());
        let h = Arc::new(reg.register());
        h.set_target(Some(target()));
        let ticket = reg.begin(h.key()).unwrap();
        let h2 = h.clone();
        let detach = tokio::spawn(async move { h2.detach(Duration::from_secs(10)).await });
        // While the cancel is in flight the session must not move on...
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!detach.is_finished());
        // ...and no new cancel can start towards the old target.
        assert!(reg.begin(h.key()).is_none());
        drop(ticket);
        assert!(detach.await.unwrap(), "quiet once the cancel is delivered");
    }

    #[tokio::test]
    async fn detach_gives_up_after_its_timeout() {
        let reg = Arc::new(CancelRegistry::new());
        let h = reg.register();
        h.set_target(Some(target()));
        let _stuck = reg.begin(h.key()).unwrap();
        assert!(!h.detach(Duration::from_millis(20)).await);
    }

    #[test]
    fn keys_are_unique() {
        let reg = Arc::new(CancelRegistry::new());
        let a = reg.register();
        let b = reg.register();
        assert_ne!(a.key().pid, b.key().pid);
    }
}
