//! The server's side of the core: its answers matched against the queue of
//! what it owes, in order, and the answers the pooler gives in its place.

use super::*;

impl Core<'_> {
    /// Queues an answer the pooler gives itself, in order with the server's.
    pub(super) fn push_synthetic(
        &mut self,
        kind: Kind,
        s: Synthetic,
        parse: Option<ParseUndo>,
        srv: &mut ServerView<'_>,
    ) {
        let p = Pending { kind, hidden: false, synthetic: Some(s), parse, stmt: None };
        if self.server_skip && kind != Kind::Ready {
            // The server skips to the next Sync after an error; so does the pooler.
            self.undo(p, srv);
            return;
        }
        self.queue.push_back(p);
        self.answer_synthetic();
    }

    /// Gives the answers at the front of the queue that are the pooler's own.
    pub(super) fn answer_synthetic(&mut self) {
        while self.queue.front().is_some_and(|p| p.synthetic.is_some()) {
            let Some(p) = self.queue.pop_front() else { break };
            let alone = self.cout.is_empty();
            if matches!(p.synthetic, Some(Synthetic::ParseComplete | Synthetic::CloseComplete)) {
                self.held = if alone || self.held == self.cout.len() { self.cout.len() + 5 } else { usize::MAX };
            }
            match p.synthetic {
                Some(Synthetic::ParseComplete) => w::parse_complete(self.cout),
                Some(Synthetic::CloseComplete) => w::close_complete(self.cout),
                Some(Synthetic::Deallocate) => {
                    w::command_complete(self.cout, "DEALLOCATE");
                    w::ready_for_query(self.cout, self.status);
                }
                // The client's messages up to its Sync are dropped (client_skip),
                // so nothing queued after this can be waiting for an answer.
                Some(Synthetic::Error(e)) => self.cout.extend_from_slice(&e),
                Some(Synthetic::QueryError(e)) => {
                    self.cout.extend_from_slice(&e);
                    // Inside a transaction block, a failed statement fails the block.
                    let status = match self.status {
                        TransactionStatus::Idle => TransactionStatus::Idle,
                        _ => TransactionStatus::Failed,
                    };
                    w::ready_for_query(self.cout, status);
                }
                None => {}
            }
        }
    }

    /// What the client is to get now is only the pooler's own ParseComplete
    /// or CloseComplete, and the server owes the answers that follow them
    /// up to a Sync already sent: they can wait to go out with those, in
    /// one write instead of two.
    pub(in crate::relay) fn output_can_wait(&self) -> bool {
        self.held == self.cout.len()
            && !self.cout.is_empty()
            && !self.needs_sync
            && !self.queue.is_empty()
            // Only those answers, whatever came and went since they were counted.
            && self.cout.chunks(5).all(|m| matches!(m, [b'1' | b'3', 0, 0, 0, 4]))
    }

    /// A pending message that will never be answered: forget what it set up.
    pub(super) fn undo(&mut self, p: Pending, srv: &mut ServerView<'_>) {
        if let Some((client_name, def)) = p.parse {
            if let Some(name) = client_name {
                self.statements.remove_if(&name, def.id);
            }
            srv.statements.forget(def.id);
        }
    }

    pub(in crate::relay) fn relay_server_messages(&mut self, srv: &mut ServerView<'_>) -> Result<(), Error> {
        while self.cout.len() < HIGH_WATER {
            if self.down_remaining > 0 {
                let moved = pass_on(srv.buf, Some(&mut *self.cout), self.down_remaining);
                if moved == 0 {
                    break;
                }
                self.down_remaining -= moved;
                continue;
            }
            let Some((t, total)) = peek_header(srv.buf).map_err(Error::ServerProtocol)? else {
                break;
            };
            self.last_words = None;
            if (t == b'D' || t == b'd') && total > STREAM_OVER {
                // Rows and COPY data stream through, whatever their size.
                self.down_remaining = total - pass_on(srv.buf, Some(&mut *self.cout), total);
                continue;
            }
            if self.mode == Mode::Session
                && !matches!(
                    t,
                    tag::READY_FOR_QUERY | tag::PARAMETER_STATUS | tag::ERROR_RESPONSE | tag::NOTIFICATION_RESPONSE
                )
            {
                // Session mode looks into ReadyForQuery, ParameterStatus,
                // ErrorResponse and notifications only: anything else streams
                // through as it arrives, at any size (only ReadyForQuery
                // answers what session mode queues).
                self.down_remaining = total - pass_on(srv.buf, Some(&mut *self.cout), total);
                continue;
            }
            self.check_size(t, total).map_err(Error::ServerProtocol)?;
            if srv.buf.len() < total {
                srv.buf.reserve(total - srv.buf.len());
                break;
            }
            // Looked at in place and then copied out: splitting the frame off
            // the read buffer would allocate a shared header per message.
            let mut forward = true;
            if t == tag::ERROR_RESPONSE && self.node == self.shared.router.primary() {
                let code = crate::protocol::messages::ErrorFields::new(&srv.buf[HEADER_LEN..total]).code();
                if code == Some(READ_ONLY_TRANSACTION) {
                    // The primary refused a write as read-only: it may have
                    // been demoted behind the pooler's back. Check it now
                    // (and, if it is in recovery, every other node) instead
                    // of sending it writes until its next periodic check.
                    self.wants.push(Want::SuspectPrimary(self.node));
                }
            }
            match t {
                tag::PARAMETER_STATUS => {
                    let frame = srv.buf[..total].to_vec();
                    let p = ParameterStatus::parse(&frame[HEADER_LEN..]).map_err(Error::ServerProtocol)?;
                    backend::note_param(srv.params, p);
                    *srv.params_match = None;
                    backend::note_param(Arc::make_mut(&mut self.params), p);
                }
                tag::READY_FOR_QUERY => {
                    self.status =
                        TransactionStatus::parse(&srv.buf[HEADER_LEN..total]).map_err(Error::ServerProtocol)?;
                    if self.status != TransactionStatus::Idle {
                        self.in_block = true;
                    }
                    if self.mode == Mode::Statement && self.status != TransactionStatus::Idle && !self.pinned() {
                        // The client is told instead of seeing its transaction open.
                        self.refused_transaction = true;
                        srv.buf.advance(total);
                        return Ok(());
                    }
                    // Pop to the Sync this answers (entries before it were skipped).
                    while let Some(p) = self.queue.pop_front() {
                        if p.kind == Kind::Ready && p.synthetic.is_none() {
                            break;
                        }
                        undo_in(&mut self.statements, srv.statements, p);
                    }
                    if self.replay.is_some() && self.request_answered(srv) {
                        // The request went again: its answers are to come.
                        forward = false;
                    }
                }
                tag::ERROR_RESPONSE if self.stale_and_replayable(&srv.buf[HEADER_LEN..total]) => {
                    // A cached statement made stale by DDL: the client sent
                    // an unnamed Parse and must not see this. The server skips
                    // to the Sync; the request goes again at its ReadyForQuery.
                    forward = false;
                    while self.queue.front().is_some_and(|p| p.kind != Kind::Ready) {
                        if let Some(p) = self.queue.pop_front() {
                            undo_in(&mut self.statements, srv.statements, p);
                        }
                    }
                    self.mark_stale();
                }
                tag::ERROR_RESPONSE if self.queue.front().is_some_and(|p| p.kind != Kind::Ready) => {
                    if let Some(def) = self.queue.front().and_then(|p| p.stmt.as_ref()) {
                        if unnamed::is_stale_plan(&srv.buf[HEADER_LEN..total]) {
                            // DDL changed what a statement of the pooler's
                            // returns. Clients that prepared it keep getting
                            // this error, as from PostgreSQL; a new Parse of
                            // the text gets a new statement. The connection
                            // drops its statements before it is lent again.
                            def.stale.store(true, std::sync::atomic::Ordering::Relaxed);
                            srv.statements.unsure = true;
                        }
                    }
                    // The failed message and everything after it up to Sync:
                    // the server skips them, and so do their entries.
                    while self.queue.front().is_some_and(|p| p.kind != Kind::Ready) {
                        if let Some(p) = self.queue.pop_front() {
                            undo_in(&mut self.statements, srv.statements, p);
                        }
                    }
                    self.server_skip = self.queue.is_empty();
                }
                b'1' | b'2' | b'3' | b'T' | b'n' | b'C' | b'I' | b's' => {
                    let done = self.queue.front().is_some_and(|p| p.kind.answered_by(t));
                    if done {
                        if let Some(p) = self.queue.pop_front() {
                            forward = !p.hidden;
                            if let (b'1', Some((_, def))) = (t, &p.parse) {
                                def.valid.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                }
                tag::NOTIFICATION_RESPONSE => {
                    // The client's own NOTIFY, heard on the connection it
                    // LISTENs on (pinned): it carries the pid the client was
                    // given, as on a connection of its own. Notifications
                    // from other sessions keep their real pid.
                    let (own, given) = (srv.pid, self.client_pid);
                    crate::protocol::messages::rewrite_notification_pid(&mut srv.buf[HEADER_LEN..total], own, given)
                        .map_err(Error::ServerProtocol)?;
                }
                _ => {}
            }
            if t == tag::ERROR_RESPONSE && forward {
                let body = &srv.buf[HEADER_LEN..total];
                let fatal = crate::protocol::messages::ErrorFields::new(body).ends_session();
                self.last_words = fatal.then(|| body.into());
            }
            if forward {
                if self.replay.is_some() {
                    self.note_forwarded(t);
                }
                if t == tag::READY_FOR_QUERY {
                    self.tally.queries += 1;
                    if self.status == TransactionStatus::Idle {
                        self.tally.transactions += 1;
                    }
                }
                self.cout.extend_from_slice(&srv.buf[..total]);
            }
            srv.buf.advance(total);
            self.answer_synthetic();
        }
        Ok(())
    }
}
