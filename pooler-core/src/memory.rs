//! The memory the relay buffers hold, counted for `server.max_memory`
//! (SHOW MEM, the `pooler_buffer_bytes` gauge) and the admission rule past
//! it: new logins and new transactions wait or are refused with 53200,
//! while what runs goes on (a session's own buffers are already bounded by
//! the relay's high-water mark and `server.max_message_size`).
//!
//! Each session keeps an [`Account`] of the capacity its buffers hold and
//! tells the budget only when that changes (a buffer taken or given back:
//! about twice per transaction). The budget is striped per thread so those
//! updates do not contend; reading the total sums the stripes.

use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe(AtomicIsize);

/// Every session's buffer memory, and the limit.
#[derive(Debug, Default)]
pub(crate) struct MemoryBudget {
    stripes: [Stripe; STRIPES],
    /// `server.max_memory` (0: none); a reload changes it.
    limit: AtomicUsize,
    /// Logins and transactions refused for it.
    refused: AtomicU64,
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|s| *s)
}

impl MemoryBudget {
    /// A budget limited to `limit` bytes (0: none).
    pub(crate) fn new(limit: usize) -> MemoryBudget {
        let b = MemoryBudget::default();
        b.limit.store(limit, Ordering::Relaxed);
        b
    }

    /// Bytes the buffers hold now.
    pub(crate) fn held(&self) -> usize {
        let sum: isize = self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        sum.max(0) as usize
    }

    /// The limit in force (0: none).
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Puts a new limit in force (a reload).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Past the limit now: no new work. One load when there is no limit.
    pub(crate) fn over(&self) -> bool {
        let limit = self.limit();
        limit > 0 && self.held() > limit
    }

    /// Counts a refusal (SHOW MEM, the metric).
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::MEMORY_REFUSALS).increment(1);
    }

    /// Refusals so far.
    pub(crate) fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn add(&self, delta: isize) {
        self.stripes[stripe()].0.fetch_add(delta, Ordering::Relaxed);
    }
}

/// One session's share of the budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct Account<'a> {
    budget: &'a MemoryBudget,
    counted: usize,
}

impl<'a> Account<'a> {
    /// An empty account.
    pub(crate) fn new(budget: &'a MemoryBudget) -> Account<'a> {
        Account { budget, counted: 0 }
    }

    /// The session's buffers hold `now` bytes.
    #[inline]
    pub(crate) fn sync(&mut self, now: usize) {
        if now != self.counted {
            self.budget.add(now as isize - self.counted as isize);
            self.counted = now;
        }
    }
}

impl Drop for Account<'_> {
    fn drop(&mut self) {
        self.sync(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_add_up_and_give_back_what_they_held_when_dropped() {
        let b = MemoryBudget::new(100);
        let mut a = Account::new(&b);
        let mut c = Account::new(&b);
        a.sync(60);
        c.sync(30);
        assert_eq!(b.held(), 90);
        assert!(!b.over());
        c.sync(50);
        assert_eq!(b.held(), 110);
        assert!(b.over());
        drop(a);
        assert_eq!(b.held(), 50);
        assert!(!b.over());
        b.set_limit(0);
        c.sync(1 << 30);
        assert!(!b.over(), "no limit: never over");
    }

    #[test]
    fn updates_from_many_threads_add_up() {
        let b = std::sync::Arc::new(MemoryBudget::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut a = Account::new(&b);
                    for i in 0..1000 {
                        a.sync(i);
                    }
                    a.sync(7);
                    std::mem::forget(a);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.held(), 56);
    }
}
