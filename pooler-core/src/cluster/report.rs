//! What client sessions report about a node: [`BackendError`], the typed
//! payload of the controller's backend-error event.

use super::Role;

/// Something a client session saw go wrong with a node. The controller asks
/// for an immediate check of the node, or (with
/// `failover.failover_on_backend_error`, for the [`hard`](Self::hard)
/// kinds) counts it as a failed check at once. `Display` gives the words
/// logged and kept as the node's cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BackendError {
    /// No connection could be opened: refused, unreachable, closed during
    /// the login, or turned away by the server (`57P03`, starting up or
    /// shutting down). Nothing of the client's was sent.
    #[error("{reason}")]
    Refused {
        /// The pooler's error text, naming the address.
        reason: String,
    },
    /// Opening a connection took longer than `pool.connect_timeout`.
    #[error("{reason}")]
    TimedOut {
        /// The pooler's error text, naming the address.
        reason: String,
    },
    /// An open connection failed under a session (reset, broken pipe).
    #[error("{reason}")]
    ConnectionLost {
        /// The pooler's error text.
        reason: String,
    },
    /// The server closed an open connection (terminated, shut down,
    /// crashed): not proof on its own that the node is down.
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// The node behaved unlike the role the pooler gives it: it answered
    /// `sqlstate` (which means `what`) as the `role`.
    #[error("the {} answered {sqlstate} ({what})", role.as_str())]
    UnlikeRole {
        /// The role the pooler gives the node.
        role: Role,
        /// The SQLSTATE it answered.
        sqlstate: &'static str,
        /// What that SQLSTATE means.
        what: &'static str,
    },
}

impl BackendError {
    /// The primary refused a write as read-only (`25006`): it may have been
    /// demoted behind the pooler's back.
    pub(crate) const READ_ONLY_PRIMARY: BackendError =
        BackendError::UnlikeRole { role: Role::Primary, sqlstate: "25006", what: "read-only transaction" };

    /// The report a session's failure `e` makes about its node, if any:
    /// failures to connect, and connections lost or closed under a session.
    pub(crate) fn of(e: &crate::Error) -> Option<BackendError> {
        use crate::Error as E;
        Some(match e {
            E::ConnectTimeout { .. } => BackendError::TimedOut { reason: e.to_string() },
            e if e.is_unavailable() => BackendError::Refused { reason: e.to_string() },
            E::ServerIo(_) => BackendError::ConnectionLost { reason: e.to_string() },
            E::ServerClosed => BackendError::Closed,
            _ => return None,
        })
    }

    /// The node could not be reached at all: the read set backs off from it.
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, BackendError::Refused { .. } | BackendError::TimedOut { .. })
    }

    /// Evidence enough to count as a failed check (refused, timed out,
    /// reset); a closed connection or an odd answer only asks for a check.
    pub(crate) fn hard(&self) -> bool {
        match self {
            BackendError::Refused { .. } | BackendError::TimedOut { .. } | BackendError::ConnectionLost { .. } => true,
            BackendError::Closed | BackendError::UnlikeRole { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error as E;

    #[test]
    fn session_failures_report_what_they_say_about_the_node() {
        let io = |k: std::io::ErrorKind| std::io::Error::from(k);
        let refused =
            BackendError::of(&E::Connect { addr: "db:1".into(), source: io(std::io::ErrorKind::ConnectionRefused) });
        assert!(matches!(&refused, Some(r @ BackendError::Refused { .. }) if r.hard() && r.unreachable()));
        let slow = BackendError::of(&E::ConnectTimeout { addr: "db:1".into() });
        assert!(matches!(&slow, Some(r @ BackendError::TimedOut { .. }) if r.hard() && r.unreachable()));
        assert_eq!(slow.map(|r| r.to_string()).as_deref(), Some("timeout while connecting to server db:1"));
        let reset = BackendError::of(&E::ServerIo(io(std::io::ErrorKind::ConnectionReset)));
        assert!(matches!(&reset, Some(r @ BackendError::ConnectionLost { .. }) if r.hard() && !r.unreachable()));
        let closed = BackendError::of(&E::ServerClosed);
        assert!(matches!(&closed, Some(r @ BackendError::Closed) if !r.hard() && !r.unreachable()));
        assert_eq!(BackendError::of(&E::Shutdown), None, "not the node's doing");
        assert!(!BackendError::READ_ONLY_PRIMARY.hard());
        assert_eq!(BackendError::READ_ONLY_PRIMARY.to_string(), "the primary answered 25006 (read-only transaction)");
    }
}
