//! Backend connection pools: one per (node, user, database), with a bounded
//! number of connections, a bounded FIFO wait, reset on return, and lifetimes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{Lifelines, LoginInfo, ServerAddr, ServerConn};
use crate::config::PoolConfig;
use crate::error::Error;
use crate::metrics as m;
use crate::pause::PauseGate;
use crate::protocol::TransactionStatus;
use crate::slots::Slots;

/// Longest time the reset of a returned connection may take before the
/// connection is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies one pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Index of the node in the configuration.
    pub node: usize,
    /// Role name.
    pub user: String,
    /// Database name.
    pub database: String,
}

/// Counters of one pool, readable without locks.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections opened over the pool's life.
    pub opened: AtomicU64,
    /// Connections closed (lifetime, idle timeout, broken, failed reset).
    pub closed: AtomicU64,
    /// Successful checkouts.
    pub checkouts: AtomicU64,
    /// Checkouts that had to wait for a free slot.
    pub waits: AtomicU64,
    /// Checkouts that gave up after `checkout_timeout`.
    pub timeouts: AtomicU64,
    /// Microseconds checkouts spent waiting for a free slot.
    pub wait_us: AtomicU64,
    /// Transactions the pool's clients ended (ReadyForQuery `I`).
    pub transactions: AtomicU64,
    /// Requests answered (ReadyForQuery).
    pub queries: AtomicU64,
    /// Bytes the pool's clients sent.
    pub received: AtomicU64,
    /// Bytes sent to the pool's clients.
    pub sent: AtomicU64,
    /// Microseconds of the requests timed (`metrics.durations`).
    pub query_us: AtomicU64,
    /// Microseconds of the transactions timed (`metrics.durations`).
    pub transaction_us: AtomicU64,
}

/// What one client's relay counted since it last reported: kept in plain
/// fields by the relay and added to its pool's [`PoolStats`] when a
/// connection goes back (every transaction in transaction mode) or the
/// session ends, so the relay's loop touches no shared counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) transactions: u64,
    pub(crate) queries: u64,
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) query_us: u64,
    pub(crate) transaction_us: u64,
}

impl PoolStats {
    /// Adds `t` (and leaves the caller's tally empty).
    pub(crate) fn record(&self, t: &mut Traffic) {
        if *t == Traffic::default() {
            return;
        }
        let add = |c: &AtomicU64, v: u64| {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&self.transactions, t.transactions);
        add(&self.queries, t.queries);
        add(&self.received, t.received);
        add(&self.sent, t.sent);
        add(&self.query_us, t.query_us);
        add(&self.transaction_us, t.transaction_us);
        *t = Traffic::default();
    }
}

/// What to do to a connection coming back before it is lent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// Roll back an open transaction and run `reset_query_list` (session
    /// mode, or a connection that held session state).
    Full,
    /// Roll back an open transaction only (transaction mode: the client's
    /// prepared statements and parameters are the pooler's to manage).
    None,
}

/// A pool of server connections for one (node, user, database).
///
/// A semaphore with `size` permits bounds the connections lent out; a
/// connection is only ever opened by a holder of a permit when no idle one is
/// left, so idle plus lent never exceeds `size`. Tokio's semaphore is fair, so
/// waiting clients are served first come, first served.
#[derive(Debug)]
pub struct Pool {
    key: PoolKey,
    addr: ServerAddr,
    login: Mutex<LoginInfo>,
    /// Swapped by a reload.
    settings: ArcSwap<PoolConfig>,
    max_message: usize,
    slots: Slots,
    /// Extra slots for clients that waited `reserve_timeout`.
    reserve: Slots,
    /// Boxed, as in a [`Lease`]: a lease is then two words wherever it is
    /// kept (every client's relay has a slot for one per node).
    #[allow(clippy::vec_box)] // moved out into a Lease: two words, not 300 bytes
    idle: Mutex<Vec<Box<ServerConn>>>,
    stats: PoolStats,
    /// The node's connections, to cut when it is marked down.
    lifelines: Arc<Lifelines>,
    /// The parameters the server reported to the last connection opened:
    /// its defaults for this user and database (a transaction-mode login
    /// may be answered from them without a connection).
    defaults: Mutex<Option<Arc<Vec<(String, String)>>>>,
    /// When the pool was made: the origin of `reconnect_mark`.
    born: Instant,
    /// `RECONNECT`: connections opened before `born` plus this many
    /// nanoseconds are closed instead of reused (0: none).
    reconnect_mark: AtomicU64,
    /// `PAUSE`: no connection is lent while the pool's database is paused.
    gate: Arc<PauseGate>,
    /// Bumped by each reload of `settings` (sessions keep a copy).
    generation: AtomicU64,
    /// What every checkout and check-in reads of `settings`, as atomics.
    hot: HotSettings,
}

