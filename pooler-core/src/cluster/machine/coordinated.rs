//! The machine's rules when several poolers coordinate (`[coordination]`):
//! a failed primary is failed over only once a majority of the live poolers
//! agree it is down, and a follower takes the leader's decisions: its
//! primary (once this pooler's own check sees it answer as one) and the
//! nodes it quarantined.

use super::{Action, Machine, Outcome};
use crate::topology::{Role, Status};

impl Machine {
    /// The quorum's answer about the failed primary `failed`.
    pub(super) fn quorum_down(&mut self, failed: usize, agreed: bool, why: &str, out: &mut Outcome) {
        if self.confirming == Some(failed) {
            self.confirming = None;
        }
        let still_down = failed == self.primary
            && self.nodes.get(failed).is_some_and(|n| n.status == Status::Down)
            && self.failover_ran_for != Some(failed);
        if !still_down {
            tracing::debug!(failed, "quorum answer for a primary no longer down here: ignored");
            return;
        }
        if agreed {
            tracing::warn!(failed, votes = why, "the live poolers agree the primary is down: failing over");
            self.confirmed = Some(failed);
            self.fail_over(failed, out);
            self.confirmed = None;
        } else {
            let cause = format!("down as seen from this pooler; no failover: {why}");
            // Asked again at every failed check: said once per reason.
            if self.nodes[failed].cause != cause {
                tracing::warn!(
                    failed,
                    why,
                    "the primary is down as seen from here, but no failover: writes wait for it"
                );
                self.nodes[failed].cause = cause;
            }
        }
    }

    /// The leader pooler's state.
    pub(super) fn shared(&mut self, leader: &str, primary: Option<usize>, quarantined: &[usize], out: &mut Outcome) {
        if let Some(p) = primary.filter(|&p| p != self.primary && p < self.nodes.len()) {
            if self.nodes[p].status == Status::Removed {
                tracing::warn!(node = p, leader, "the leader pooler declared a node removed here the primary: ignored");
            } else if self.nodes[p].pg_up && self.nodes[p].pg_role == Role::Primary {
                self.switch_primary(
                    p,
                    &format!("declared the primary by the leader pooler {leader}"),
                    &mut out.actions,
                );
            } else if self.pending_primary != Some(p) {
                // Checked, not assumed: writes move once it answers as a primary.
                tracing::info!(node = p, leader, "the leader pooler declared a new primary: checking it now");
                self.pending_primary = Some(p);
                self.check_asked[p] = true;
                out.actions.push(Action::CheckNow(p));
            }
        }
        for &q in quarantined {
            if q == self.primary || q >= self.nodes.len() {
                continue;
            }
            if matches!(self.nodes[q].status, Status::Up | Status::Waiting | Status::Down) {
                self.former[q] = true;
                self.set_status(q, Status::Quarantine, &format!("quarantined by the leader pooler {leader}"), true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, err, primary, standby, status};
    use super::super::{Action, Event};
    use super::*;
    use crate::config::{Config, NodeConfig};

    fn coordinated() -> Machine {
        let mut c = Config::with_nodes((0..3).map(|i| NodeConfig::new("127.0.0.1", 5432 + i as u16)).collect());
        c.failover.command = "promote %R".into();
        c.coordination.backend = crate::config::CoordinationBackend::Etcd;
        let mut m = Machine::new(&c, super::super::tests::at(0));
        check(&mut m, 0, primary(100));
        check(&mut m, 1, standby(100, 5432));
        check(&mut m, 2, standby(90, 5432));
        m
    }

    fn apply(m: &mut Machine, e: Event) -> Vec<Action> {
        m.apply(e, super::super::tests::at(1)).actions
    }

    #[test]
    fn a_primary_seen_down_asks_the_quorum_once_and_fails_over_only_when_it_agrees() {
        let mut m = coordinated();
        assert_eq!(check(&mut m, 0, err("refused")), vec![Action::ConfirmDown { failed: 0 }]);
        assert_eq!(status(&m)[0], Status::Down, "no writes go there, and none elsewhere");
        assert!(check(&mut m, 0, err("refused")).is_empty(), "one question at a time");
        let a = apply(&mut m, Event::QuorumDown { failed: 0, agreed: false, why: "1 of 3".into() });
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.primary(), 0, "writes stay with the primary");
        // The next failed check asks again; this time they agree.
        assert_eq!(check(&mut m, 0, err("refused")), vec![Action::ConfirmDown { failed: 0 }]);
        let a = apply(&mut m, Event::QuorumDown { failed: 0, agreed: true, why: "2 of 3".into() });
        assert!(matches!(a.as_slice(), [Action::AskPositions { failed: 0, .. }]), "{a:?}");
        assert_eq!(status(&m)[0], Status::Quarantine);
    }

    #[test]
    fn an_agreement_that_arrives_after_the_primary_came_back_changes_nothing() {
        let mut m = coordinated();
        check(&mut m, 0, err("refused"));
        check(&mut m, 0, primary(120));
        let a = apply(&mut m, Event::QuorumDown { failed: 0, agreed: true, why: "2 of 3".into() });
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(status(&m), vec![Status::Up; 3]);
    }

    #[test]
    fn a_follower_takes_the_leaders_primary_only_once_its_own_check_sees_it_answer_as_one() {
        let mut m = coordinated();
        let shared = |p| Event::Shared { leader: "p1".into(), primary: Some(p), quarantined: vec![0] };
        assert_eq!(apply(&mut m, shared(1)), vec![Action::CheckNow(1)]);
        assert_eq!(m.primary(), 0, "node 1 still says it is a standby");
        // Node 1 answers as a primary: writes move, the old one stays out.
        check(&mut m, 1, primary(130));
        assert_eq!(m.primary(), 1);
        assert_eq!(status(&m)[0], Status::Quarantine);
        // The same state again changes nothing; a primary already seen as
        // one is taken at once.
        assert!(apply(&mut m, shared(1)).iter().all(|a| !matches!(a, Action::CheckNow(_))));
        check(&mut m, 2, primary(10));
        assert_eq!(m.primary(), 1, "a second claimant is not taken on its own word");
        apply(&mut m, Event::Shared { leader: "p1".into(), primary: Some(2), quarantined: vec![1] });
        assert_eq!(m.primary(), 2);
        assert_eq!(status(&m)[1], Status::Quarantine);
    }
}
