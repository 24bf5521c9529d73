//! What operators change while the pooler runs, short of the configuration:
//! databases disabled for new clients, paused databases, a requested
//! shutdown, and the hooks node promotion runs with. Written by the admin console, read at login
//! and by the accept loop.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

/// How an operator asked the pooler to stop (`SHUTDOWN [...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShutdownMode {
    /// `SHUTDOWN`: close every client now.
    Immediate,
    /// `SHUTDOWN WAIT_FOR_SERVERS`: stop accepting, let each client finish
    /// its transaction (the drain of a SIGTERM, `server.shutdown_timeout`
    /// included).
    WaitForServers,
    /// `SHUTDOWN WAIT_FOR_CLIENTS`: stop accepting and wait, without a
    /// timeout, until every client has left on its own.
    WaitForClients,
}

/// The operator's run-time controls.
#[derive(Debug)]
pub(crate) struct Control {
    disabled: RwLock<HashSet<String>>,
    shutdown: watch::Sender<Option<ShutdownMode>>,
    hooks: Mutex<Option<Arc<crate::cluster::Hooks>>>,
    /// The paused databases (`PAUSE`); every pool holds the same gate.
    pub(crate) pause: Arc<crate::pause::PauseGate>,
    /// When the pooler was built.
    pub(crate) started: SystemTime,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            disabled: RwLock::default(),
            shutdown: watch::channel(None).0,
            hooks: Mutex::new(None),
            pause: Arc::default(),
            started: SystemTime::now(),
        }
    }
}

impl Control {
    /// New clients of `database` are refused (`DISABLE`), or accepted again
    /// (`ENABLE`). True when this changed anything.
    pub(crate) fn set_disabled(&self, database: &str, disabled: bool) -> bool {
        match self.disabled.write() {
            Ok(mut set) if disabled => set.insert(database.to_owned()),
            Ok(mut set) => set.remove(database),
            Err(_) => false,
        }
    }

    /// New clients of `database` are refused.
    pub(crate) fn is_disabled(&self, database: &str) -> bool {
        self.disabled.read().map(|s| !s.is_empty() && s.contains(database)).unwrap_or(false)
    }

    /// Asks the accept loop to stop, as `mode` says. The first request wins.
    pub(crate) fn request_shutdown(&self, mode: ShutdownMode) {
        self.shutdown.send_if_modified(|m| {
            if m.is_none() {
                *m = Some(mode);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the mode once a shutdown is requested.
    pub(crate) async fn shutdown_requested(&self) -> ShutdownMode {
        let mut rx = self.shutdown.subscribe();
        loop {
            if let Some(m) = *rx.borrow_and_update() {
                return m;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The hooks in force ([`crate::Pooler::run`] sets them).
    pub(crate) fn set_hooks(&self, hooks: Arc<crate::cluster::Hooks>) {
        if let Ok(mut h) = self.hooks.lock() {
            *h = Some(hooks);
        }
    }

    /// The hooks in force; `None` before [`crate::Pooler::run`].
    pub(crate) fn hooks(&self) -> Option<Arc<crate::cluster::Hooks>> {
        self.hooks.lock().ok()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabling_is_per_database_and_undone_by_enabling() {
        let c = Control::default();
        assert!(!c.is_disabled("app"));
        assert!(c.set_disabled("app", true));
        assert!(!c.set_disabled("app", true), "a second DISABLE changes nothing");
        assert!(c.is_disabled("app") && !c.is_disabled("other"));
        assert!(c.set_disabled("app", false));
        assert!(!c.is_disabled("app"));
    }

    #[tokio::test]
    async fn the_first_shutdown_request_wins() {
        let c = Control::default();
        c.request_shutdown(ShutdownMode::WaitForClients);
        c.request_shutdown(ShutdownMode::Immediate);
        assert_eq!(c.shutdown_requested().await, ShutdownMode::WaitForClients);
    }
}