/// The settings read on every checkout and check-in, kept as atomics so the
/// hot path does not load the whole `PoolConfig` (updated with it).
#[derive(Debug)]
struct HotSettings {
    lifetime_ns: AtomicU64,
    idle_timeout_ns: AtomicU64,
    check_delay_ns: AtomicU64,
    check_query: std::sync::atomic::AtomicBool,
}

impl HotSettings {
    fn of(s: &PoolConfig) -> HotSettings {
        let h = HotSettings {
            lifetime_ns: AtomicU64::new(0),
            idle_timeout_ns: AtomicU64::new(0),
            check_delay_ns: AtomicU64::new(0),
            check_query: Default::default(),
        };
        h.set(s);
        h
    }

    fn set(&self, s: &PoolConfig) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.lifetime_ns.store(ns(s.server_lifetime), Ordering::Relaxed);
        self.idle_timeout_ns.store(ns(s.server_idle_timeout), Ordering::Relaxed);
        self.check_delay_ns.store(ns(s.check_delay), Ordering::Relaxed);
        self.check_query.store(!s.check_query.is_empty(), Ordering::Relaxed);
    }

    fn lifetime(&self) -> Duration {
        Duration::from_nanos(self.lifetime_ns.load(Ordering::Relaxed))
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_nanos(self.idle_timeout_ns.load(Ordering::Relaxed))
    }
}

/// One idle server connection, as `SHOW SERVERS` lists it.
#[derive(Debug, Clone)]
pub(crate) struct IdleServer {
    /// The backend's pid.
    pub(crate) pid: i32,
    /// Open for this long.
    pub(crate) age: Duration,
    /// Idle for this long.
    pub(crate) idle: Duration,
    /// The pooler's end of the connection.
    pub(crate) local: Option<std::net::SocketAddr>,
}

/// A server connection lent to a client. Give it back with [`Pool::checkin`];
/// dropping it instead closes the connection and frees its slot.
#[derive(Debug)]
pub struct Lease {
    conn: Box<ServerConn>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The connection.
    pub fn conn(&mut self) -> &mut ServerConn {
        &mut self.conn
    }

    /// The connection, read-only.
    pub fn conn_ref(&self) -> &ServerConn {
        &self.conn
    }
}

impl Pool {
    fn new(
        key: PoolKey,
        addr: ServerAddr,
        login: LoginInfo,
        settings: PoolConfig,
        (max_message, lifelines, gate): (usize, Arc<Lifelines>, Arc<PauseGate>),
    ) -> Pool {
        Pool {
            lifelines,
            gate,
            generation: AtomicU64::new(0),
            hot: HotSettings::of(&settings),
            defaults: Mutex::new(None),
            born: Instant::now(),
            reconnect_mark: AtomicU64::new(0),
            slots: Slots::new(settings.size),
            reserve: Slots::new(settings.reserve_size),
            key,
            addr,
            login: Mutex::new(login),
            settings: ArcSwap::from_pointee(settings),
            max_message,
            idle: Mutex::new(Vec::new()),
            stats: PoolStats::default(),
        }
    }

    /// The pool's key.
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// The settings in force for this pool (per-database and per-user
    /// overrides applied).
    pub fn settings(&self) -> Arc<PoolConfig> {
        self.settings.load_full()
    }

