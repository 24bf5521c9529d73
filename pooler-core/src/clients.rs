//! The registry of connected clients: who they are and what they are doing,
//! for the admin console (`SHOW CLIENTS`, `SHOW POOLS`, `KILL_CLIENT`) and
//! the metrics. A client registers once at login (one lock); its state then
//! changes with relaxed atomic stores, never a lock, on the relay's path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Lifecycle of the whole pooler, seen by every session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Serving.
    Running,
    /// Not accepting; sessions close when their transaction ends.
    Draining,
    /// Not accepting; the listeners went to a successor process, and each
    /// client that can be is handed to it at its next idle point (the
    /// others are served until they leave, as at a drain).
    HandingOver,
    /// The drain timeout ran out: every session closes now.
    Force,
}

/// What a client is doing, as `SHOW CLIENTS` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Logged in, no server connection lent.
    Idle = 0,
    /// A server connection is lent for a request or transaction.
    Active = 1,
    /// Waiting for a server connection.
    Waiting = 2,
    /// Holding its server connection for the session (session mode, or a
    /// transaction-mode client pinned by session state).
    Pinned = 3,
    /// On the admin console.
    Console = 4,
}

impl ClientState {
    fn from_u8(v: u8) -> ClientState {
        match v {
            1 => ClientState::Active,
            2 => ClientState::Waiting,
            3 => ClientState::Pinned,
            4 => ClientState::Console,
            _ => ClientState::Idle,
        }
    }

    /// The name shown in `SHOW CLIENTS`' `state` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
            ClientState::Pinned => "pinned",
            ClientState::Console => "active",
        }
    }
}

/// One connected client.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    /// The id `SHOW CLIENTS` shows and `KILL_CLIENT` takes; never reused.
    pub(crate) id: u64,
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) application_name: String,
    /// The client's address (`None`: a Unix socket or unknown).
    pub(crate) peer: Option<SocketAddr>,
    /// The pooler's end of the connection.
    pub(crate) local: Option<SocketAddr>,
    pub(crate) connected: SystemTime,
    /// The TLS session (`version/cipher`, as SHOW CLIENTS shows it); `None`:
    /// plain text.
    pub(crate) tls: Option<Box<str>>,
    state: AtomicU8,
    /// Microseconds since the registry's start when the current wait for a
    /// server connection began (meaningful while `Waiting`).
    wait_started_us: AtomicU64,
    /// The node the client last used.
    node: AtomicU64,
    killed: AtomicBool,
    /// Wakes the session when it is killed or the pooler's phase changes
    /// ([`ClientInfo::attention`]). Its own, so a relay waits on one signal
    /// nobody else polls, rather than on a watch every session shares. (A
    /// duplicate of each client's socket, shut down to end it, would cost
    /// every client a second descriptor and every login a `dup`.)
    attention: tokio::sync::Notify,
    registry_start: Instant,
}

impl ClientInfo {
    /// What the client is doing now.
    pub(crate) fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Records what the client is doing (a relaxed load, and a store only
    /// when it changed).
    #[inline]
    pub(crate) fn set_state(&self, state: ClientState) {
        let v = state as u8;
        if self.state.load(Ordering::Relaxed) != v {
            if state == ClientState::Waiting {
                let us = self.registry_start.elapsed().as_micros() as u64;
                self.wait_started_us.store(us, Ordering::Relaxed);
            }
            self.state.store(v, Ordering::Relaxed);
        }
    }

    /// How long the client has been waiting for a server connection (zero
    /// when it is not waiting).
    pub(crate) fn waiting_for(&self) -> std::time::Duration {
        if self.state() != ClientState::Waiting {
            return std::time::Duration::ZERO;
        }
        let since = std::time::Duration::from_micros(self.wait_started_us.load(Ordering::Relaxed));
        self.registry_start.elapsed().saturating_sub(since)
    }

    /// Records the node the client is on.
    #[inline]
    pub(crate) fn set_node(&self, node: usize) {
        if self.node.load(Ordering::Relaxed) != node as u64 {
            self.node.store(node as u64, Ordering::Relaxed);
        }
    }

    /// The node the client last used.
    pub(crate) fn node(&self) -> usize {
        self.node.load(Ordering::Relaxed) as usize
    }

    /// An operator killed the session ([`Clients::kill`]).
    pub(crate) fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        // A permit is kept if the session is not waiting at this moment: it
        // sees the kill at its next wait.
        self.attention.notify_one();
    }

