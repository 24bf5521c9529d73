//! What a request does, as the core judges it: whether the request at the
//! front of the client buffer only reads (and may go to a standby), what a
//! write does to later reads, and the class of each statement (remembered
//! for statements seen before that touch no session state).

use super::*;

impl Core<'_> {
    /// The client's application_name as it was last reported.
    pub(in crate::relay) fn application(&self) -> &str {
        self.params.iter().find(|(k, _)| k == "application_name").map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The request at the front of the client buffer opens a transaction block.
    pub(in crate::relay) fn front_is_block(&self) -> bool {
        let Ok(Some((t, total))) = peek_header(self.cbuf) else { return false };
        let body = self.cbuf.get(HEADER_LEN..total).unwrap_or_default();
        let sql = match t {
            tag::QUERY => body.strip_suffix(&[0]).unwrap_or(body),
            tag::PARSE => match split_cstr(body).and_then(|(_, rest)| split_cstr(rest)) {
                Ok((sql, _)) => sql,
                Err(_) => return false,
            },
            _ => return false,
        };
        matches!(self.shared.router.classifier_now().classify(sql).kind, crate::classify::Kind::Begin { .. })
    }

    /// Whether the request at the front of the client buffer only reads:
    /// `None` while it has not fully arrived. A request is a Query, a
    /// FunctionCall, or extended-protocol messages up to Sync.
    pub(in crate::relay) fn front_is_read(&self, wants: &mut Vec<Want>) -> Option<bool> {
        let classifier = self.shared.router.classifier_now();
        let mut unnamed = self.unnamed_class;
        let mut all_read = true;
        let mut pos = 0;
        // With default_transaction_read_only on, every transaction block is read-only.
        let read_only_default =
            self.params.iter().any(|(k, v)| k == "default_transaction_read_only" && v.eq_ignore_ascii_case("on"));
        let read = |c: &Classification| {
            c.is_read_only()
                || matches!(c.kind, crate::classify::Kind::Begin { read_only: true })
                || (read_only_default && matches!(c.kind, crate::classify::Kind::Begin { .. }))
        };
        loop {
            let (t, total) = peek_header(&self.cbuf[pos..]).ok()??;
            if self.cbuf.len() - pos < total {
                return None;
            }
            let body = &self.cbuf[pos + HEADER_LEN..pos + total];
            pos += total;
            match t {
                tag::QUERY => {
                    let sql = body.strip_suffix(&[0]).unwrap_or(body);
                    return Some(all_read && read(&self.effective(sql, classifier.classify(sql), wants)));
                }
                tag::PARSE => {
                    let Ok((name, rest)) = split_cstr(body) else { return Some(false) };
                    let Ok((sql, _)) = split_cstr(rest) else { return Some(false) };
                    let c = self.effective(sql, classifier.classify(sql), wants);
                    all_read &= read(&c);
                    if name.is_empty() {
                        unnamed = Some(c);
                    }
                }
                b'B' => {
                    let Ok(b) = Bind::parse(body) else { return Some(false) };
                    let c = if b.statement.is_empty() {
                        unnamed
                    } else {
                        self.statements
                            .get(b.statement)
                            .map(|d| self.effective(statement_sql(d), self.def_class(d), wants))
                    };
                    all_read &= c.is_some_and(|c| read(&c));
                }
                b'D' | b'E' | b'C' | b'H' => {}
                b'S' => return Some(all_read),
                _ => return Some(false),
            }
        }
    }

    /// `c`, unless it is a read that calls unlisted functions and the catalog
    /// says (or does not know yet) that one of them is a volatile user
    /// function: then a write. An unknown name is looked up in the
    /// background; until the answer is in, such statements go to the primary.
    pub(super) fn effective(&self, sql: &[u8], c: Classification, wants: &mut Vec<Want>) -> Classification {
        use crate::classify::catalog::Verdict;
        use crate::classify::{Flags, Kind};
        let router = &self.shared.router;
        if c.kind != Kind::Read
            || !c.flags.contains(Flags::UNLISTED_FUNCTION)
            || !self.shared.config().routing.function_volatility
            || !router.balancing()
            || !router.classifier_now().asks_catalog()
        {
            return c;
        }
        let names = router.classifier_now().unlisted_calls(sql);
        let write = Classification { kind: Kind::Write, flags: c.flags | Flags::WRITE_FUNCTION };
        match self.shared.functions.verdict(&self.login.database, &names, Instant::now()) {
            Verdict::Read => c,
            Verdict::Write => write,
            Verdict::Unknown(missing) => {
                wants.push(Want::LookUpFunctions(missing));
                write
            }
        }
    }

    /// [`Core::effective`], keeping what it wants done.
    pub(super) fn effective_now(&mut self, sql: &[u8], c: Classification) -> Classification {
        let mut wants = Vec::new();
        let c = self.effective(sql, c, &mut wants);
        self.wants.append(&mut wants);
        c
    }

    /// After a statement that may change functions: what the catalog cache
    /// knows of this database is stale.
    pub(super) fn note_function_ddl(&self, sql: &[u8]) {
        if crate::classify::catalog::is_function_ddl(sql) {
            self.shared.functions.invalidate(&self.login.database);
        }
    }

    /// After a write on the primary, what the session's later requests do
    /// (`routing.disable_load_balance_on_write`).
    pub(in crate::relay) fn note_write_stickiness(&mut self) {
        if self.wrote && self.node == self.shared.router.primary() {
            match self.shared.router.write_stickiness() {
                crate::config::WriteStickiness::Always => self.stickiness = Stickiness::Everything,
                crate::config::WriteStickiness::TransTransaction if self.in_block => {
                    // Never weakens `Everything`.
                    if self.stickiness == Stickiness::Balanced {
                        self.stickiness = Stickiness::Blocks;
                    }
                }
                _ => {}
            }
        }
    }

    /// The class of `sql` when it was seen before and found to do nothing to
    /// session state (so its facts need no second look). Nothing is known
    /// once a reload changed the routing lists.
    pub(super) fn known_plain(&self, sql: &[u8]) -> Option<Classification> {
        if self.plain_generation != self.shared.router.generation() {
            return None;
        }
        self.plain.iter().find(|(k, _)| **k == *sql).map(|(_, c)| *c)
    }

    /// The class of a prepared statement: the one decided when it was
    /// prepared, unless a reload changed the routing lists since.
    pub(super) fn def_class(&self, d: &crate::prepared::StatementDef) -> Classification {
        if d.generation == self.shared.router.generation() {
            d.class
        } else {
            self.shared.router.classifier_now().classify(statement_sql(d))
        }
    }

    /// The class of `sql`: remembered (a plain statement, classified when
    /// first seen, possibly just now by [`Relay::query_facts`]), else computed.
    pub(super) fn class_of(&self, sql: &[u8]) -> Classification {
        self.known_plain(sql).unwrap_or_else(|| self.shared.router.classifier_now().classify(sql))
    }

    /// Remembers `sql` as plain (see [`Relay::known_plain`]).
    pub(super) fn remember_plain(&mut self, sql: &[u8]) {
        const ENTRIES: usize = 8;
        if sql.len() > 4096 || crate::show::is_show_pool_nodes(sql) {
            return;
        }
        let generation = self.shared.router.generation();
        if self.plain_generation != generation {
            self.plain.clear();
            self.plain_generation = generation;
        }
        let entry = (Box::from(sql), self.shared.router.classifier_now().classify(sql));
        if self.plain.len() < ENTRIES {
            self.plain.push(entry);
        } else {
            self.plain[self.plain_next % ENTRIES] = entry;
            self.plain_next = self.plain_next.wrapping_add(1);
        }
    }
}
