//! Taking a server connection for the next request and giving it back:
//! the node choice (router, routing policy, read-your-writes), checkout with
//! its fallbacks (a standby for a read, a new primary after a failover),
//! bringing the connection to the client's settings, and at release the
//! round trips that settle the session's state (WAL position, parameters,
//! `DEALLOCATE ALL`, cancels on their way).

use super::*;

impl Relay<'_> {
    /// The pool of `node`, created on first use.
    pub(super) fn pool_for(&mut self, node: usize) -> Arc<Pool> {
        if let Some(Some(p)) = self.pools.get(node) {
            return p.clone();
        }
        let Some(addr) = self.core.shared.node(node) else {
            return self.core.pool.clone();
        };
        let key = PoolKey { node, user: self.core.login.user.clone(), database: self.core.login.database.clone() };
        let login = &self.core.login;
        let p = self.core.shared.pools.get(key, &addr, || login.clone());
        if let Some(k) = login.client_key {
            p.learn_client_key(k);
        }
        // A node a reload added after this session started: room for it.
        if self.pools.len() <= node {
            self.pools.resize(node + 1, None);
        }
        self.pools[node] = Some(p.clone());
        p
    }

    /// Takes a server connection on the node the next request should run on,
    /// and brings its session to what the client expects: the same
    /// parameters, no other client's leftovers. While the client's database
    /// is paused (`PAUSE`) it waits, without a timeout, and chooses the node
    /// once resumed (a RELOAD meanwhile may have moved the primary).
    pub(super) async fn attach(&mut self) -> Result<(), Error> {
        if self.core.shared.memory.over() {
            Box::pin(self.wait_for_memory()).await?;
        }
        loop {
            if self.core.shared.control.pause.holds(&self.core.login.database) {
                let shared = self.core.shared;
                Box::pin(shared.control.pause.wait(&self.core.login.database)).await;
            }
            match self.attach_once().await {
                Err(Error::Paused) => continue,
                r => return r,
            }
        }
    }

    /// Past `server.max_memory`: waits (up to `pool.checkout_timeout`) for
    /// the buffers to give memory back, else [`Error::OutOfMemory`].
    async fn wait_for_memory(&self) -> Result<(), Error> {
        let memory = &self.core.shared.memory;
        let started = Instant::now();
        let timeout = self.core.settings.checkout_timeout;
        while memory.over() {
            if started.elapsed() >= timeout {
                memory.refused();
                let (held, limit) = (memory.held(), memory.limit());
                tracing::warn!(held, limit, "memory limit reached: a transaction is refused (53200)");
                return Err(Error::OutOfMemory { held, limit, waited_ms: started.elapsed().as_millis() as u64 });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// [`Relay::attach`], once: [`Error::Paused`] when a checkout found the
    /// database paused.
    async fn attach_once(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let router = &self.core.shared.router;
        let mut wants = Vec::new();
        let front = if router.balancing() && self.core.stickiness != Stickiness::Everything {
            self.core.front_is_read(&mut wants)
        } else {
            None
        };
        self.core.wants.append(&mut wants);
        self.perform_wants();
        let read = match front {
            Some(true) => !(self.core.stickiness == Stickiness::Blocks && self.core.front_is_block()),
            _ => false,
        };
        if !read {
            Box::pin(self.wait_for_primary()).await?;
        }
        // Writes go to the primary as the cluster controller knows it now.
        let primary = router.primary();
        let min_lsn = if router.read_your_writes() { self.write_lsn } else { 0 };
        let mut node = primary;
        let mut probe = false;
        if read {
            // The router (and the embedding service's routing policy, if
            // any) picks the read node; `probe`: ask it for the session's
            // last write first.
            let block = router.has_policy() && self.core.front_is_block();
            let login = &self.core.login;
            let (user, database, application) = (&login.user, &login.database, self.core.application());
            (node, probe) =
                router.choose_read(&crate::route::Requester { user, database, application, block }, min_lsn);
        }
        if self.parks() && node != primary && !router.statement_level() {
            // One read node per session (pgpool's default), if it has the
            // session's writes; else this read goes to the primary.
            match self.session_read_node {
                Some(n) if n == primary || router.replayed(n) >= min_lsn || min_lsn == 0 => {
                    node = n;
                    probe = probe && n != primary;
                }
                Some(_) => {
                    node = primary;
                    probe = false;
                }
                None => self.session_read_node = Some(node),
            }
        }
        let parked = self.parked.get_mut(node).and_then(Option::take);
        let lease = match parked {
            Some(l) => Ok(l),
            // Holding the primary already, a session never waits for a read
            // connection (two sessions could wait on each other): no free
            // slot now means the primary serves the read.
            None if self.parks() && node != primary => match self.pool_for(node).try_checkout().await {
                Ok(Some(l)) => Ok(l),
                Ok(None) => {
                    node = primary;
                    probe = false;
                    self.parked_or_checkout(primary).await
                }
                Err(e) => Err(e),
            },
            None => self.pool_for(node).checkout().await,
        };
        let mut lease = match lease {
            Ok(l) => l,
            Err(e) if e.is_unavailable() && node != primary => {
                // Nothing was sent anywhere: the primary can serve the read.
                if self.core.shared.backend_failed(node, &e) {
                    tracing::warn!(node, error = %e, "read node unreachable; using the primary");
                }
                node = primary;
                probe = false;
                self.parked_or_checkout(primary).await?
            }
            Err(e) if e.is_unavailable() && read && min_lsn == 0 => {
                // The primary is unreachable and the request only reads: a
                // standby serves it (the health checks will confirm the rest).
                let first = self.core.shared.backend_failed(primary, &e);
                let Some(n) = router.fallback_node(primary) else { return Err(e) };
                if first {
                    tracing::warn!(node = primary, error = %e, standby = n, "primary unreachable; a standby serves the read");
                } else {
                    tracing::debug!(node = primary, error = %e, standby = n, "primary unreachable; a standby serves the read");
                }
                node = n;
                probe = false;
                self.parked_or_checkout(n).await?
            }
            Err(e) if e.is_unavailable() => {
                // The primary cannot be reached and nothing was sent: the
                // request waits (bounded) for a primary that answers (a new
                // one after a failover, or this one back) and runs there.
                self.core.shared.backend_failed(primary, &e);
                // One bound for the whole request, waits before included.
                let wait =
                    self.core.shared.config().failover.search_primary_node_timeout.saturating_sub(started.elapsed());
                let Some(n) = Box::pin(self.core.shared.cluster.wait_for_primary_after(primary, wait)).await else {
                    return Err(e);
                };
                tracing::info!(failed = primary, primary = n, "the request waited for a primary and runs there");
                node = n;
                probe = false;
                self.parked_or_checkout(n).await?
            }
            Err(e) => return Err(e),
        };
        if probe {
            let replayed = Box::pin(lease.conn().query_row("SELECT pg_catalog.pg_last_wal_replay_lsn()")).await;
            let lsn = match &replayed {
                Ok(row) => row.first().cloned().flatten().and_then(|v| crate::lsn::parse_lsn(&v)).unwrap_or(0),
                Err(_) => 0,
            };
            router.note_replayed(node, lsn);
            if lsn < min_lsn {
                // Behind the session's own write: the primary serves this read.
                if replayed.is_ok() && self.parks() {
                    if self.parked.len() <= node {
                        self.parked.resize_with(node + 1, || None);
                    }
                    self.parked[node] = Some(lease);
                } else if replayed.is_ok() {
                    Box::pin(self.pool_for(node).checkin(lease, TransactionStatus::Idle, Reset::None)).await;
                } else {
                    drop(lease);
                }
                node = primary;
                lease = self.parked_or_checkout(primary).await?;
            }
        }
        let settled = has_settings(lease.conn(), &self.core.params, &self.core.extra);
        let sql =
            if settled { String::new() } else { restore_sql(&self.core.params, &self.core.extra, lease.conn_ref()) };
        if !sql.is_empty() {
            if let Err(e) = Box::pin(lease.conn().simple_query(&sql)).await {
                // A server that cannot take the client's settings back is not
                // one to lend again blindly.
                drop(lease);
                return Err(e);
            }
        }
        self.take_lease(lease, node, read);
        Ok(())
    }

    /// A connection on `node`: the one this session parked there (balanced
    /// session mode), else one from the node's pool.
    pub(super) async fn parked_or_checkout(&mut self, node: usize) -> Result<Lease, Error> {
        match self.parked.get_mut(node).and_then(Option::take) {
            Some(l) => Ok(l),
            None => self.pool_for(node).checkout().await,
        }
    }

    /// [`Relay::attach`] without awaiting, for the usual case: no load
    /// balancing, the primary available, a free idle connection there that
    /// already has the client's settings. False: nothing was taken; attach
    /// the long way.
    pub(super) fn attach_now(&mut self) -> bool {
        if self.core.shared.memory.over() {
            return false;
        }
        let router = &self.core.shared.router;
        // With balancing on, reads are routed (a routing policy's too): never here.
        if router.balancing() || self.parks() {
            return false;
        }
        let node = {
            let s = router.snapshot();
            if !s.primary_available() {
                return false;
            }
            s.primary
        };
        let Some(lease) = self.pool_for(node).checkout_now() else {
            return false;
        };
        let mut lease = lease;
        if !has_settings(lease.conn(), &self.core.params, &self.core.extra)
            && !restore_sql(&self.core.params, &self.core.extra, lease.conn_ref()).is_empty()
        {
            // Settings to restore first: that takes a round trip.
            self.pool_for(node).checkin_idle(lease);
            return false;
        }
        self.take_lease(lease, node, false);
        true
    }

    /// Makes `lease` (on `node`) the client's connection for the next request.
    pub(super) fn take_lease(&mut self, mut lease: Lease, node: usize, read: bool) {
        if !self.core.extra.is_empty() || !lease.conn_ref().extra.is_empty() {
            lease.conn().extra = self.core.extra.clone();
        }
        if self.core.sout.capacity() == 0 {
            self.core.sout = recycled();
        }
        if self.core.cout.capacity() == 0 {
            *self.core.cout = recycled();
        }
        self.cancel
            .set_target(Some(CancelTarget { addr: lease.conn_ref().addr_shared(), key: lease.conn_ref().key() }));
        self.core.status = TransactionStatus::Idle;
        self.lease = Some(lease);
        self.core.attached(node);
        self.core.wrote = false;
        self.core.in_block = false;
        self.core.reroute = false;
        self.core.at_request_start = true;
        self.core.shared.router.begin(node, read);
    }

    /// While no node is available as the primary (a failover in progress, a
    /// primary that fails its checks or hangs), waits up to
    /// `failover.search_primary_node_timeout` for one, then fails with
    /// [`Error::NoPrimary`]: nothing is ever sent to a primary marked down
    /// (a hung one would hold the request for as long as it hangs).
    pub(super) async fn wait_for_primary(&self) -> Result<(), Error> {
        let router = &self.core.shared.router;
        if router.snapshot().primary_available() {
            return Ok(());
        }
        let wait = self.core.shared.config().failover.search_primary_node_timeout;
        if self.core.shared.cluster.wait_for_primary(wait).await {
            return Ok(());
        }
        let s = router.snapshot();
        match s.nodes.get(s.primary) {
            // In recovery but up: its own refusal (read-only) says it best.
            Some(n) if n.status == crate::topology::Status::Up => Ok(()),
            n => Err(Error::NoPrimary {
                node: s.primary,
                status: n.map(|n| n.status.as_str()).unwrap_or("unknown"),
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }

    /// Gives the quiet, idle server connection back to the pool, after reading
    /// the parameters the transaction changed and settling late cancels.
    /// Releasing needs a query on the connection first: the WAL position
    /// after a write (read-your-writes), or the values of changed parameters.
    pub(super) fn release_needs_round_trip(&self) -> bool {
        (self.core.wrote
            && self.core.node == self.core.shared.router.primary()
            && self.core.shared.router.read_your_writes())
            || !self.core.dirty.is_empty()
    }

    /// [`Relay::release`] when it needs no round trip and the session does
    /// not park connections: give the connection back.
    pub(super) async fn release_plain(&mut self) -> Result<(), Error> {
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        self.report_traffic();
        self.core.released();
        self.core.note_write_stickiness();
        self.core.shared.router.end(self.core.node);
        // Usually nothing needs awaiting: the connection goes straight back.
        let clean_idle = !self.core.pinned()
            && self.core.dirty.is_empty()
            && self.core.status == TransactionStatus::Idle
            && !lease.conn_ref().statements.unsure;
        if clean_idle && self.cancel.try_detach() {
            self.pool_for(self.core.node).checkin_idle(lease);
            return Ok(());
        }
        Box::pin(self.give_back(lease, self.core.node, TransactionStatus::Idle, true, false)).await;
        Ok(())
    }

    pub(super) async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        self.report_traffic();
        self.core.released();
        self.core.note_write_stickiness();
        if self.core.wrote
            && self.core.node == self.core.shared.router.primary()
            && self.core.shared.router.read_your_writes()
        {
            // Where the session's reads must wait for: one round trip, only
            // after writes. The insert position, not the write position: with
            // asynchronous commit (`synchronous_commit = off`, globally or for
            // one transaction) the commit record may not be written yet, and a
            // standby that replayed up to the write position would still miss
            // it. The insert position is past every record inserted so far.
            match Box::pin(lease.conn().query_row("SELECT pg_catalog.pg_current_wal_insert_lsn()")).await {
                Ok(row) => {
                    if let Some(lsn) = row.first().cloned().flatten().and_then(|v| crate::lsn::parse_lsn(&v)) {
                        self.write_lsn = self.write_lsn.max(lsn);
                    }
                }
                Err(Error::Server(_)) => {
                    // The node refused: it is in recovery (demoted behind
                    // the pooler's back, which its 25006 already reported),
                    // so nothing was written there to wait for. The
                    // connection is idle and sound: the session goes on.
                }
                Err(e) => {
                    drop(lease);
                    self.core.shared.router.end(self.core.node);
                    return Err(e);
                }
            }
        }
        if !self.core.dirty.is_empty() {
            let names = std::mem::take(&mut self.core.dirty);
            let sql = format!(
                "SELECT {}",
                names
                    .iter()
                    .map(|n| {
                        let mut s = String::from("pg_catalog.current_setting(");
                        crate::sql::push_literal(&mut s, n);
                        s.push_str(", true)");
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match Box::pin(lease.conn().query_row(&sql)).await {
                Ok(values) => {
                    for (name, value) in names.into_iter().zip(values) {
                        self.core.extra.retain(|(k, _)| *k != name);
                        if let Some(v) = value {
                            self.core.extra.push((name, v));
                        }
                    }
                    lease.conn().extra = self.core.extra.clone();
                }
                Err(e) => {
                    // The connection's state is unknown: do not lend it again.
                    drop(lease);
                    self.core.shared.router.end(self.core.node);
                    return Err(e);
                }
            }
        }
        self.core.shared.router.end(self.core.node);
        if self.parks() {
            // The connection stays this session's; between requests no cancel
            // points at it.
            self.cancel.set_target(None);
            let node = self.core.node;
            if self.parked.len() <= node {
                self.parked.resize_with(node + 1, || None);
            }
            self.parked[node] = Some(lease);
            return Ok(());
        }
        self.give_back(lease, self.core.node, TransactionStatus::Idle, true, false).await;
        Ok(())
    }

    /// Session mode, at the end: the connection goes back to its pool,
    /// fully reset, when nothing is left half done on it and no cancel for
    /// this client can still reach it; else it is closed.
    pub(super) async fn end_session(&mut self, lease: Lease, clean: bool) {
        let settled = self.cancel.detach(crate::runtime::CANCEL_TIMEOUT + Duration::from_secs(1)).await;
        if clean && settled {
            self.core.pool.checkin(lease, self.core.status, Reset::Full).await;
        }
    }

    /// Returns `lease` to the pool: reset if it was pinned or its state is
    /// unknown, closed if it is not clean.
    pub(super) async fn give_back(
        &mut self,
        mut lease: Lease,
        node: usize,
        status: TransactionStatus,
        clean: bool,
        session_over: bool,
    ) {
        let pool = self.pool_for(node);
        // No cancel for this client may reach the connection once someone else
        // has it: wait for any on its way (bounded), else do not reuse it.
        let settled = self.cancel.detach(crate::runtime::CANCEL_TIMEOUT + Duration::from_secs(1)).await;
        if !clean || !settled {
            drop(lease);
            return;
        }
        let conn = lease.conn();
        let needs_reset =
            self.parks() || self.core.pinned() || !self.core.dirty.is_empty() || status != TransactionStatus::Idle;
        if needs_reset && session_over {
            // Session state may be anywhere: only a full reset makes it safe.
            let full = pool.settings().reset_query_list.iter().any(|q| q.trim().eq_ignore_ascii_case("DISCARD ALL"));
            if !full {
                drop(lease);
                return;
            }
            conn.statements.clear();
            conn.extra.clear();
            Box::pin(pool.checkin(lease, status, Reset::Full)).await;
            return;
        }
        if conn.statements.unsure {
            if Box::pin(conn.simple_query("DEALLOCATE ALL")).await.is_err() {
                drop(lease);
                return;
            }
            conn.statements.clear();
            conn.statements.unsure = false;
        }
        pool.checkin(lease, status, Reset::None).await;
    }
}
