//! The etcd v3 store for `pooler-core`'s coordination ([`EtcdStore`]):
//! several poolers in front of one PostgreSQL cluster elect a leader on an
//! etcd lease, publish their views and follow the leader's state
//! (docs/HA.md). Built on the `etcd-client` crate (gRPC); every read is
//! linearizable and every request requires an etcd leader, so a member cut
//! off from its quorum answers "unreachable" instead of stale data.
//!
//! ```no_run
//! # async fn example(config: pooler_core::Config) -> Result<(), Box<dyn std::error::Error>> {
//! let store = pooler_etcd::EtcdStore::new(&config.coordination)?;
//! let pooler = pooler_core::Pooler::builder(config).coordination_store(std::sync::Arc::new(store)).build()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use pooler_core::config::CoordinationConfig;
use pooler_core::coordination::{CoordinationStore, Created, Entry, LeaseId, StoreError, StoreFuture};
use tokio::sync::{mpsc, Mutex};

/// Why the store could not be set up from its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdSetupError {
    /// A certificate, key or password file could not be read.
    #[error("coordination.{key}: cannot read {path}: {source}")]
    Read {
        /// The setting.
        key: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// An etcd v3 cluster as a [`CoordinationStore`]. It connects lazily (a
/// pooler starts while etcd is down, and joins its group when etcd
/// answers) and reconnects after a failure.
pub struct EtcdStore {
    endpoints: Vec<String>,
    options: ConnectOptions,
    client: Mutex<Option<Client>>,
    /// The open keep-alive stream, per lease.
    keeper: Mutex<Option<(LeaseId, LeaseKeeper, LeaseKeepAliveStream)>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).finish()
    }
}

fn read(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, EtcdSetupError> {
    std::fs::read(path).map_err(|source| EtcdSetupError::Read { key, path: path.display().to_string(), source })
}

impl EtcdStore {
    /// The store `config` names: its endpoints, TLS files and user.
    pub fn new(config: &CoordinationConfig) -> Result<EtcdStore, EtcdSetupError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.request_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(1), config.request_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let (Some(user), Some(file)) = (&config.user, &config.password_file) {
            let password =
                String::from_utf8_lossy(&read("password_file", file)?).lines().next().unwrap_or("").to_owned();
            options = options.with_user(user.clone(), password);
        }
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read("ca_file", ca)?));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(read("cert_file", cert)?, read("key_file", key)?));
            }
            options = options.with_tls(tls);
        }
        Ok(EtcdStore {
            endpoints: config.endpoints.clone(),
            options,
            client: Mutex::new(None),
            keeper: Mutex::new(None),
        })
    }

    /// A client, connecting first if there is none.
    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Client::connect(&self.endpoints, Some(self.options.clone())).await.map_err(error)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets the client after a transport failure (the next call
    /// connects again, authenticating anew).
    async fn failed<T>(&self, e: etcd_client::Error) -> Result<T, StoreError> {
        let e = error(e);
        if matches!(e, StoreError::Unreachable(_)) {
            *self.keeper.lock().await = None;
        }
        Err(e)
    }
}

/// A store error from a client error: no answer, no leader or a deadline
/// is "unreachable"; the rest is a refusal.
fn error(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match &e {
        // gRPC codes: invalid argument 3, not found 5, permission denied 7,
        // failed precondition 9, out of range 11, unauthenticated 16.
        E::GRpcStatus(s) => match i32::from(s.code()) {
            3 | 5 | 7 | 9 | 11 | 16 => StoreError::Refused(s.message().to_owned()),
            _ => StoreError::Unreachable(s.message().to_owned()),
        },
        E::InvalidArgs(m) => StoreError::Refused(m.clone()),
        _ => StoreError::Unreachable(e.to_string()),
    }
}

/// etcd's answer to a renewal of an expired or revoked lease (not a TTL of
/// 0, as the protocol would suggest).
fn lease_gone(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::LeaseKeepAliveError(m) if m.contains("not found"))
}

