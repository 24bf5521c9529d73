//! Session state carried across server connections: what a Query or Parse
//! does to it (pinning, parameters, dropped statements, DEALLOCATE answered
//! by the pooler), and the client's prepared statements under the pooler's
//! names, prepared on a connection that lacks them.

use super::*;

impl Core<'_> {
    /// What a successor needs of this client's session, between
    /// transactions: what it was told, what it set, its statements.
    pub(crate) fn export(&self, state: &mut crate::upgrade::SessionState) {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        state.params = self.params.iter().cloned().collect();
        state.extra.clone_from(&self.extra);
        state.dirty.clone_from(&self.dirty);
        // The unnamed statement stays behind: its next request parses it again.
        state.statements = self
            .statements
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, def)| (b64.encode(name), b64.encode(&def.body)))
            .collect();
        state.client_key = self.login.client_key.map(|k| b64.encode(k)).unwrap_or_default();
    }

    /// Takes a predecessor's session state: the parameters to restore on
    /// the next connection and the prepared statements (prepared there when
    /// first used). A statement that does not decode is left out.
    pub(crate) fn import(&mut self, state: &crate::upgrade::SessionState) {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        self.dirty.clone_from(&state.dirty);
        let classifier = self.shared.router.classifier_now();
        let generation = self.shared.router.generation();
        for (name, body) in &state.statements {
            let (Ok(name), Ok(body)) = (b64.decode(name), b64.decode(body)) else { continue };
            let text_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
            let sql = &body[..text_end];
            let def = self.shared.statements.intern(&body, generation, || classifier.classify(sql));
            self.note_setting_statement(&def, sql);
            self.statements.insert(&name, def);
        }
    }

    /// Remembers `def` (text `sql`) if running it sets parameters (a
    /// prepared `SET`, `set_config(...)`, a tracked parameter).
    pub(super) fn note_setting_statement(&mut self, def: &StatementDef, sql: &[u8]) {
        if self.known_plain(sql).is_some() {
            return;
        }
        let mut names = facts::analyze(sql).parameters;
        for name in &self.settings.track_extra_parameters {
            if facts::mentions(sql, name) && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_ascii_lowercase());
            }
        }
        if !names.is_empty() && !self.setting_statements.iter().any(|(id, _)| *id == def.id) {
            self.setting_statements.push((def.id, names));
        }
    }

    /// A Bind of statement `id` runs it: the parameters it sets are read
    /// back when the connection is released (a prepared `SET` executed
    /// later than its Parse, as psycopg does with `prepare_threshold = 0`).
    pub(super) fn executes_settings(&mut self, id: u64) {
        let Some((_, names)) = self.setting_statements.iter().find(|(i, _)| *i == id) else { return };
        for name in names {
            let reported = self.params.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
            if !reported && !self.dirty.contains(name) {
                self.dirty.push(name.clone());
            }
        }
    }

    /// Answers a Bind or Describe of a name in the pooler's namespace that is
    /// not the client's own: as if it did not exist, which for this client
    /// it does not.
    pub(super) fn refuse_name(&mut self, kind: Kind, name: &[u8], srv: &mut ServerView<'_>) {
        let message = format!("prepared statement \"{}\" does not exist", String::from_utf8_lossy(name));
        self.refuse_statement(kind, "26000", &message, srv);
    }

    /// Answers the message of `kind` with an error of the pooler's (in its
    /// place in the stream) and drops the client's messages up to its Sync,
    /// as the server would after an error.
    pub(super) fn refuse_statement(&mut self, kind: Kind, code: &str, message: &str, srv: &mut ServerView<'_>) {
        let mut e = BytesMut::new();
        w::error_response(&mut e, Severity::Error, code, message);
        self.push_synthetic(kind, Synthetic::Error(e.freeze()), None, srv);
        self.client_skip = true;
    }

    /// Applies what a Query or Parse text does to session state. True when the
    /// pooler answers it itself (`DEALLOCATE` of a pooled statement).
    pub(super) fn query_facts(&mut self, sql: &[u8], may_answer: bool, srv: &mut ServerView<'_>) -> bool {
        let f = facts::analyze(sql);
        let tracked = self.settings.track_extra_parameters.iter().any(|name| facts::mentions(sql, name));
        if !tracked && f.is_plain() {
            self.remember_plain(sql);
            return false;
        }
        if f.reserved_name {
            let e = reserved_error();
            if may_answer {
                self.push_synthetic(Kind::Ready, Synthetic::QueryError(e), None, srv);
            } else {
                self.push_synthetic(Kind::Parse, Synthetic::Error(e), None, srv);
                self.client_skip = true;
            }
            return true;
        }
        if let (Some(reason), false) = (f.pin, self.pinned()) {
            // Attached -> Pinned, for the rest of the session.
            self.link = Link::Pinned(reason);
            tracing::debug!(reason, "server connection pinned to its client for the rest of the session");
        }
        if f.drops_all_statements {
            self.statements.clear();
            srv.statements.clear();
            srv.statements.unsure = true;
        }
        if f.resets_all_parameters {
            for (k, _) in &self.extra {
                if !self.dirty.contains(k) {
                    self.dirty.push(k.clone());
                }
            }
        }
        for p in f.parameters {
            let reported = self.params.iter().any(|(k, _)| k.eq_ignore_ascii_case(&p));
            if !reported && !self.dirty.contains(&p) {
                self.dirty.push(p);
            }
        }
        for name in &self.settings.track_extra_parameters {
            if facts::mentions(sql, name) && !self.dirty.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                self.dirty.push(name.to_ascii_lowercase());
            }
        }
        if let (Some(name), true) = (f.deallocate, may_answer) {
            if self.statements.remove(&name).is_some() {
                self.push_synthetic(Kind::Ready, Synthetic::Deallocate, None, srv);
                return true;
            }
        }
        false
    }

    /// True when the lent connection already has `def` prepared.
    pub(super) fn server_has(&mut self, def: &StatementDef, srv: &mut ServerView<'_>) -> bool {
        srv.statements.touch(def.id)
    }

    /// Prepares `def` on the lent connection first if it lacks it; the
    /// answers to that are the pooler's, hidden from the client.
    pub(super) fn ensure_prepared(&mut self, def: &Arc<StatementDef>, srv: &mut ServerView<'_>) {
        if !self.server_has(def, srv) {
            self.prepare_on_server(def, true, Some((None, def.clone())), srv);
        }
    }

    /// Sends Parse of `def` under its server-side name, closing the least
    /// recently used statement first when the connection's cache is full.
    pub(super) fn prepare_on_server(
        &mut self,
        def: &Arc<StatementDef>,
        hidden: bool,
        undo: Option<ParseUndo>,
        srv: &mut ServerView<'_>,
    ) {
        let capacity = self.settings.prepared_statement_cache_size;
        if let Some(old) = srv.statements.add(def, capacity) {
            w::describe_or_close(&mut self.sout, b'C', b'S', &old.server_name);
            self.queue.push_back(Pending { kind: Kind::Close, hidden: true, synthetic: None, parse: None, stmt: None });
        }
        w::parse_named(&mut self.sout, &def.server_name, &def.body);
        self.queue.push_back(Pending { kind: Kind::Parse, hidden, synthetic: None, parse: undo, stmt: None });
    }
}
