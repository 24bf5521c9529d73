//! The client's side of the core: each whole message the client sent,
//! relayed to the server with the names of prepared statements rewritten,
//! or answered by the pooler in the server's place.

use super::*;

impl Core<'_> {
    /// One whole client message of type `t` (`frame`); `request_start`:
    /// it opens a request. Kept for a replay when a request that used a
    /// cached unnamed statement is in flight.
    pub(super) fn client_message(
        &mut self,
        t: u8,
        frame: &[u8],
        request_start: bool,
        srv: &mut ServerView<'_>,
    ) -> Result<(), Error> {
        let start = self.sout.len();
        self.client_message_inner(t, frame, request_start, srv)?;
        if self.replay.is_some() && t != tag::PARSE {
            self.record_for_replay(t, start..self.sout.len());
        }
        Ok(())
    }

    fn client_message_inner(
        &mut self,
        t: u8,
        frame: &[u8],
        request_start: bool,
        srv: &mut ServerView<'_>,
    ) -> Result<(), Error> {
        if matches!(t, tag::QUERY | tag::PARSE) && self.peer.is_some() {
            log_statement(self.peer.as_deref(), t, &frame[HEADER_LEN..]);
        }
        let body = &frame[HEADER_LEN..];
        if matches!(t, tag::PARSE | b'B' | b'D' | b'C' | b'E' | b'H') {
            self.needs_sync = true;
        }
        let bad = |e| Error::ClientProtocol(e);
        match t {
            tag::QUERY => {
                let sql = body.strip_suffix(&[0]).ok_or(bad(ProtocolError::Malformed("query not terminated")))?;
                if self.known_plain(sql).is_none() && self.query_facts(sql, true, srv) {
                    return Ok(());
                }
                // A simple query destroys the unnamed statement.
                self.statements.remove(b"");
                let class = self.effective_now(sql, self.class_of(sql));
                if !class.is_read_only() {
                    self.wrote = true;
                    self.note_function_ddl(sql);
                }
                if crate::show::is_show_pool_nodes(sql) {
                    self.sout.extend_from_slice(&self.shared.show_pool_nodes(self.node));
                } else {
                    self.sout.extend_from_slice(frame);
                }
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            b'F' => {
                self.wrote = true;
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            b'S' => {
                self.client_skip = false;
                self.server_skip = false;
                self.needs_sync = false;
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Ready));
            }
            tag::PARSE => {
                let (name, rest) = split_cstr(body).map_err(bad)?;
                let (sql, _) = split_cstr(rest).map_err(bad)?;
                if self.known_plain(sql).is_none() && self.query_facts(sql, false, srv) {
                    return Ok(());
                }
                if name.is_empty() {
                    let class = self.effective_now(sql, self.class_of(sql));
                    if !class.is_read_only() {
                        self.note_function_ddl(sql);
                        self.wrote = true;
                    }
                    self.unnamed_class = Some(class);
                    if let Some(def) = self.cached_unnamed(rest, sql, request_start) {
                        // The client's unnamed statement is the cached one.
                        self.statements.insert(b"", def.clone());
                        if self.server_has(&def, srv) {
                            self.arm_replay(def);
                            self.push_synthetic(Kind::Parse, Synthetic::ParseComplete, None, srv);
                        } else {
                            let undo = Some((Some(Box::from(&b""[..])), def.clone()));
                            self.prepare_on_server(&def, false, undo, srv);
                        }
                        return Ok(());
                    }
                    self.statements.remove(b"");
                    self.sout.extend_from_slice(frame);
                    self.queue.push_back(Pending::plain(Kind::Parse));
                    return Ok(());
                }
                if self.statements.get(name).is_some() {
                    let message = format!("prepared statement \"{}\" already exists", String::from_utf8_lossy(name));
                    self.refuse_statement(Kind::Parse, "42P05", &message, srv);
                    return Ok(());
                }
                let classifier = self.shared.router.classifier_now();
                let generation = self.shared.router.generation();
                let def = self.shared.statements.intern(rest, generation, || classifier.classify(sql));
                if !self.effective_now(sql, def.class).is_read_only() {
                    self.wrote = true;
                    self.note_function_ddl(sql);
                }
                self.statements.insert(name, def.clone());
                self.note_setting_statement(&def, sql);
                let undo = Some((Some(name.into()), def.clone()));
                if self.server_has(&def, srv) {
                    self.push_synthetic(Kind::Parse, Synthetic::ParseComplete, undo, srv);
                } else {
                    self.prepare_on_server(&def, false, undo, srv);
                }
            }
            b'B' => {
                let b = Bind::parse(body).map_err(bad)?;
                let pending = match self.statements.get(b.statement).cloned() {
                    Some(def) => {
                        if !self.uses(Kind::Bind, b.statement, &def, request_start, srv) {
                            return Ok(());
                        }
                        if !self.effective_now(statement_sql(&def), self.def_class(&def)).is_read_only() {
                            self.wrote = true;
                        }
                        if !self.setting_statements.is_empty() {
                            self.executes_settings(def.id);
                        }
                        w::bind_named(&mut self.sout, b.portal, &def.server_name, b.rest);
                        Pending::using(Kind::Bind, def)
                    }
                    None if facts::is_reserved(b.statement) => {
                        self.refuse_name(Kind::Bind, b.statement, srv);
                        return Ok(());
                    }
                    _ => {
                        self.sout.extend_from_slice(frame);
                        Pending::plain(Kind::Bind)
                    }
                };
                self.queue.push_back(pending);
            }
            b'D' => {
                let d = Target::parse(body).map_err(bad)?;
                let pending = match self.statements.get(d.name).cloned() {
                    Some(def) if d.kind == b'S' => {
                        if !self.uses(Kind::Describe, d.name, &def, request_start, srv) {
                            return Ok(());
                        }
                        w::describe_or_close(&mut self.sout, b'D', b'S', &def.server_name);
                        Pending::using(Kind::Describe, def)
                    }
                    None if d.kind == b'S' && facts::is_reserved(d.name) => {
                        self.refuse_name(Kind::Describe, d.name, srv);
                        return Ok(());
                    }
                    _ => {
                        self.sout.extend_from_slice(frame);
                        Pending::plain(Kind::Describe)
                    }
                };
                self.queue.push_back(pending);
            }
            b'C' => {
                let c = Target::parse(body).map_err(bad)?;
                if c.kind == b'S' && self.statements.remove(c.name).is_some() {
                    // The server keeps it for other clients; the client's name is gone.
                    self.push_synthetic(Kind::Close, Synthetic::CloseComplete, None, srv);
                } else {
                    self.sout.extend_from_slice(frame);
                    self.queue.push_back(Pending::plain(Kind::Close));
                }
            }
            b'E' => {
                self.sout.extend_from_slice(frame);
                self.queue.push_back(Pending::plain(Kind::Execute));
            }
            _ => {
                // Flush, CopyData, CopyDone, CopyFail, and anything the server
                // will judge for itself.
                self.sout.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// A Bind or Describe (`kind`) of the client's statement `def`, named
    /// `name`: refused as PostgreSQL refuses it once a server found it
    /// stale; else prepared first on the lent connection if it lacks it. A
    /// request that starts with the cached unnamed statement keeps what it
    /// sends, for a replay. False: refused.
    fn uses(
        &mut self,
        kind: Kind,
        name: &[u8],
        def: &Arc<StatementDef>,
        request_start: bool,
        srv: &mut ServerView<'_>,
    ) -> bool {
        if def.stale.load(std::sync::atomic::Ordering::Relaxed) {
            self.refuse_stale(kind, srv);
            return false;
        }
        if name.is_empty() && self.server_has(def, srv) {
            self.arm_replay_at_use(def, request_start);
        }
        self.ensure_prepared(def, srv);
        true
    }
}
