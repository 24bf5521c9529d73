//! Settings for running several poolers in front of one cluster
//! (`[coordination]`): the store they agree through, this pooler's name in
//! it, the lease that makes one of them the leader, and the virtual IP
//! commands run when this pooler gains or loses the leadership.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

/// Which store the poolers coordinate through (`coordination.backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinationBackend {
    /// None (the default): the pooler decides alone, as a single pooler does.
    #[default]
    None,
    /// An etcd v3 cluster (the binary built with the `etcd` feature, or an
    /// embedder's [`crate::CoordinationStore`]).
    Etcd,
}

/// `[coordination]`: several poolers, one leader, one shared view of the
/// cluster (docs/HA.md).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinationConfig {
    /// The store; `none` (default) turns coordination off.
    pub backend: CoordinationBackend,
    /// The store's client URLs, e.g. `["http://10.0.0.1:2379",
    /// "http://10.0.0.2:2379"]` (`https://` with `ca_file`).
    pub endpoints: Vec<String>,
    /// Key prefix every key of this pooler group lives under. Poolers in
    /// front of one cluster share it; other clusters use another.
    pub prefix: String,
    /// This pooler's name in the group, unique among the poolers sharing
    /// `prefix`. Empty (default): the host name and `server.listen`.
    pub name: String,
    /// Lease time to live: a leader that cannot renew its lease for this
    /// long stops running commands, and another pooler may take over after
    /// it. At least 2 s.
    #[serde(deserialize_with = "duration")]
    pub lease_ttl: Duration,
    /// How long the leader waits for a majority of the live poolers to see
    /// a failed primary down before it gives up this round (the next failed
    /// check asks again).
    #[serde(deserialize_with = "duration")]
    pub quorum_wait: Duration,
    /// Bound on each request to the store.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// CA certificate (PEM) to verify the store's servers with; set it for
    /// `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for stores that require one, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// User name for a store with authentication on, with `password_file`.
    pub user: Option<String>,
    /// File holding that user's password (first line; keep it mode 0600).
    pub password_file: Option<PathBuf>,
    /// Run when this pooler becomes the leader, e.g. `ip addr add
    /// 10.0.0.100/24 dev eth0`. Empty: nothing.
    pub if_up_command: String,
    /// Run when this pooler stops being the leader (lease lost, store
    /// unreachable, shutdown), e.g. `ip addr del 10.0.0.100/24 dev eth0`.
    pub if_down_command: String,
    /// Run after `if_up_command` succeeded, to tell the network the address
    /// moved, e.g. `arping -U -c 3 -I eth0 10.0.0.100`.
    pub arping_command: String,
    /// Bound on each of the three commands above.
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            backend: CoordinationBackend::None,
            endpoints: Vec::new(),
            prefix: "/pooler/".into(),
            name: String::new(),
            lease_ttl: Duration::from_secs(10),
            quorum_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
            if_up_command: String::new(),
            if_down_command: String::new(),
            arping_command: String::new(),
            command_timeout: Duration::from_secs(30),
        }
    }
}

impl CoordinationConfig {
    /// Whether coordination is on.
    pub fn enabled(&self) -> bool {
        self.backend != CoordinationBackend::None
    }

    /// This pooler's name: `name`, else `<host name>:<listen port>`.
    pub fn member_name(&self, listen: &str) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "pooler".into());
        let port = listen.rsplit(':').next().unwrap_or("6432");
        format!("{host}:{port}")
    }

    /// `prefix`, ending with `/`.
    pub fn key_prefix(&self) -> String {
        if self.prefix.ends_with('/') {
            self.prefix.clone()
        } else {
            format!("{}/", self.prefix)
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.endpoints.is_empty() {
            return Err(invalid("coordination.endpoints", "must name at least one endpoint of the store"));
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid("coordination.endpoints", format!("{e:?} is not an http:// or https:// URL")));
            }
        }
        if self.prefix.is_empty() || self.prefix.contains('\0') {
            return Err(invalid("coordination.prefix", "must not be empty"));
        }
        if self.name.contains('/') || self.name.chars().any(char::is_control) {
            return Err(invalid("coordination.name", "must not contain '/' or control characters"));
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return Err(invalid("coordination.lease_ttl", "must be at least 2s"));
        }
        if self.request_timeout.is_zero() || self.request_timeout >= self.lease_ttl {
            return Err(invalid("coordination.request_timeout", "must be above zero and below lease_ttl"));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid("coordination.cert_file", "cert_file and key_file go together"));
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err(invalid("coordination.user", "user and password_file go together"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\n";

    #[test]
    fn coordination_is_off_by_default_and_needs_endpoints_when_on() {
        assert!(!Config::from_toml(MINIMAL).unwrap().coordination.enabled());
        let err = Config::from_toml(&format!("{MINIMAL}[coordination]\nbackend = \"etcd\"\n")).unwrap_err();
        assert!(err.to_string().contains("coordination.endpoints"), "{err}");
        let c = Config::from_toml(&format!(
            "{MINIMAL}[coordination]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nname = \"a\"\nlease_ttl = \"3s\"\nprefix = \"/x\"\n"
        ))
        .unwrap();
        assert_eq!(c.coordination.member_name("0.0.0.0:6432"), "a");
        assert_eq!(c.coordination.key_prefix(), "/x/");
    }

    #[test]
    fn a_lease_shorter_than_two_seconds_or_a_bad_endpoint_names_the_key() {
        let base = format!("{MINIMAL}[coordination]\nbackend = \"etcd\"\n");
        let err = Config::from_toml(&format!("{base}endpoints = [\"http://h:1\"]\nlease_ttl = \"1s\"\n")).unwrap_err();
        assert!(err.to_string().contains("coordination.lease_ttl"), "{err}");
        let err = Config::from_toml(&format!("{base}endpoints = [\"h:1\"]\n")).unwrap_err();
        assert!(err.to_string().contains("coordination.endpoints"), "{err}");
    }
}
