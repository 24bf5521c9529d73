//! Cancel keys: the pooler gives each client its own BackendKeyData and maps
//! it to the server connection that currently serves that client.
//!
//! A key is the pair (process id, secret), and only the pair is unique: a
//! session-mode client is given the real process id of its server connection
//! ([`CancelRegistry::register_for_pid`]), which the next client of that
//! connection gets too, and two servers can run backends with the same
//! process id at the same time. The secret is always the pooler's own
//! (random, never the server's), so a cancel needs the key this client was
//! given. Other clients get a process id made by the pooler
//! ([`CancelRegistry::register`]), above any process id Linux hands out, so it
//! never names a real backend (`pg_terminate_backend` of it kills nothing)
//! and never looks like another session's pid in a notification.
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
    state: Mutex<EntryState>,
    /// Signalled when `in_flight` drops to zero.
    quiet: tokio::sync::Notify,
}

/// Linux's highest possible process id (`PID_MAX_LIMIT` on 64-bit systems,
/// 2^22): the pooler's own process ids start above it.
pub const PID_MAX_LIMIT: i32 = 1 << 22;

/// The table of live client keys.
#[derive(Debug)]
pub struct CancelRegistry {
    next_id: AtomicI32,
    entries: DashMap<CancelKey, Arc<Entry>>,
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
        let first = rand::rng().random_range(PID_MAX_LIMIT + 1..i32::MAX / 2);
        CancelRegistry { next_id: AtomicI32::new(first), entries: DashMap::new() }
    }

    /// Issues a fresh key with a process id made by the pooler (for a client
    /// whose server connection may change); it is withdrawn when the returned
    /// handle is dropped.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        loop {
            let mut pid = self.next_id.fetch_add(1, Ordering::Relaxed);
            if pid <= PID_MAX_LIMIT {
                // Wrapped around: stay positive and above real process ids.
                self.next_id.store(PID_MAX_LIMIT + 2, Ordering::Relaxed);
                pid = PID_MAX_LIMIT + 1;
            }
            if let Some(handle) = self.try_insert(pid) {
                return handle;
            }
        }
    }

    /// Issues a fresh key carrying `pid`, the process id of the server
    /// connection the client keeps for its whole session, with a random
    /// secret of the pooler's. Other keys may carry the same `pid`, at the
    /// same time (a backend with that pid on another server) or later (the
    /// connection's next client): the secret tells them apart.
    pub fn register_for_pid(self: &Arc<Self>, pid: i32) -> CancelHandle {
        loop {
            if let Some(handle) = self.try_insert(pid) {
                return handle;
            }
        }
    }

    /// Takes over `key`, issued by a predecessor process to a client handed
    /// to this one, so that a cancel the client sends with it works here;
    /// `None` if this registry already issued that very pair.
    pub fn adopt(self: &Arc<Self>, key: CancelKey) -> Option<CancelHandle> {
        self.insert(key)
    }

    /// Inserts `pid` with a random secret, unless that pair is taken.
    fn try_insert(self: &Arc<Self>, pid: i32) -> Option<CancelHandle> {
        self.insert(CancelKey { pid, secret: rand::rng().random() })
    }

    /// Inserts `key`, unless it is taken.
    fn insert(self: &Arc<Self>, key: CancelKey) -> Option<CancelHandle> {
        match self.entries.entry(key) {
            dashmap::Entry::Vacant(v) => {
                let entry =
                    Arc::new(Entry { state: Mutex::new(EntryState::default()), quiet: tokio::sync::Notify::new() });
                v.insert(entry.clone());
                Some(CancelHandle { registry: self.clone(), key, entry })
            }
            dashmap::Entry::Occupied(_) => None,
        }
    }

    /// The server a cancel with this key must reach, if the key is live and
    /// its client is being served. A wrong secret finds nothing.
    #[cfg(test)]
    pub fn lookup(&self, key: CancelKey) -> Option<CancelTarget> {
        self.begin(key).map(|t| t.target.clone())
    }

    /// Like [`CancelRegistry::lookup`], and holds the target until the returned
    /// ticket is dropped: the session will not hand its server connection to
    /// anyone else before that. Drop the ticket once the server has the cancel.
    pub fn begin(&self, key: CancelKey) -> Option<CancelTicket> {
        // The whole pair must match: a wrong secret finds nothing.
        let entry = self.entries.get(&key)?.clone();
        let target = {
            let mut state = entry.state.lock().ok()?;
            let target = state.target.clone()?;
            state.in_flight += 1;
            target
        };
        Some(CancelTicket { entry, target })
    }

    /// Live keys now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is live.
    #[cfg(test)]
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
        // Only this client's pair: a later client of the same server
        // connection holds the same pid with another secret.
        self.registry.entries.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CancelTarget {
        CancelTarget { addr: Arc::new(ServerAddr::plain("127.0.0.1", 5432)), key: BackendKeyData { pid: 7, secret: 9 } }
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

    #[test]
    fn pooler_made_pids_are_never_real_process_ids() {
        for _ in 0..100 {
            let reg = Arc::new(CancelRegistry::new());
            let h = reg.register();
            assert!(h.key().pid > PID_MAX_LIMIT, "{:?}", h.key());
        }
        // Wrapping around skips the range of real process ids too.
        let reg = Arc::new(CancelRegistry::new());
        reg.next_id.store(i32::MAX, Ordering::Relaxed);
        let last = reg.register();
        let wrapped = reg.register();
        assert_eq!(last.key().pid, i32::MAX);
        assert_eq!(wrapped.key().pid, PID_MAX_LIMIT + 1);
        assert_eq!(reg.register().key().pid, PID_MAX_LIMIT + 2);
    }

    fn target_pid(pid: i32, secret: i32) -> CancelTarget {
        CancelTarget { key: BackendKeyData { pid, secret }, ..target() }
    }

    #[test]
    fn a_real_pid_carries_a_random_secret_of_the_poolers() {
        let reg = Arc::new(CancelRegistry::new());
        let h = reg.register_for_pid(4242);
        assert_eq!(h.key().pid, 4242);
        h.set_target(Some(target_pid(4242, 99)));
        assert_eq!(reg.lookup(h.key()).map(|t| t.key), Some(BackendKeyData { pid: 4242, secret: 99 }));
        // The server's own secret is not the key, nor is any other.
        if h.key().secret != 99 {
            assert_eq!(reg.lookup(CancelKey { pid: 4242, secret: 99 }), None);
        }
        assert_eq!(reg.lookup(CancelKey { pid: 4242, secret: h.key().secret.wrapping_add(1) }), None);
        // Secrets vary from key to key.
        let secrets: std::collections::HashSet<i32> = (0..20).map(|_| reg.register_for_pid(1).key().secret).collect();
        assert!(secrets.len() > 1);
    }

    #[test]
    fn the_same_pid_at_the_same_time_reaches_each_clients_own_connection() {
        // Two servers with a backend of pid 777 each, one client on each.
        let reg = Arc::new(CancelRegistry::new());
        let a = reg.register_for_pid(777);
        let b = reg.register_for_pid(777);
        assert_eq!((a.key().pid, b.key().pid), (777, 777));
        assert_ne!(a.key(), b.key(), "unique as a pair");
        a.set_target(Some(target_pid(777, 1)));
        b.set_target(Some(target_pid(777, 2)));
        assert_eq!(reg.lookup(a.key()).map(|t| t.key.secret), Some(1));
        assert_eq!(reg.lookup(b.key()).map(|t| t.key.secret), Some(2));
        assert_eq!(reg.len(), 2);
        // One leaving withdraws its key only.
        let a_key = a.key();
        drop(a);
        assert_eq!(reg.lookup(a_key), None);
        assert_eq!(reg.lookup(b.key()).map(|t| t.key.secret), Some(2));
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn the_next_client_of_a_connection_gets_its_pid_and_the_old_key_is_dead() {
        let reg = Arc::new(CancelRegistry::new());
        let first = reg.register_for_pid(555);
        first.set_target(Some(target_pid(555, 5)));
        let old = first.key();
        drop(first);
        let next = reg.register_for_pid(555);
        next.set_target(Some(target_pid(555, 5)));
        assert_eq!(next.key().pid, 555);
        // A late cancel with the first client's key does not reach the
        // connection now serving the next client (unless the secret came out
        // the same, one chance in 2^32).
        if next.key() != old {
            assert_eq!(reg.lookup(old), None);
        }
        assert!(reg.lookup(next.key()).is_some());
    }
}
