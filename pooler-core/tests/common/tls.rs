//! Certificates for the TLS tests, generated per test (nothing secret is
//! committed): a CA, server certificates signed by it, client certificates
//! naming users, and a second CA nobody trusts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A directory of PEM files, removed on drop.
pub struct Certs {
    pub dir: PathBuf,
    ca_key: KeyPair,
    ca_cert: Certificate,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p
}

impl Certs {
    /// A fresh CA in a fresh directory (`ca.pem`), readable by everyone so
    /// that a server running as another OS user can read it.
    pub fn new(tag: &str) -> Certs {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pooler-certs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod cert dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params("pooler test CA").self_signed(&ca_key).expect("CA cert");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
        Certs { dir, ca_key, ca_cert }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by the
    /// CA, written as `<file>.pem` / `<file>.key`; returns both paths.
    pub fn server(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        self.sign(file, params)
    }

    /// A client certificate whose common name is `user`.
    pub fn client(&self, user: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, user);
        self.sign(&format!("client-{user}"), params)
    }

    /// A certificate from another CA (`other-ca.pem`), for `names`.
    pub fn untrusted(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("other CA key");
        let ca = ca_params("someone else's CA").self_signed(&key).expect("other CA");
        std::fs::write(self.dir.join("other-ca.pem"), ca.pem()).expect("write other CA");
        let leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let leaf_key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&leaf_key, &ca, &key).expect("sign");
        self.write(file, &cert.pem(), &leaf_key.serialize_pem())
    }

    fn sign(&self, file: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).expect("sign");
        self.write(file, &cert.pem(), &key.serialize_pem())
    }

    fn write(&self, file: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        std::fs::write(&c, cert).expect("write cert");
        std::fs::write(&k, key).expect("write key");
        use std::os::unix::fs::PermissionsExt;
        // libpq and PostgreSQL refuse keys others can read.
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        (c, k)
    }

    /// Hands `files` to the OS user PostgreSQL runs as (its key must be
    /// its own).
    pub fn give_to_server_user(&self, files: &[&Path]) {
        if let Some((_, uid, gid)) = pooler_testkit::server_os_user() {
            for f in files {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown for the server");
            }
        }
    }
}