    /// Completes once the session has something to look at: an operator
    /// killed it ([`ClientInfo::killed`]; it then ends and says why, its
    /// connection still open for that), or the pooler's phase changed
    /// ([`Clients::phase`]).
    pub(crate) async fn attention(&self) {
        self.attention.notified().await
    }
}

/// Who the client is, given at registration.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    pub(crate) user: &'a str,
    pub(crate) database: &'a str,
    pub(crate) application_name: &'a str,
    pub(crate) peer: Option<SocketAddr>,
    /// `version/cipher` of the client's TLS session.
    pub(crate) tls: Option<String>,
    pub(crate) state: ClientState,
}

/// The connection limit (`server.max_client_connections`): one permit per
/// client session. A client handed over by a predecessor at an upgrade is
/// never refused: past the limit it is counted apart, so that a drain still
/// waits for it.
#[derive(Debug)]
pub(crate) struct ClientSlots {
    permits: Arc<tokio::sync::Semaphore>,
    size: u32,
    /// Adopted clients served beyond the limit.
    over: Arc<AtomicU64>,
}

/// A session's place under the limit (or beyond it); freed when dropped.
#[derive(Debug)]
pub(crate) enum ClientSlot {
    Within(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
    Beyond(Arc<AtomicU64>),
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let ClientSlot::Beyond(over) = self {
            over.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ClientSlots {
    /// `size` sessions at once.
    pub(crate) fn new(size: usize) -> ClientSlots {
        let size = u32::try_from(size).unwrap_or(u32::MAX).min(tokio::sync::Semaphore::MAX_PERMITS as u32);
        ClientSlots { permits: Arc::new(tokio::sync::Semaphore::new(size as usize)), size, over: Arc::default() }
    }

    /// A place for a new client, if the limit allows one.
    pub(crate) fn try_take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A place for a client handed over by a predecessor: within the limit
    /// if there is room, else beyond it.
    pub(crate) fn take_adopted(&self) -> ClientSlot {
        match self.try_take() {
            Some(p) => ClientSlot::Within(p),
            None => {
                self.over.fetch_add(1, Ordering::Relaxed);
                ClientSlot::Beyond(self.over.clone())
            }
        }
    }

    /// Resolves when no session is left (within the limit or beyond).
    pub(crate) async fn all_gone(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            drop(all);
        }
        while self.over.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Every connected client, by id.
#[derive(Debug)]
pub(crate) struct Clients {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    start: Instant,
    /// The pooler's phase as last announced ([`Clients::announce`]), read
    /// by every relay at every turn of its loop: a relaxed load of a value
    /// that changes once or twice in a process's life.
    phase: AtomicU8,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            next: AtomicU64::new(1),
            map: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            phase: AtomicU8::new(Phase::Running as u8),
        }
    }
}

/// A registered client; dropping it removes the client from the registry.
#[derive(Debug)]
pub(crate) struct Registered<'a> {
    clients: &'a Clients,
    info: Arc<ClientInfo>,
}

impl std::ops::Deref for Registered<'_> {
    type Target = ClientInfo;
    fn deref(&self) -> &ClientInfo {
        &self.info
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.clients.map.lock() {
            map.remove(&self.info.id);
        }
    }
}

impl Clients {
    /// Registers a client whose connection is `socket`.
    pub(crate) fn register<'a>(&'a self, who: Registration<'_>, socket: &impl std::os::fd::AsFd) -> Registered<'a> {
        let sock = socket2::SockRef::from(socket);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        let info = Arc::new(ClientInfo {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            user: who.user.to_owned(),
            database: who.database.to_owned(),
            application_name: who.application_name.to_owned(),
            peer: who.peer,
            local,
            connected: SystemTime::now(),
            tls: who.tls.map(String::into_boxed_str),
            state: AtomicU8::new(who.state as u8),
            wait_started_us: AtomicU64::new(0),
            node: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            attention: tokio::sync::Notify::new(),
            registry_start: self.start,
        });
        if let Ok(mut map) = self.map.lock() {
            map.insert(info.id, info.clone());
        }
        Registered { clients: self, info }
    }

