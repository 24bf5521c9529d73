//! Unnamed statements cached on server connections (`pool.unnamed_statement_cache`).
//!
//! Most drivers run each query as Parse (no name), Bind, Execute, Sync:
//! PostgreSQL parses and plans the text every time. When the pooler has
//! seen a text before, it prepares it once per server connection under a
//! name of its own (the [`StatementDef`] of the shared registry, keyed by
//! the text, the parameter types and the client's `search_path` and `role`)
//! and binds that name instead: the client's unnamed statement becomes the
//! connection's named one, and its Parse is answered by the pooler when the
//! connection has it already.
//!
//! What an unnamed statement has and a cached one lacks is a fresh
//! analysis: after DDL, PostgreSQL re-plans a cached statement and refuses
//! it with "cached plan must not change result type" if its columns
//! changed. That error must never reach a client that sent a Parse, so the
//! cache is used only where the request can be replayed unseen: at the
//! start of a request outside a transaction block, a pipeline of Bind /
//! Describe / Execute / Close of a portal / Flush up to a Sync that is
//! already read whole, with nothing after it. The pooler keeps what it
//! sent; if the server answers that error before anything but
//! ParseComplete reached the client, the error and the Sync's
//! ReadyForQuery are swallowed (the server rolled back the implicit
//! transaction, nothing ran), the stale statement is closed and prepared
//! again, and the request is sent again. Everything else (inside a
//! transaction block, a request the client pipelines behind another, a
//! statement that changes session state) goes to the server as sent.

use super::*;

/// SQLSTATE 0A000 (feature_not_supported), as PostgreSQL refuses a cached
/// plan whose result type changed.
const STALE_PLAN_CODE: &str = "0A000";
const STALE_PLAN_MESSAGE: &str = "cached plan must not change result type";

/// A request that used a cached statement, kept until its ReadyForQuery so
/// that it can be sent again if the statement proves stale. What it sent
/// after the Parse (or from the first message that used the statement),
/// names rewritten, is in `Core::replay_sent`.
#[derive(Debug)]
pub(super) struct Replay {
    def: Arc<StatementDef>,
    /// The Sync that ends the request was sent.
    synced: bool,
    /// Nothing but ParseComplete (and notices) reached the client yet.
    clean: bool,
    /// The server refused the statement as stale: at its ReadyForQuery the
    /// request goes again.
    stale: bool,
}

/// A parameter through which the names in a query text resolve: an
/// unnamed statement is cached per value of it.
fn sets_names_apart(name: &str) -> bool {
    name.eq_ignore_ascii_case("search_path") || name.eq_ignore_ascii_case("role")
}

/// The ErrorResponse `body` is PostgreSQL refusing a cached plan whose
/// result type changed.
pub(super) fn is_stale_plan(body: &[u8]) -> bool {
    let fields = crate::protocol::messages::ErrorFields::new(body);
    fields.code() == Some(STALE_PLAN_CODE) && fields.message().is_some_and(|m| m.starts_with(STALE_PLAN_MESSAGE))
}