    /// Puts `settings` in force (a reload): sizes change at once when they
    /// grow and as connections come back when they shrink; the rest applies
    /// from the next checkout or check-in.
    pub(crate) fn reconfigure(&self, settings: PoolConfig) {
        self.slots.resize(settings.size);
        self.reserve.resize(settings.reserve_size);
        self.hot.set(&settings);
        self.settings.store(Arc::new(settings));
        self.generation.fetch_add(1, Ordering::Release);
        // Smaller: idle connections past the new size close now (lent ones
        // as they come back, in `checkin_idle`).
        let extra: Vec<Box<ServerConn>> = match self.idle.lock() {
            Ok(mut idle) => {
                let room = self.capacity().saturating_sub(self.active_count());
                let excess = idle.len().saturating_sub(room);
                idle.drain(..excess).collect()
            }
            Err(_) => Vec::new(),
        };
        for c in extra {
            self.discard(c);
        }
    }

    /// Changes with every reload of the settings ([`Pool::settings`]).
    pub(crate) fn settings_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Connections the pool may hold, idle and lent, reserve included.
    fn capacity(&self) -> usize {
        self.slots.size() + self.reserve.size()
    }

    /// Counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Remembers the user's SCRAM ClientKey, proven by a client, for logging in
    /// to the server when only a SCRAM verifier is known.
    pub(crate) fn learn_client_key(&self, key: [u8; 32]) {
        if let Ok(mut l) = self.login.lock() {
            l.client_key = Some(key);
        }
    }

    /// Uses `secret` for the connections opened from now on (auth_query
    /// read the user's secret again).
    pub(crate) fn learn_secret(&self, secret: Option<&crate::auth::UserSecret>) {
        if let Ok(mut l) = self.login.lock() {
            l.secret = secret.cloned();
        }
    }

    /// The server's default parameters for this pool's user and database,
    /// as reported to the last connection opened (none opened yet: `None`).
    pub(crate) fn server_defaults(&self) -> Option<Arc<Vec<(String, String)>>> {
        self.defaults.lock().ok()?.clone()
    }

    /// Idle connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Connections lent to clients now (reserve included).
    pub fn active_count(&self) -> usize {
        self.slots.lent() + self.reserve.lent()
    }

    /// Takes a connection: an idle one if any is healthy, else a new one. A
    /// client waits for a free slot in arrival order; after `reserve_timeout`
    /// it may also take a reserve slot; after `checkout_timeout` it gets
    /// [`Error::PoolTimeout`].
    ///
    /// While the pool's database is paused (`PAUSE`) it lends nothing:
    /// [`Error::Paused`], for the caller to wait at the gate
    /// ([`crate::pause::PauseGate::wait`]) and choose the node again.
    pub(crate) async fn checkout(&self) -> Result<Lease, Error> {
        let permit = match self.slots.try_acquire() {
            Ok(p) => {
                // No wait, no clock read.
                metrics::histogram!(m::CHECKOUT_WAIT_SECONDS).record(0.0);
                p
            }
            Err(_) => Box::pin(self.wait_for_permit()).await?,
        };
        if self.gate.holds_after_taking(&self.key.database) {
            return Err(Error::Paused);
        }
        self.lend(permit).await
    }

