//! The store several poolers coordinate through, as a trait: a consistent
//! key-value store with leases, compare-and-set on a key's creation
//! revision, and watches — what etcd v3 offers. The pooler's logic
//! (election, fencing, quorum) is written against this trait; the etcd
//! client lives in the `pooler-etcd` crate.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

/// What every store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store call failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// No answer: the store is down, unreachable, has no quorum, or did
    /// not answer within the request timeout.
    #[error("the coordination store is unreachable: {0}")]
    Unreachable(String),
    /// The store answered with an error (permission denied, bad request).
    #[error("the coordination store refused the request: {0}")]
    Refused(String),
}

/// A lease: keys put with it vanish when it expires or is revoked.
pub type LeaseId = i64;

/// One key as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The whole key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// The store revision that created the key (unchanged by later puts;
    /// a deleted and re-created key gets a new one).
    pub create_revision: i64,
    /// The store revision of its last change.
    pub mod_revision: i64,
}

/// The result of [`CoordinationStore::create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// The key did not exist and now holds our value; the revision that
    /// created it.
    Won(i64),
    /// The key exists; who holds it.
    Taken(Entry),
}

/// A consistent key-value store with leases and watches (etcd v3's model).
/// Every read must be linearizable: a pooler counts votes and proves its
/// leadership with them.
pub trait CoordinationStore: Send + Sync + std::fmt::Debug {
    /// A new lease that expires `ttl` after its last renewal (or later, if
    /// the store counts coarser units: never sooner).
    fn grant(&self, ttl: Duration) -> StoreFuture<'_, LeaseId>;
    /// Renews `lease`; the time to live the store granted, or `None` when
    /// the lease is gone (expired or revoked).
    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, Option<Duration>>;
    /// Ends `lease` now, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> StoreFuture<'_, ()>;
    /// Creates `key` with `value` bound to `lease`, only if it does not
    /// exist (one transaction).
    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>, lease: LeaseId) -> StoreFuture<'a, Created>;
    /// Every key under `prefix`, and the store revision they were read at.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, i64)>;
    /// Puts `key`, bound to `lease` when one is given.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreFuture<'a, ()>;
    /// Puts `key` only if `fence_key` exists with creation revision
    /// `fence_revision` (one transaction): whether it did. This is how a
    /// leader proves it still is one when it writes.
    fn put_fenced<'a>(
        &'a self,
        fence_key: &'a str,
        fence_revision: i64,
        key: &'a str,
        value: Vec<u8>,
    ) -> StoreFuture<'a, bool>;
    /// Watches every key under `prefix`: the receiver gets the store
    /// revision of each change after `after_revision`, and closes when the
    /// watch breaks (the caller lists again and watches anew).
    fn watch<'a>(&'a self, prefix: &'a str, after_revision: i64) -> StoreFuture<'a, mpsc::Receiver<i64>>;
}
