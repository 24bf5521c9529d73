//! Who may use the admin console (`[admin]`).

use serde::Deserialize;

use super::{invalid, ConfigError};

/// Admin console settings (`[admin]`). The console is the virtual database
/// `pooler` (also answering to `pgbouncer`) on the pooler's listener;
/// users log in to it as to any database (same authentication), then these
/// lists decide what they may do.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Users who may run every console command, the ones that change state
    /// included (pgbouncer's `admin_users`).
    pub admin_users: Vec<String>,
    /// Users who may only run `SHOW` commands (pgbouncer's `stats_users`).
    pub stats_users: Vec<String>,
}

/// What a user may do on the admin console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRole {
    /// Every command.
    Admin,
    /// `SHOW` commands only.
    Stats,
}

impl AdminConfig {
    /// The console role of `user`, if any (admin when listed in both).
    pub fn role_of(&self, user: &str) -> Option<ConsoleRole> {
        if self.admin_users.iter().any(|u| u == user) {
            Some(ConsoleRole::Admin)
        } else if self.stats_users.iter().any(|u| u == user) {
            Some(ConsoleRole::Stats)
        } else {
            None
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (list, names) in [("admin.admin_users", &self.admin_users), ("admin.stats_users", &self.stats_users)] {
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() || name.contains('\0') || name.len() > 63 {
                    return Err(invalid(format!("{list}[{i}]"), "must be a role name (1 to 63 bytes, no NUL)"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = "[auth]\nmethod = \"trust\"\n[[nodes]]\nhost = \"127.0.0.1\"\n";

    #[test]
    fn no_admin_section_means_nobody_may_use_the_console() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.admin.role_of("postgres"), None);
    }

    #[test]
    fn admin_users_outrank_stats_users() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}[admin]\nadmin_users = [\"ops\"]\nstats_users = [\"ops\", \"grafana\"]\n"
        ))
        .unwrap();
        assert_eq!(c.admin.role_of("ops"), Some(super::ConsoleRole::Admin));
        assert_eq!(c.admin.role_of("grafana"), Some(super::ConsoleRole::Stats));
        assert_eq!(c.admin.role_of("app"), None);
    }

    #[test]
    fn an_empty_user_name_is_refused_with_its_key() {
        let err = Config::from_toml(&format!("{MINIMAL}[admin]\nstats_users = [\"a\", \"\"]\n")).unwrap_err();
        assert!(err.to_string().contains("admin.stats_users[1]"), "{err}");
        let err = Config::from_toml(&format!("{MINIMAL}[admin]\nadmins = [\"a\"]\n")).unwrap_err();
        assert!(err.to_string().contains("admins"), "{err}");
    }
}