    /// The slow path of [`Pool::checkout`]: every slot is taken; wait up to
    /// `checkout_timeout` for one.
    async fn wait_for_permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        let started = Instant::now();
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                self.stats.waits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CHECKOUT_WAITS).increment(1);
                // Read first: a guard held across the wait would keep one of
                // arc-swap's few per-thread slots for as long as it lasts.
                let timeout = self.settings.load().checkout_timeout;
                match tokio::time::timeout(timeout, self.wait_for_slot()).await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Err(Error::Shutdown),
                    Err(_) => {
                        self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(m::CHECKOUT_TIMEOUTS).increment(1);
                        return Err(Error::PoolTimeout {
                            user: self.key.user.clone(),
                            database: self.key.database.clone(),
                            waited_ms: started.elapsed().as_millis() as u64,
                            size: self.settings.load().size,
                        });
                    }
                }
            }
        };
        let waited = started.elapsed();
        self.stats.wait_us.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        metrics::histogram!(m::CHECKOUT_WAIT_SECONDS).record(waited.as_secs_f64());
        Ok(permit)
    }

    /// Takes a connection only if a slot is free now (`Ok(None)` otherwise):
    /// for a client that already holds another connection and must not wait
    /// for a second one while holding the first.
    /// Paused counts as no free slot.
    pub(crate) async fn try_checkout(&self) -> Result<Option<Lease>, Error> {
        match self.slots.try_acquire() {
            Ok(permit) if !self.gate.holds_after_taking(&self.key.database) => self.lend(permit).await.map(Some),
            _ => Ok(None),
        }
    }

    /// An idle, healthy connection at once, without awaiting anything: a free
    /// slot and an idle connection that needs no check query. `None`: use
    /// [`Pool::checkout`] (which waits, checks or opens as needed).
    pub(crate) fn checkout_now(&self) -> Option<Lease> {
        let permit = self.slots.try_acquire().ok()?;
        if self.gate.holds_after_taking(&self.key.database) {
            return None;
        }
        let mut idle = self.idle.lock().ok()?;
        let conn = idle.last()?;
        if self.check_due(conn) || !self.reusable(conn) || !conn.is_alive() {
            return None;
        }
        let conn = idle.pop()?;
        drop(idle);
        metrics::histogram!(m::CHECKOUT_WAIT_SECONDS).record(0.0);
        Some(self.lent(conn, permit))
    }

    /// Counts a checkout and makes the lease.
    fn lent(&self, conn: Box<ServerConn>, permit: OwnedSemaphorePermit) -> Lease {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::CHECKOUTS).increment(1);
        Lease { conn, _permit: permit }
    }

    /// `check_query` must run on `conn` before it is lent (idle past `check_delay`).
    fn check_due(&self, conn: &ServerConn) -> bool {
        self.hot.check_query.load(Ordering::Relaxed)
            && conn.idle_since.elapsed() >= Duration::from_nanos(self.hot.check_delay_ns.load(Ordering::Relaxed))
    }

    /// A connection for the holder of `permit`: an idle healthy one, or a new one.
    async fn lend(&self, permit: OwnedSemaphorePermit) -> Result<Lease, Error> {
        while let Some(mut conn) = self.pop_idle() {
            if self.reusable(&conn) && conn.is_alive() && Box::pin(self.passes_check(&mut conn)).await {
                return Ok(self.lent(conn, permit));
            }
            self.discard(conn);
        }
        // Opening a connection is the cold path: boxed, so every task that
        // can check out does not carry its state inline.
        let conn = Box::pin(self.open()).await?;
        Ok(self.lent(Box::new(conn), permit))
    }

    /// Waits for a regular slot; after `reserve_timeout`, for either a regular
    /// or a reserve slot. `None`: the pool is closed.
    async fn wait_for_slot(&self) -> Option<OwnedSemaphorePermit> {
        let regular = self.slots.acquire();
        tokio::pin!(regular);
        let reserve_timeout = {
            let s = self.settings.load();
            (s.reserve_size > 0).then_some(s.reserve_timeout)
        };
        let Some(reserve_timeout) = reserve_timeout else {
            return regular.await;
        };
        tokio::select! {
            p = &mut regular => return p,
            _ = tokio::time::sleep(reserve_timeout) => {}
        }
        tokio::select! {
            p = &mut regular => p,
            p = self.reserve.acquire() => {
                tracing::info!(pool = ?self.key, "pool exhausted: lending a reserve connection");
                p
            }
        }
    }

    /// Opens and authenticates a new connection.
    async fn open(&self) -> Result<ServerConn, Error> {
        let login = match self.login.lock() {
            Ok(l) => l.clone(),
            Err(_) => return Err(Error::ServerAuth("login information unavailable".into())),
        };
        let (connect_timeout, tcp_user_timeout) = {
            let s = self.settings.load();
            (s.connect_timeout, s.tcp_user_timeout)
        };
        let mut conn = ServerConn::connect(&self.addr, &login, connect_timeout, self.max_message).await?;
        conn.hold_lifeline(&self.lifelines, tcp_user_timeout);
        if let Ok(mut d) = self.defaults.lock() {
            if d.as_deref() != Some(&conn.initial_params) {
                *d = Some(Arc::new(conn.initial_params.clone()));
            }
        }
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::SERVER_CONNECTIONS_OPENED).increment(1);
        Ok(conn)
    }

    /// Runs `check_query` on a connection that sat idle past `check_delay`.
    async fn passes_check(&self, conn: &mut ServerConn) -> bool {
        if !self.check_due(conn) {
            return true;
        }
        let (q, timeout) = {
            let s = self.settings.load();
            (s.check_query.clone(), s.connect_timeout)
        };
        match tokio::time::timeout(timeout, conn.simple_query(&q)).await {
            Ok(Ok(TransactionStatus::Idle)) => true,
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                tracing::info!(pool = ?self.key, error = %e, "idle server connection failed its check; closing it");
                false
            }
            Err(_) => false,
        }
    }

    /// Opens connections until `min_size` are open, without ever holding a
    /// slot a client is waiting for.
    /// Nothing is opened while the database is paused.
    pub(crate) async fn prewarm(&self) {
        if self.gate.holds(&self.key.database) {
            return;
        }
        while self.idle_count() + self.active_count() < self.settings.load().min_size {
            let Ok(permit) = self.slots.try_acquire() else {
                return;
            };
            match self.open().await {
                Ok(mut conn) => {
                    conn.idle_since = Instant::now();
                    conn.release_buffer();
                    match self.idle.lock() {
                        Ok(mut idle) => idle.push(Box::new(conn)),
                        Err(_) => return,
                    }
                    drop(permit);
                }
                Err(e) => {
                    tracing::warn!(pool = ?self.key, error = %e, "could not open a connection for min_size");
                    return;
                }
            }
        }
    }

    fn pop_idle(&self) -> Option<Box<ServerConn>> {
        // LIFO: the most recently used connection is the warmest, and the others
        // age out through the idle timeout.
        self.idle.lock().ok()?.pop()
    }

    fn reusable(&self, conn: &ServerConn) -> bool {
        // One clock read for both limits.
        let now = std::time::Instant::now();
        now.saturating_duration_since(conn.created()) < self.hot.lifetime()
            && now.saturating_duration_since(conn.idle_since) < self.hot.idle_timeout()
            && !self.reconnect_due(conn)
    }

    /// `conn` was opened before the last [`Pool::reconnect`].
    fn reconnect_due(&self, conn: &ServerConn) -> bool {
        let mark = self.reconnect_mark.load(Ordering::Relaxed);
        mark != 0 && (conn.created().saturating_duration_since(self.born).as_nanos() as u64) < mark
    }

    /// `RECONNECT`: closes the idle connections now, and every lent one
    /// when it comes back (whatever its lifetime); new ones open as needed.
    /// How many idle connections were closed.
    pub(crate) fn reconnect(&self) -> usize {
        let mark = (Instant::now().saturating_duration_since(self.born).as_nanos() as u64).max(1);
        self.reconnect_mark.fetch_max(mark, Ordering::Relaxed);
        let idle = self.idle_count();
        self.close_idle();
        idle
    }

    /// The idle connections now (`SHOW SERVERS`).
    pub(crate) fn idle_servers(&self) -> Vec<IdleServer> {
        let now = Instant::now();
        let Ok(idle) = self.idle.lock() else { return Vec::new() };
        idle.iter()
            .map(|c| IdleServer {
                pid: c.key().pid,
                age: now.saturating_duration_since(c.created()),
                idle: now.saturating_duration_since(c.idle_since),
                local: socket2::SockRef::from(&c.stream).local_addr().ok().and_then(|a| a.as_socket()),
            })
            .collect()
    }

    /// The node's address.
    pub(crate) fn addr(&self) -> &ServerAddr {
        &self.addr
    }

    fn discard(&self, conn: Box<ServerConn>) {
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::SERVER_CONNECTIONS_CLOSED).increment(1);
        tokio::spawn((*conn).close());
    }

    /// [`Pool::checkin`] of an idle connection that needs no reset, without
    /// awaiting anything: back to the idle list (or closed past its lifetime).
    pub(crate) fn checkin_idle(&self, lease: Lease) {
        let Lease { mut conn, _permit } = lease;
        let now = Instant::now();
        if now.saturating_duration_since(conn.created()) >= self.hot.lifetime() || self.reconnect_due(&conn) {
            self.discard(conn);
            return;
        }
        conn.idle_since = now;
        conn.release_buffer();
        // A reload shrank the pool and it is still over its new size: closed.
        if self.slots.owes() || self.reserve.owes() {
            self.discard(conn);
            return;
        }
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(_) => self.discard(conn),
        }
    }

    /// Returns a lent connection. `status` is the transaction status of its last
    /// ReadyForQuery; the caller guarantees that no request is outstanding on it.
    /// An open transaction is rolled back, the reset statements run, and the
    /// connection goes back to the idle list (or is closed if anything fails or
    /// it has outlived `server_lifetime`). The slot is freed only after that, so
    /// the pool never holds more than `size` connections.
    pub(crate) async fn checkin(&self, lease: Lease, status: TransactionStatus, reset: Reset) {
        if reset == Reset::None && status == TransactionStatus::Idle {
            self.checkin_idle(lease);
            return;
        }
        let Lease { mut conn, _permit } = lease;
        if conn.created().elapsed() >= self.hot.lifetime() {
            self.discard(conn);
            return;
        }
        match Box::pin(tokio::time::timeout(RESET_TIMEOUT, self.reset(&mut conn, status, reset))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(pool = ?self.key, error = %e, "reset failed; closing server connection");
                self.discard(conn);
                return;
            }
            Err(_) => {
                tracing::warn!(pool = ?self.key, timeout = ?RESET_TIMEOUT, "reset timed out; closing server connection");
                self.discard(conn);
                return;
            }
        }
        // Reset: back to the idle list like any clean connection.
        self.checkin_idle(Lease { conn, _permit });
    }

    /// Rolls back an open transaction and runs the reset statements.
    async fn reset(&self, conn: &mut ServerConn, status: TransactionStatus, reset: Reset) -> Result<(), Error> {
        let settings = self.settings.load();
        let list = if reset == Reset::Full { &settings.reset_query_list[..] } else { &[] };
        if !list.is_empty() {
            // What the reset drops is the pooler's to forget too.
            conn.statements.clear();
            conn.extra.clear();
        }
        let statements = (status != TransactionStatus::Idle)
            .then_some("ROLLBACK")
            .into_iter()
            .chain(list.iter().map(String::as_str));
        for q in statements {
            if conn.simple_query(q).await? != TransactionStatus::Idle {
                return Err(Error::Refused {
                    code: "XX000",
                    message: format!("reset statement {q:?} left a transaction open"),
                });
            }
        }
        Ok(())
    }

    /// Closes idle connections past their idle timeout or lifetime.
    pub(crate) fn prune(&self) {
        let expired: Vec<Box<ServerConn>> = match self.idle.lock() {
            Ok(mut idle) => {
                let (keep, drop): (Vec<_>, Vec<_>) = idle.drain(..).partition(|c| self.reusable(c));
                *idle = keep;
                drop
            }
            Err(_) => return,
        };
        for c in expired {
            self.discard(c);
        }
    }

    /// Takes every idle connection out of the pool (an upgrade hands them
    /// to the successor; what cannot go is given back with
    /// [`Pool::adopt_idle`]).
    pub(crate) fn take_idle(&self) -> Vec<ServerConn> {
        match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).map(|c| *c).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Puts an idle connection opened elsewhere (a predecessor's, handed
    /// over at an upgrade) in the idle list, if the pool has room for it:
    /// idle plus lent stay within the pool's size. False: it was closed.
    pub(crate) fn adopt_idle(&self, conn: ServerConn) -> bool {
        let mut conn = Box::new(conn);
        conn.hold_lifeline(&self.lifelines, self.settings.load().tcp_user_timeout);
        conn.idle_since = Instant::now();
        let kept = match self.idle.lock() {
            Ok(mut idle) => {
                // Under the idle lock: a concurrent adoption or prewarm
                // cannot push past the size between the count and the push.
                let room =
                    idle.len() + self.active_count() < self.slots.size() && !self.slots.owes() && self.reusable(&conn);
                if room {
                    idle.push(conn);
                    None
                } else {
                    Some(conn)
                }
            }
            Err(_) => Some(conn),
        };
        match kept {
            None => true,
            Some(conn) => {
                self.discard(conn);
                false
            }
        }
    }

    /// Closes every idle connection (shutdown).
    pub(crate) fn close_idle(&self) {
        let all: Vec<Box<ServerConn>> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).collect(),
            Err(_) => return,
        };
        for c in all {
            self.discard(c);
        }
    }
}