fn entry(kv: &etcd_client::KeyValue) -> Entry {
    Entry {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

impl CoordinationStore for EtcdStore {
    fn grant(&self, ttl: Duration) -> StoreFuture<'_, LeaseId> {
        Box::pin(async move {
            let mut c = self.client().await?;
            // etcd counts whole seconds: rounded up, so the lease outlives
            // the pooler's own idea of it (which ends first, as it must).
            let whole = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            let secs = i64::try_from(whole.max(1)).unwrap_or(i64::MAX);
            match c.lease_grant(secs, None).await {
                Ok(r) => Ok(r.id()),
                Err(e) => self.failed(e).await,
            }
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, Option<Duration>> {
        Box::pin(async move {
            let mut slot = self.keeper.lock().await;
            if slot.as_ref().is_none_or(|(id, _, _)| *id != lease) {
                let mut c = self.client().await?;
                let (keeper, stream) = match c.lease_keep_alive(lease).await {
                    Ok(k) => k,
                    Err(e) if lease_gone(&e) => return Ok(None),
                    Err(e) => {
                        drop(slot);
                        return self.failed(e).await;
                    }
                };
                *slot = Some((lease, keeper, stream));
            }
            let Some((_, keeper, stream)) = slot.as_mut() else {
                return Err(StoreError::Unreachable("no keep-alive stream".into()));
            };
            let answer = match keeper.keep_alive().await {
                Ok(()) => stream.message().await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(Some(r)) if r.ttl() > 0 => Ok(Some(Duration::from_secs(r.ttl().unsigned_abs()))),
                Ok(Some(_)) => Ok(None),
                Ok(None) => {
                    *slot = None;
                    Err(StoreError::Unreachable("the keep-alive stream closed".into()))
                }
                Err(e) if lease_gone(&e) => {
                    *slot = None;
                    Ok(None)
                }
                Err(e) => {
                    *slot = None;
                    drop(slot);
                    self.failed(e).await
                }
            }
        })
    }

    fn revoke(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            *self.keeper.lock().await = None;
            let mut c = self.client().await?;
            match c.lease_revoke(lease).await {
                Ok(_) => Ok(()),
                Err(e) => self.failed(e).await,
            }
        })
    }

    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>, lease: LeaseId) -> StoreFuture<'a, Created> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))])
                .or_else([TxnOp::get(key, None)]);
            let r = match c.txn(txn).await {
                Ok(r) => r,
                Err(e) => return self.failed(e).await,
            };
            if r.succeeded() {
                return Ok(Created::Won(r.header().map_or(0, |h| h.revision())));
            }
            for op in r.op_responses() {
                if let TxnOpResponse::Get(g) = op {
                    if let Some(kv) = g.kvs().first() {
                        return Ok(Created::Taken(entry(kv)));
                    }
                }
            }
            // Deleted between the compare and the read: nobody holds it.
            Err(StoreError::Unreachable("the key vanished during the election; try again".into()))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, i64)> {
        Box::pin(async move {
            let mut c = self.client().await?;
            match c.get(prefix, Some(GetOptions::new().with_prefix())).await {
                Ok(r) => Ok((r.kvs().iter().map(entry).collect(), r.header().map_or(0, |h| h.revision()))),
                Err(e) => self.failed(e).await,
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let options = lease.map(|l| PutOptions::new().with_lease(l));
            match c.put(key, value, options).await {
                Ok(_) => Ok(()),
                Err(e) => self.failed(e).await,
            }
        })
    }

    fn put_fenced<'a>(
        &'a self,
        fence_key: &'a str,
        fence_revision: i64,
        key: &'a str,
        value: Vec<u8>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let txn = Txn::new()
                .when([Compare::create_revision(fence_key, CompareOp::Equal, fence_revision)])
                .and_then([TxnOp::put(key, value, None)]);
            match c.txn(txn).await {
                Ok(r) => Ok(r.succeeded()),
                Err(e) => self.failed(e).await,
            }
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after_revision: i64) -> StoreFuture<'a, mpsc::Receiver<i64>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let options =
                WatchOptions::new().with_prefix().with_start_revision(after_revision + 1).with_progress_notify();
            let mut stream = match c.watch(prefix, Some(options)).await {
                Ok(s) => s,
                Err(e) => return self.failed(e).await,
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        // The pooler stopped watching.
                        _ = tx.closed() => return,
                    };
                    match message {
                        Ok(Some(r)) if r.canceled() => {
                            tracing::debug!(reason = r.cancel_reason(), "etcd cancelled the watch");
                            return;
                        }
                        Ok(Some(r)) => {
                            if r.events().is_empty() {
                                continue;
                            }
                            let revision = r.header().map_or(0, |h| h.revision());
                            if tx.send(revision).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => return,
                    }
                }
            });
            Ok(rx)
        })
    }
}