    /// Moves the pooler to `phase`: the watch for those waiting on it
    /// (logins, the console) and every listed session woken. A session
    /// listed after the wake-up reads the phase when its relay starts: the
    /// phase is stored before the registry is locked to wake, and a
    /// registration takes that lock.
    pub(crate) fn announce(&self, tx: &tokio::sync::watch::Sender<Phase>, phase: Phase) {
        tx.send_replace(phase);
        self.phase.store(phase as u8, Ordering::SeqCst);
        if let Ok(map) = self.map.lock() {
            for c in map.values() {
                c.attention.notify_one();
            }
        }
    }

    /// The pooler's phase as last announced.
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            x if x == Phase::Draining as u8 => Phase::Draining,
            x if x == Phase::HandingOver as u8 => Phase::HandingOver,
            x if x == Phase::Force as u8 => Phase::Force,
            _ => Phase::Running,
        }
    }

    /// Every client now, by id.
    pub(crate) fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.map.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Ends the session of client `id`. False: no such client.
    pub(crate) fn kill(&self, id: u64) -> bool {
        let found = self.map.lock().ok().and_then(|m| m.get(&id).cloned());
        match found {
            Some(c) => {
                c.kill();
                true
            }
            None => false,
        }
    }

    /// Ends the session of every client of `database` except the console
    /// sessions; how many.
    pub(crate) fn kill_database(&self, database: &str) -> usize {
        let victims: Vec<_> =
            self.all().into_iter().filter(|c| c.database == database && c.state() != ClientState::Console).collect();
        for c in &victims {
            c.kill();
        }
        victims.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(db: &str, state: ClientState) -> Registration<'_> {
        Registration { user: "u", database: db, application_name: "", peer: None, tls: None, state }
    }

    /// A connected socket (the pooler's end) and its peer.
    async fn connected_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (near, _) = listener.accept().await.unwrap();
        (near, far)
    }

    #[tokio::test]
    async fn a_client_is_listed_while_registered_and_killing_it_wakes_its_session() {
        let (near, _far) = connected_pair().await;
        let clients = Clients::default();
        let r = clients.register(who("app", ClientState::Idle), &near);
        assert_eq!(clients.all().len(), 1);
        assert!(r.local.is_some());
        r.set_state(ClientState::Waiting);
        assert_eq!(r.state(), ClientState::Waiting);
        assert!(clients.kill(r.id));
        assert!(r.killed());
        // Killed before the session waits: the wait ends at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), r.attention()).await.unwrap();
        assert!(!clients.kill(r.id + 100));
        drop(r);
        assert!(clients.all().is_empty());
    }

    #[tokio::test]
    async fn a_listed_client_costs_no_second_file_descriptor() {
        let (near, _far) = connected_pair().await;
        let clients = Clients::default();
        let open = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
        let before = open();
        let listed: Vec<_> = (0..50).map(|_| clients.register(who("app", ClientState::Idle), &near)).collect();
        // Other tests of this binary open and close descriptors meanwhile: a
        // duplicate per client would show as 50 more.
        assert!(open() < before + 25, "{} descriptors before, {} with 50 clients listed", before, open());
        drop(listed);
    }

    #[tokio::test]
    async fn killing_a_database_spares_other_databases_and_consoles() {
        let (s, _a) = connected_pair().await;
        let clients = Clients::default();
        let app = clients.register(who("app", ClientState::Idle), &s);
        let other = clients.register(who("other", ClientState::Idle), &s);
        let console = clients.register(who("app", ClientState::Console), &s);
        assert_eq!(clients.kill_database("app"), 1);
        assert!(app.killed() && !other.killed() && !console.killed());
    }
}
