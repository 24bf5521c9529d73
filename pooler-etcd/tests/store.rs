//! `EtcdStore` against a real etcd (3.4, Debian's `etcd-server`): what the
//! pooler's election, fencing and watch rely on, and the store's TLS and
//! user settings. Each test starts its own etcd on free loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pooler_core::config::{CoordinationBackend, CoordinationConfig};
use pooler_core::coordination::{CoordinationStore, Created, StoreError};
use pooler_etcd::EtcdStore;
use pooler_testkit::{EtcdCluster, EtcdTls};

fn config(endpoints: Vec<String>) -> CoordinationConfig {
    CoordinationConfig {
        backend: CoordinationBackend::Etcd,
        endpoints,
        request_timeout: Duration::from_millis(700),
        ..CoordinationConfig::default()
    }
}

/// A temp dir removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("pooler-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_elects_fences_lists_and_watches_on_a_real_etcd() {
    let etcd = EtcdCluster::start(1).expect("etcd");
    let store = EtcdStore::new(&config(etcd.endpoints())).unwrap();
    let (a, b) =
        (store.grant(Duration::from_secs(5)).await.unwrap(), store.grant(Duration::from_secs(5)).await.unwrap());
    assert!(store.keep_alive(a).await.unwrap().is_some_and(|ttl| ttl >= Duration::from_secs(4)));
    // The election: the first create wins, the second learns who holds it.
    let term = match store.create("/t/leader", b"a".to_vec(), a).await.unwrap() {
        Created::Won(rev) => rev,
        other => panic!("{other:?}"),
    };
    match store.create("/t/leader", b"b".to_vec(), b).await.unwrap() {
        Created::Taken(e) => assert_eq!((e.value.as_slice(), e.create_revision), (&b"a"[..], term)),
        other => panic!("{other:?}"),
    }
    // The fence: a write on the holder's term goes through, any other not.
    let (_, before) = store.list("/t/").await.unwrap();
    let mut watch = store.watch("/t/", before).await.unwrap();
    assert!(store.put_fenced("/t/leader", term, "/t/state", b"s1".to_vec()).await.unwrap());
    assert!(!store.put_fenced("/t/leader", term + 1, "/t/state", b"s2".to_vec()).await.unwrap());
    let changed = tokio::time::timeout(Duration::from_secs(5), watch.recv()).await.expect("a watch event in time");
    assert!(changed.is_some_and(|rev| rev > before));
    store.put("/t/members/a", b"view".to_vec(), Some(a)).await.unwrap();
    let (entries, _) = store.list("/t/").await.unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["/t/leader", "/t/members/a", "/t/state"]);
    assert_eq!(entries[2].value, b"s1");
    // The holder's lease ends: its keys go, the fence on its term fails,
    // renewing it says it is gone (not that etcd is unreachable), and the
    // other bidder wins a new term.
    store.revoke(a).await.unwrap();
    let (entries, _) = store.list("/t/").await.unwrap();
    assert_eq!(entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["/t/state"]);
    assert!(!store.put_fenced("/t/leader", term, "/t/state", b"s3".to_vec()).await.unwrap());
    assert_eq!(store.keep_alive(a).await, Ok(None));
    match store.create("/t/leader", b"b".to_vec(), b).await.unwrap() {
        Created::Won(rev) => assert!(rev > term),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_is_unreachable_within_the_request_timeout_and_answers_again_after() {
    let etcd = EtcdCluster::start(1).expect("etcd");
    let store = EtcdStore::new(&config(etcd.endpoints())).unwrap();
    store.put("/u/k", b"v".to_vec(), None).await.unwrap();
    etcd.member(0).stop_process().unwrap();
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), store.list("/u/")).await.expect("an answer, not a hang");
    assert!(matches!(r, Err(StoreError::Unreachable(_))), "{r:?}");
    assert!(asked.elapsed() < Duration::from_secs(3), "{:?}", asked.elapsed());
    etcd.member(0).cont_process().unwrap();
    let back = async {
        loop {
            if store.list("/u/").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), back).await.expect("etcd answers again");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`.
fn certificates(dir: &Path) -> (EtcdTls, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "etcd test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_file = write("ca.pem", ca.pem());
    let sign = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        (p.signed_by(&key, &ca, &ca_key).unwrap().pem(), key.serialize_pem())
    };
    let (server, server_key) = sign(vec!["127.0.0.1".into(), "localhost".into()], "etcd");
    let (client, client_key) = sign(Vec::new(), "pooler");
    let tls = EtcdTls {
        cert_file: write("server.pem", server),
        key_file: write("server.key", server_key),
        client_ca_file: ca_file,
    };
    (tls, write("client.pem", client), write("client.key", client_key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_certificate_is_accepted_and_a_missing_one_refused() {
    let dir = Dir::new("tls");
    let (tls, cert, key) = certificates(&dir.0);
    let etcd = EtcdCluster::start_tls(1, &tls).expect("etcd over TLS");
    assert!(etcd.endpoints()[0].starts_with("https://"));
    let with_cert = CoordinationConfig {
        ca_file: Some(tls.client_ca_file.clone()),
        cert_file: Some(cert),
        key_file: Some(key),
        ..config(etcd.endpoints())
    };
    let store = EtcdStore::new(&with_cert).unwrap();
    let lease = store.grant(Duration::from_secs(5)).await.expect("a lease over TLS");
    store.put("/tls/k", b"v".to_vec(), Some(lease)).await.unwrap();
    assert_eq!(store.list("/tls/").await.unwrap().0.len(), 1);
    // The server verified, but no client certificate: refused by etcd.
    let without = CoordinationConfig { ca_file: Some(tls.client_ca_file.clone()), ..config(etcd.endpoints()) };
    let r = EtcdStore::new(&without).unwrap().list("/tls/").await;
    assert!(r.is_err(), "{r:?}");
    // A missing file is named at setup.
    let missing = CoordinationConfig { ca_file: Some(dir.0.join("nope.pem")), ..config(etcd.endpoints()) };
    let e = EtcdStore::new(&missing).unwrap_err();
    assert!(e.to_string().contains("coordination.ca_file"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_on_the_user_and_password_file_work_and_a_wrong_password_is_refused() {
    let etcd = EtcdCluster::start(1).expect("etcd");
    let dir = Dir::new("auth");
    // Authentication on, as an operator would set it up: root, and a user
    // for the poolers with read-write on their prefix.
    let mut admin = etcd_client::Client::connect(etcd.endpoints(), None).await.unwrap();
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("pooler").await.unwrap();
    let perm = etcd_client::Permission::read_write("/pooler/").with_prefix();
    admin.role_grant_permission("pooler", perm).await.unwrap();
    admin.user_add("pooler", "s3cret", None).await.unwrap();
    admin.user_grant_role("pooler", "pooler").await.unwrap();
    admin.auth_enable().await.unwrap();
    let file = dir.0.join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let good = CoordinationConfig {
        user: Some("pooler".into()),
        password_file: Some(file.clone()),
        ..config(etcd.endpoints())
    };
    let store = EtcdStore::new(&good).unwrap();
    let lease = store.grant(Duration::from_secs(5)).await.expect("a lease as the pooler user");
    store.put("/pooler/members/a", b"v".to_vec(), Some(lease)).await.unwrap();
    assert_eq!(store.list("/pooler/").await.unwrap().0.len(), 1);
    // Outside its prefix: refused, not "unreachable".
    let r = store.put("/other/k", b"v".to_vec(), None).await;
    assert!(matches!(r, Err(StoreError::Refused(_))), "{r:?}");
    std::fs::write(&file, "wrong\n").unwrap();
    let r = EtcdStore::new(&good).unwrap().list("/pooler/").await;
    assert!(matches!(r, Err(StoreError::Refused(_))), "a wrong password is refused: {r:?}");
}
