//! The Prometheus endpoint's settings (`[metrics]`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Prometheus / OpenMetrics endpoint (`[metrics]`), served by the binary
/// (an embedding service installs its own recorder and ignores this).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint (`host:port`) serving `/metrics` and
    /// `/health`. Unset (the default): no endpoint.
    pub listen: Option<String>,
    /// Time each request and transaction (from the moment it is relayed to
    /// the server to its ReadyForQuery) into the `pooler_query_duration_seconds`
    /// and `pooler_transaction_duration_seconds` histograms: two clock reads
    /// per request. Unset: on when `listen` is set.
    pub durations: Option<bool>,
}

impl MetricsConfig {
    /// The endpoint's address, if one is configured (validated).
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match &self.listen {
            None => Ok(None),
            Some(s) => {
                s.parse().map(Some).map_err(|e| invalid("metrics.listen", format!("{s:?} is not host:port ({e})")))
            }
        }
    }

    /// Whether requests and transactions are timed (`durations`, by default
    /// whether the endpoint is on).
    pub fn times_requests(&self) -> bool {
        self.durations.unwrap_or(self.listen.is_some())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\n";

    #[test]
    fn the_endpoint_is_off_by_default() {
        assert_eq!(Config::from_toml(MINIMAL).unwrap().metrics.listen_addr().unwrap(), None);
    }

    #[test]
    fn a_bad_listen_address_names_the_key() {
        let err = Config::from_toml(&format!("{MINIMAL}[metrics]\nlisten = \"everywhere\"\n")).unwrap_err();
        assert!(err.to_string().contains("metrics.listen"), "{err}");
        let ok = Config::from_toml(&format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9187\"\n")).unwrap();
        assert_eq!(ok.metrics.listen_addr().unwrap().map(|a| a.port()), Some(9187));
    }
}
