//! `PAUSE` and `RESUME`: which databases are paused, and the gate every
//! checkout of a server connection passes.
//!
//! A paused database lends no server connection: a client that needs one
//! (its next transaction in transaction mode, its login in session mode)
//! waits at the gate, connected, until `RESUME`. What already holds a
//! connection carries on, which is what `PAUSE` waits for (see
//! `admin::actions`). The gate is one atomic load while nothing is paused.
//!
//! The race between a checkout and a `PAUSE` is closed on the checkout's
//! side: a pool takes its slot first and only then asks [`PauseGate::holds`]
//! again (after a full fence), giving the slot back if the database was
//! paused meanwhile. `PAUSE` marks the database first and only then counts
//! the slots taken. Either the checkout sees the pause, or `PAUSE` sees the
//! slot and waits for it to come back.

use std::collections::HashSet;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

/// What is paused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Paused {
    /// `PAUSE` with no database: every database.
    all: bool,
    /// `PAUSE db`.
    databases: HashSet<String>,
}

impl Paused {
    fn holds(&self, database: &str) -> bool {
        self.all || self.databases.contains(database)
    }

    fn is_empty(&self) -> bool {
        !self.all && self.databases.is_empty()
    }
}

/// Why a `PAUSE` or `RESUME` changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PauseError {
    /// `RESUME` with nothing paused.
    #[error("the pooler is not paused")]
    NotPaused,
    /// `RESUME db` while that database is not paused.
    #[error("database \"{0}\" is not paused")]
    DatabaseNotPaused(String),
    /// `RESUME db` while every database is paused by a `PAUSE` without one.
    #[error("every database is paused (PAUSE without a database): RESUME without one")]
    PausedAll,
}

/// The paused databases, shared by the console (which changes them) and
/// every pool (which waits on them).
#[derive(Debug)]
pub(crate) struct PauseGate {
    /// Anything is paused: the fast path reads only this.
    any: AtomicBool,
    state: Mutex<Paused>,
    /// Bumped at every change; waiters watch it.
    changed: watch::Sender<u64>,
}

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate { any: AtomicBool::new(false), state: Mutex::default(), changed: watch::channel(0).0 }
    }
}

impl PauseGate {
    /// Pauses `database` (`None`: every database). False when it already was.
    pub(crate) fn pause(&self, database: Option<&str>) -> bool {
        let Ok(mut s) = self.state.lock() else { return false };
        let changed = match database {
            None => !std::mem::replace(&mut s.all, true),
            Some(db) => !s.all && s.databases.insert(db.to_owned()),
        };
        // Marked before the caller counts the slots taken (see the module doc).
        self.any.store(!s.is_empty(), Ordering::SeqCst);
        drop(s);
        if changed {
            self.changed.send_modify(|g| *g += 1);
        }
        changed
    }

    /// Resumes `database` (`None`: everything paused), waking its waiters.
    pub(crate) fn resume(&self, database: Option<&str>) -> Result<(), PauseError> {
        let Ok(mut s) = self.state.lock() else { return Err(PauseError::NotPaused) };
        match database {
            _ if s.is_empty() => return Err(PauseError::NotPaused),
            None => *s = Paused::default(),
            Some(_) if s.all => return Err(PauseError::PausedAll),
            Some(db) => {
                if !s.databases.remove(db) {
                    return Err(PauseError::DatabaseNotPaused(db.to_owned()));
                }
            }
        }
        self.any.store(!s.is_empty(), Ordering::SeqCst);
        drop(s);
        self.changed.send_modify(|g| *g += 1);
        Ok(())
    }

    /// `database` is paused now. One atomic load when nothing is.
    pub(crate) fn holds(&self, database: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.state.lock().map(|s| s.holds(database)).unwrap_or(false)
    }

    /// [`PauseGate::holds`] for a checkout that has just taken its slot:
    /// ordered after the slot was taken (the module doc says why).
    pub(crate) fn holds_after_taking(&self, database: &str) -> bool {
        fence(Ordering::SeqCst);
        self.any.load(Ordering::SeqCst) && self.state.lock().map(|s| s.holds(database)).unwrap_or(false)
    }

    /// Paused with `PAUSE` without a database.
    pub(crate) fn all_paused(&self) -> bool {
        self.any.load(Ordering::Relaxed) && self.state.lock().map(|s| s.all).unwrap_or(false)
    }

    /// Returns once `database` is not paused (at once when it is not).
    pub(crate) async fn wait(&self, database: &str) {
        let mut rx = self.changed.subscribe();
        while self.holds(database) {
            // The sender lives as long as the gate.
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// A receiver that sees every change (for a `PAUSE` that must notice a
    /// `RESUME` while it waits).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_database_pause_holds_only_that_database_and_resume_releases_it() {
        let g = PauseGate::default();
        assert!(!g.any.load(Ordering::Relaxed) && !g.holds("app"));
        assert!(g.pause(Some("app")));
        assert!(!g.pause(Some("app")), "pausing twice changes nothing");
        assert!(g.holds("app") && !g.holds("other") && g.holds_after_taking("app"));
        assert_eq!(g.resume(Some("other")), Err(PauseError::DatabaseNotPaused("other".into())));
        assert_eq!(g.resume(Some("app")), Ok(()));
        assert!(!g.any.load(Ordering::Relaxed) && !g.holds("app"));
        assert_eq!(g.resume(None), Err(PauseError::NotPaused));
    }

    #[test]
    fn a_global_pause_holds_every_database_and_only_a_global_resume_ends_it() {
        let g = PauseGate::default();
        g.pause(Some("app"));
        assert!(g.pause(None));
        assert!(g.holds("anything") && g.all_paused());
        assert_eq!(g.resume(Some("app")), Err(PauseError::PausedAll));
        assert_eq!(g.resume(None), Ok(()));
        assert!(!g.holds("app") && !g.holds("anything"), "RESUME without a database resumes everything");
    }

    #[tokio::test]
    async fn waiters_are_released_by_resume_and_not_before() {
        let g = Arc::new(PauseGate::default());
        g.pause(Some("app"));
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.wait("app").await }
        });
        // Another database's resume or pause does not release it.
        g.pause(Some("other"));
        g.resume(Some("other")).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished());
        g.resume(Some("app")).unwrap();
        tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap();
        // Not paused: no wait at all.
        tokio::time::timeout(Duration::from_millis(10), g.wait("app")).await.unwrap();
    }
}