impl Core<'_> {
    /// Answers a Bind or Describe of a statement a server found stale as
    /// PostgreSQL answers for a prepared statement whose result changed.
    pub(super) fn refuse_stale(&mut self, kind: Kind, srv: &mut ServerView<'_>) {
        self.refuse_statement(kind, STALE_PLAN_CODE, STALE_PLAN_MESSAGE, srv);
    }

    /// The key an unnamed Parse body `rest` is cached under: the body, a
    /// mark that sets it apart from named statements of the same text (a
    /// client that prepared one by name keeps its statement's shape), then
    /// the client's `search_path` and `role` if it set them (the names in
    /// the text resolve through them).
    fn unnamed_key(&self, rest: &[u8]) -> Vec<u8> {
        let mut key = rest.to_vec();
        key.push(0xfe);
        for (k, v) in self.extra.iter().filter(|(k, _)| sets_names_apart(k)) {
            key.push(0xff);
            key.extend_from_slice(k.as_bytes());
            key.push(b'=');
            key.extend_from_slice(v.as_bytes());
        }
        key
    }

    /// The cached statement for the unnamed Parse body `rest` (text `sql`),
    /// if the cache may serve it here (module doc). `None`: send the Parse
    /// as it is.
    pub(super) fn cached_unnamed(&mut self, rest: &[u8], sql: &[u8], request_start: bool) -> Option<Arc<StatementDef>> {
        if !self.settings.unnamed_statement_cache
            || !request_start
            || !self.replayable_here()
            || self.known_plain(sql).is_none()
            || !self.rest_is_replayable(true)
        {
            return None;
        }
        let generation = self.shared.router.generation();
        // The usual case: the client runs the text it ran last, under the
        // same settings; no key, no lookup.
        if let Some(def) = self.statements.get(b"") {
            let fresh = def.generation == generation && !def.stale.load(std::sync::atomic::Ordering::Relaxed);
            if fresh && *def.body == *rest && !self.extra.iter().any(|(k, _)| sets_names_apart(k)) {
                return Some(def.clone());
            }
        }
        let key = self.unnamed_key(rest);
        let registry = &self.shared.statements;
        let def = match registry.find(&key, generation) {
            Some(def) => def,
            None if registry.seen_before(&key) => {
                let classifier = self.shared.router.classifier_now();
                registry.intern_as(&key, rest, generation, || classifier.classify(sql))
            }
            None => return None,
        };
        Some(def)
    }

    /// Outside a transaction block, nothing owed by the server, session
    /// state known, no other request being replayed: a request starting
    /// now can be sent again unseen.
    fn replayable_here(&self) -> bool {
        matches!(self.mode, Mode::Transaction | Mode::Statement | Mode::BalancedSession)
            && self.status == TransactionStatus::Idle
            && self.queue.is_empty()
            && self.replay.is_none()
            && self.dirty.is_empty()
            && !self.pinned()
            && !self.pipelines
    }

    /// The rest of the request in the client's buffer is Bind / Describe /
    /// Execute / Close of a portal / Flush up to a Sync, with nothing after
    /// it; `after_parse`: it follows the Parse of the unnamed statement.
    fn rest_is_replayable(&self, after_parse: bool) -> bool {
        let mut at = 0;
        let mut used = !after_parse;
        while let Ok(Some((t, total))) = peek_header(&self.cbuf[at..]) {
            if self.cbuf.len() < at + total || total > self.max_message {
                return false;
            }
            let body = &self.cbuf[at + HEADER_LEN..at + total];
            match t {
                b'B' => match Bind::parse(body) {
                    Ok(b) if b.statement.is_empty() => used = true,
                    _ => return false,
                },
                b'D' | b'C' => match Target::parse(body) {
                    Ok(d) if d.kind == b'S' && d.name.is_empty() && t == b'D' => used = true,
                    Ok(d) if d.kind == b'P' => {}
                    _ => return false,
                },
                b'E' | b'H' => {}
                b'S' => return used && at + total == self.cbuf.len(),
                _ => return false,
            }
            at += total;
        }
        false
    }

    /// A Bind or Describe of the client's unnamed statement, mapped to a
    /// cached one, opens a request: it can be replayed if the rest is.
    pub(super) fn arm_replay_at_use(&mut self, def: &Arc<StatementDef>, request_start: bool) {
        if request_start && self.replayable_here() && self.rest_is_replayable(false) {
            self.arm_replay(def.clone());
        }
    }

    /// Keeps what the request sends from now on, to send it again.
    pub(super) fn arm_replay(&mut self, def: Arc<StatementDef>) {
        if self.replay_sent.capacity() == 0 {
            self.replay_sent = crate::buffers::recycled();
        }
        self.replay_sent.clear();
        self.replay = Some(Replay { def, synced: false, clean: true, stale: false });
    }

    /// After a client message of type `t` that put `sent` on the wire:
    /// kept for a replay.
    pub(super) fn record_for_replay(&mut self, t: u8, sent: std::ops::Range<usize>) {
        let Some(r) = self.replay.as_mut() else { return };
        if r.synced {
            return;
        }
        self.replay_sent.extend_from_slice(&self.sout[sent]);
        if t == b'S' {
            r.synced = true;
        }
    }

    /// Client messages wait while a replayable request is in flight (a
    /// replay must reach the server before anything sent after it). A
    /// client found waiting here is not cached for again (`Core::pipelines`).
    pub(in crate::relay) fn holds_client_messages(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| r.synced)
    }

    /// An answer of type `t` reaches the client: past ParseComplete and
    /// notices, the request can no longer be replayed unseen.
    pub(super) fn note_forwarded(&mut self, t: u8) {
        if let Some(r) = self.replay.as_mut() {
            if !matches!(t, b'1' | b'N' | b'S') {
                r.clean = false;
            }
        }
    }

    /// The server's ErrorResponse `body` says the cached statement of the
    /// request in flight is stale, and the request can still go again
    /// unseen: the error is the pooler's to swallow.
    pub(super) fn stale_and_replayable(&self, body: &[u8]) -> bool {
        let Some(r) = self.replay.as_ref() else { return false };
        if !r.synced || !r.clean || r.stale {
            return false;
        }
        if !self.queue.front().is_some_and(|p| matches!(p.kind, Kind::Bind | Kind::Describe) && !p.hidden) {
            return false;
        }
        is_stale_plan(body)
    }

    /// Marks the request for a replay at its ReadyForQuery.
    pub(super) fn mark_stale(&mut self) {
        if let Some(r) = self.replay.as_mut() {
            r.stale = true;
        }
    }

    /// The request's ReadyForQuery arrived. True when it is the pooler's
    /// to swallow: the statement was stale, and the request has gone again
    /// (the stale statement closed and prepared again first, unseen).
    pub(super) fn request_answered(&mut self, srv: &mut ServerView<'_>) -> bool {
        let Some(r) = self.replay.take() else { return false };
        if !r.stale {
            self.replay_sent.clear();
            return false;
        }
        tracing::debug!(statement = %r.def.server_name, "a cached statement was stale (DDL): prepared again and the request replayed");
        w::describe_or_close(&mut self.sout, b'C', b'S', &r.def.server_name);
        self.queue.push_back(Pending { kind: Kind::Close, hidden: true, synthetic: None, parse: None, stmt: None });
        srv.statements.forget(r.def.id);
        self.prepare_on_server(&r.def, true, Some((Some(Box::from(&b""[..])), r.def.clone())), srv);
        self.sout.extend_from_slice(&self.replay_sent);
        // The answers they are owed, in order (only these kinds were kept).
        let mut rest = &self.replay_sent[..];
        while let Ok(Some((t, total))) = peek_header(rest) {
            let kind = match t {
                b'B' => Some(Kind::Bind),
                b'D' => Some(Kind::Describe),
                b'E' => Some(Kind::Execute),
                b'C' => Some(Kind::Close),
                b'S' => Some(Kind::Ready),
                _ => None,
            };
            let stmt = matches!(t, b'B' | b'D').then(|| r.def.clone());
            self.queue.extend(kind.map(|k| Pending::using_or_plain(k, stmt)));
            rest = rest.get(total..).unwrap_or_default();
        }
        self.replay_sent.clear();
        true
    }
}