impl Drop for Pool {
    /// Ends a resize still waiting for permits to come back.
    fn drop(&mut self) {
        self.slots.close();
        self.reserve.close();
    }
}

/// All pools, created on first use.
#[derive(Debug)]
pub struct Pools {
    map: DashMap<PoolKey, Arc<Pool>>,
    /// Swapped by a reload ([`Pools::reconfigure`]).
    settings: ArcSwap<PoolConfig>,
    max_message: usize,
    /// Per node: its open server connections, whatever the pool.
    lifelines: DashMap<usize, Arc<Lifelines>>,
    /// The paused databases (`PAUSE`), which every pool obeys.
    gate: Arc<PauseGate>,
}

impl Pools {
    /// An empty set of pools with these settings.
    pub(crate) fn new(settings: PoolConfig, max_message: usize, gate: Arc<PauseGate>) -> Pools {
        Pools {
            map: DashMap::new(),
            settings: ArcSwap::from_pointee(settings),
            max_message,
            lifelines: DashMap::new(),
            gate,
        }
    }

    /// The pool for `key`, created if needed (with the settings for its user
    /// and database).
    pub(crate) fn get(&self, key: PoolKey, addr: &ServerAddr, login: impl FnOnce() -> LoginInfo) -> Arc<Pool> {
        if let Some(p) = self.map.get(&key) {
            return p.clone();
        }
        self.map
            .entry(key.clone())
            .or_insert_with(|| {
                let settings = self.settings.load().effective(&key.user, &key.database);
                let lifelines = self.lifelines.entry(key.node).or_default().clone();
                Arc::new(Pool::new(
                    key,
                    addr.clone(),
                    login(),
                    settings,
                    (self.max_message, lifelines, self.gate.clone()),
                ))
            })
            .clone()
    }

