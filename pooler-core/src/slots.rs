//! A fair semaphore whose number of permits can change while permits are
//! out: a pool's slots, resized by a configuration reload.
//!
//! Growing adds permits at once. Shrinking cannot take back permits that
//! are lent out, so it takes them as they come back: a task waits in line
//! for one permit at a time (behind the clients already waiting, the
//! semaphore being fair) and forgets it, until the debt is paid. A later
//! grow pays off a pending shrink first. [`Slots::lent`] counts only what
//! holders have (a permit the shrink task takes is forgotten without an
//! await in between).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The permits and their bookkeeping.
#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    sizes: Arc<Mutex<Sizes>>,
    /// The size asked for, readable without the lock.
    target: AtomicUsize,
    /// What a shrink still owes, readable without the lock.
    owed: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
struct Sizes {
    /// Permits that exist (available or held), shrink debt included.
    total: usize,
    /// Permits still to forget as they come back.
    owed: usize,
    /// A shrink task is running.
    shrinking: bool,
}

impl Slots {
    /// `size` permits.
    pub(crate) fn new(size: usize) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(size)),
            sizes: Arc::new(Mutex::new(Sizes { total: size, ..Sizes::default() })),
            target: AtomicUsize::new(size),
            owed: Arc::default(),
        }
    }

    /// The size asked for (what a shrink still owes is not in it).
    pub(crate) fn size(&self) -> usize {
        self.target.load(Ordering::Relaxed)
    }

    /// A shrink is waiting for permits to come back: a connection given
    /// back now should be closed rather than kept idle.
    pub(crate) fn owes(&self) -> bool {
        self.owed.load(Ordering::Relaxed) > 0
    }

    /// Permits held now.
    pub(crate) fn lent(&self) -> usize {
        let total = self.sizes.lock().map(|s| s.total).unwrap_or(0);
        total.saturating_sub(self.semaphore.available_permits())
    }

    /// A permit if one is free now.
    pub(crate) fn try_acquire(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.semaphore.clone().try_acquire_owned()
    }

    /// A permit, in arrival order. `None`: closed.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().acquire_owned().await.ok()
    }

    /// Makes the size `size`: at once when growing, as permits come back
    /// when shrinking (needs a tokio runtime then).
    pub(crate) fn resize(&self, size: usize) {
        let Ok(mut s) = self.sizes.lock() else { return };
        self.target.store(size, Ordering::Relaxed);
        let now = s.total - s.owed;
        if size > now {
            let mut grow = size - now;
            let forgiven = grow.min(s.owed);
            s.owed -= forgiven;
            grow -= forgiven;
            s.total += grow;
            self.owed.store(s.owed, Ordering::Relaxed);
            self.semaphore.add_permits(grow);
        } else if size < now {
            s.owed += now - size;
            self.owed.store(s.owed, Ordering::Relaxed);
            if !s.shrinking {
                s.shrinking = true;
                let (semaphore, sizes, owed) = (self.semaphore.clone(), self.sizes.clone(), self.owed.clone());
                tokio::spawn(shrink(semaphore, sizes, owed));
            }
        }
    }

    /// No permit is handed out any more; waiters get `None`.
    pub(crate) fn close(&self) {
        self.semaphore.close();
    }
}

/// Takes and forgets permits until nothing is owed.
async fn shrink(semaphore: Arc<Semaphore>, sizes: Arc<Mutex<Sizes>>, owed: Arc<AtomicUsize>) {
    loop {
        {
            let Ok(mut s) = sizes.lock() else { return };
            if s.owed == 0 {
                s.shrinking = false;
                return;
            }
        }
        let Ok(permit) = semaphore.clone().acquire_owned().await else { return };
        let Ok(mut s) = sizes.lock() else { return };
        if s.owed > 0 {
            s.owed -= 1;
            s.total -= 1;
            owed.store(s.owed, Ordering::Relaxed);
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn growing_adds_permits_at_once() {
        let s = Slots::new(1);
        let a = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_err());
        s.resize(3);
        let b = s.try_acquire().unwrap();
        let c = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_err());
        assert_eq!((s.size(), s.lent()), (3, 3));
        drop((a, b, c));
        assert_eq!(s.lent(), 0);
    }

    #[tokio::test]
    async fn shrinking_takes_back_permits_as_they_return_and_never_counts_them_as_lent() {
        let s = Slots::new(3);
        let held: Vec<_> = (0..3).map(|_| s.try_acquire().unwrap()).collect();
        s.resize(1);
        assert_eq!(s.size(), 1);
        assert_eq!(s.lent(), 3, "what is out stays out");
        drop(held);
        for _ in 0..100 {
            if s.lent() == 0 && s.semaphore.available_permits() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((s.lent(), s.semaphore.available_permits()), (0, 1));
        let one = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_err(), "one slot left");
        drop(one);
    }

    #[tokio::test]
    async fn a_grow_pays_off_a_pending_shrink_first() {
        let s = Slots::new(2);
        let held: Vec<_> = (0..2).map(|_| s.try_acquire().unwrap()).collect();
        s.resize(0);
        s.resize(4);
        assert_eq!(s.size(), 4);
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let all: Vec<_> = (0..4).map(|_| s.try_acquire().unwrap()).collect();
        assert!(s.try_acquire().is_err());
        assert_eq!(s.lent(), 4);
        drop(all);
    }
}