    /// `user`'s secret was read again: every pool of that user (any node,
    /// any database) opens its next connections with it.
    pub(crate) fn learn_secret(&self, user: &str, secret: Option<&crate::auth::UserSecret>) {
        for p in self.map.iter().filter(|e| e.key().user == user) {
            p.value().learn_secret(secret);
        }
    }

    /// Node `node` is out of service: closes its idle connections and cuts
    /// the ones lent out (their clients get an error at once instead of
    /// waiting on a server that may hang). How many were cut.
    pub(crate) fn cut_node(&self, node: usize) -> usize {
        for p in self.all().into_iter().filter(|p| p.key.node == node) {
            p.close_idle();
        }
        self.lifelines.get(&node).map(|l| l.cut_all()).unwrap_or(0)
    }

    /// Server connections lent out now by the pools of `database` (`None`:
    /// every pool): what `PAUSE` waits for.
    pub(crate) fn lent_for(&self, database: Option<&str>) -> usize {
        self.map
            .iter()
            .filter(|e| database.is_none_or(|d| e.key().database == d))
            .map(|e| e.value().active_count())
            .sum()
    }

    /// Puts `settings` in force (a reload): every pool takes the settings
    /// for its user and database, new pools too.
    pub(crate) fn reconfigure(&self, settings: PoolConfig) {
        for p in self.all() {
            p.reconfigure(settings.effective(&p.key.user, &p.key.database));
        }
        self.settings.store(Arc::new(settings));
    }

    /// Node `node` left the configuration: its idle connections close now,
    /// lent ones when they come back (their transactions finish). How many
    /// idle ones were closed.
    pub(crate) fn retire_node(&self, node: usize) -> usize {
        self.all().iter().filter(|p| p.key.node == node).map(|p| p.reconnect()).sum()
    }

    /// Every pool now.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Prunes every pool, and forgets pools that hold no connection and that
    /// no client is using (so clients naming ever new databases cannot make
    /// the table grow without bound).
    pub(crate) fn prune(&self) {
        for p in self.all() {
            p.prune();
            if p.settings.load().min_size > 0 {
                tokio::spawn(async move { p.prewarm().await });
            }
        }
        self.map.retain(|_, p| Arc::strong_count(p) > 1 || p.idle_count() > 0 || p.active_count() > 0);
    }

    /// How often [`Pools::prune`] should run.
    pub(crate) fn prune_interval(&self) -> Duration {
        let s = self.settings.load();
        (s.server_idle_timeout.min(s.server_lifetime) / 4).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }
}
