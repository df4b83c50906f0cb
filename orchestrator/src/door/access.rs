//! Who may send which request: the [`Caller`] each edge establishes, the [`Actor`] the door
//! authorizes it as, and [`OperatorAccess`], the operator policy behind its lock.
//!
//! Every request kind needs something ([`Kind::need`]): an operator permission, a worker's
//! connection, an alert listener's. An operator request is refused unless its credentials
//! proved a principal and the policy grants that principal the permission; default deny. What
//! depends on the request's content (which playbook a run starts, whose run is cancelled,
//! which approver groups a decision counts for) is checked by the request itself, against its
//! [`Actor`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Error, Kind};
use crate::auth::{self, Grants, Permission, Policy, Principal};
use crate::engine;
use crate::store::AuditEntry;

/// Who sent a request, as its edge established it.
#[derive(Debug)]
pub enum Caller {
    /// An operator request: the principal its credentials proved (or why they proved none),
    /// where it came from, and the hex SHA-256 of the request as received (for the audit).
    Operator {
        principal: Result<Principal, auth::Refused>,
        source: Option<SocketAddr>,
        digest: String,
    },
    /// A worker; its verified identity travels in the request ([`super::workers::Caller`]).
    Worker,
    /// An alert listener, which authenticated its sender itself (alert secrets, TLS).
    Feed,
    /// The orchestrator itself: what it loads at start, its reloads.
    Internal,
}

/// What a request kind needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// An operator holding this permission.
    Operator(Permission),
    /// An operator holding either permission (cancel: one's own runs with `run`, anyone's
    /// with `respond-admin`; the request checks which).
    Either(Permission, Permission),
    /// A worker connection.
    Worker,
    /// An alert listener, or an operator who may start runs (alerts start runs).
    Alerts,
    /// Only the orchestrator itself.
    Internal,
}

impl Kind {
    /// What this kind needs of its caller. Exhaustive: a new kind does not compile without a
    /// rule, and the authorization matrix test lists every one.
    pub fn need(self) -> Need {
        use Permission::{Approve, Author, Read, RespondAdmin, Run};
        match self {
            Kind::ValidatePlaybook
            | Kind::ListPlaybooks
            | Kind::GetPlaybook
            | Kind::ListPlaybookVersions
            | Kind::GetRun
            | Kind::ListRuns
            | Kind::WatchRun
            | Kind::ListApprovals
            | Kind::ListGrants
            | Kind::GetContainment
            | Kind::ListSchedules
            | Kind::GetScheduleHistory
            | Kind::ListAlerts
            | Kind::GetAlert
            | Kind::ListAlertSources
            | Kind::ListRules
            | Kind::GetRule
            | Kind::TestRules
            | Kind::ListWorkers
            | Kind::WhoAmI => Need::Operator(Read),
            Kind::StartRun => Need::Operator(Run),
            Kind::CancelRun => Need::Either(Run, RespondAdmin),
            Kind::Decide => Need::Operator(Approve),
            Kind::ApplyPlaybook
            | Kind::SetDefaultPlaybook
            | Kind::DeletePlaybookVersion
            | Kind::ApplyRule
            | Kind::SetRuleEnabled
            | Kind::DeleteRule
            | Kind::DeleteSchedule
            | Kind::ApplySchedule
            | Kind::SetSchedulePaused
            | Kind::TriggerSchedule => Need::Operator(Author),
            Kind::SetContainment | Kind::RepairRun | Kind::RevokeGrant => {
                Need::Operator(RespondAdmin)
            }
            Kind::ListAudit | Kind::VerifyAudit => Need::Operator(Permission::Admin),
            Kind::IngestAlert | Kind::IngestBatch => Need::Alerts,
            Kind::Register
            | Kind::PollTask
            | Kind::Heartbeat
            | Kind::ReportResult
            | Kind::ClaimPoll
            | Kind::ReportPage => Need::Worker,
            Kind::ApplyBuiltin => Need::Internal,
        }
    }
}

/// The caller of a request as the door authorized it.
#[derive(Debug)]
pub struct Actor {
    /// The operator, when an operator sent it.
    pub principal: Option<Principal>,
    /// What the policy grants the operator (nothing for other callers).
    pub grants: Grants,
    /// The audit record of the request, until a write takes it (see [`Node::lock_for`]).
    pub(super) audit: Mutex<Option<AuditEntry>>,
}

impl Actor {
    /// The orchestrator itself.
    pub fn internal() -> Actor {
        Actor {
            principal: None,
            grants: Grants::default(),
            audit: Mutex::new(None),
        }
    }

    /// The audit record still waiting to be written, if any.
    pub(super) fn take_audit(&self) -> Option<AuditEntry> {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn put_audit(&self, entry: AuditEntry) {
        *self.audit.lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
    }

    /// Who to record as having done it: the principal's id, else `orchestrator`.
    pub fn id(&self) -> String {
        self.principal
            .as_ref()
            .map_or_else(|| "orchestrator".to_string(), |p| p.id.clone())
    }

    /// Whether it may do what `permission` allows beyond its kind's need (e.g. cancel a run
    /// it did not start); only operators are limited.
    pub fn may(&self, permission: Permission) -> bool {
        self.principal.is_none() || self.grants.holds(permission)
    }

    /// Refuses unless it may start runs of `playbook`.
    pub fn check_run(&self, playbook: &str) -> Result<(), Error> {
        match &self.principal {
            None => Ok(()),
            Some(principal) => Policy::check_run(&self.grants, principal, playbook)
                .map_err(|denied| engine::Error::PermissionDenied(denied.to_string()).into()),
        }
    }

    /// Refuses unless it holds `permission`, to do `what`.
    pub fn check(&self, permission: Permission, what: &str) -> Result<(), Error> {
        match &self.principal {
            None => Ok(()),
            Some(principal) => Policy::check(&self.grants, principal, permission, what)
                .map_err(|denied| engine::Error::PermissionDenied(denied.to_string()).into()),
        }
    }
}

impl Kind {
    /// Whether a request of this kind is recorded in the audit log when it is carried out:
    /// every change an operator or a worker's registration makes. Reads are recorded only
    /// when refused; alerts are recorded as alerts, and a worker's leases in run histories.
    pub fn audited(self) -> bool {
        matches!(
            self,
            Kind::ApplyPlaybook
                | Kind::SetDefaultPlaybook
                | Kind::DeletePlaybookVersion
                | Kind::StartRun
                | Kind::CancelRun
                | Kind::RepairRun
                | Kind::Decide
                | Kind::RevokeGrant
                | Kind::SetContainment
                | Kind::ApplySchedule
                | Kind::TriggerSchedule
                | Kind::SetSchedulePaused
                | Kind::ApplyRule
                | Kind::SetRuleEnabled
                | Kind::DeleteRule
                | Kind::DeleteSchedule
                | Kind::Register
        )
    }
}

impl Caller {
    /// The audit record of a request of `kind` with `target` from this caller, outcome `ok`
    /// (replaced by the refusal when it is refused).
    pub(super) fn audit_entry(&self, kind: Kind, target: String, at_ms: i64) -> AuditEntry {
        let (principal, method, source, digest) = match self {
            Caller::Operator {
                principal,
                source,
                digest,
            } => {
                let (id, method) = match principal {
                    Ok(p) => (p.id.clone(), p.method.name()),
                    Err(_) => ("unauthenticated".to_string(), "none"),
                };
                let source = source.map_or_else(|| "unknown".into(), |s| s.to_string());
                (id, method, source, digest.clone())
            }
            Caller::Worker => (
                "worker".into(),
                "certificate",
                "worker".into(),
                String::new(),
            ),
            Caller::Feed => ("alerts".into(), "none", "listener".into(), String::new()),
            Caller::Internal => (
                "orchestrator".into(),
                "service",
                "internal".into(),
                String::new(),
            ),
        };
        AuditEntry {
            at_ms,
            principal,
            method: method.to_string(),
            source,
            action: kind.name().to_string(),
            target,
            digest,
            outcome: "ok".into(),
        }
    }

    /// Whether a refusal of this caller is recorded: an operator's always (a failed
    /// authorization is what an audit is for).
    pub(super) fn audits_refusals(&self) -> bool {
        matches!(self, Caller::Operator { .. })
    }
}

/// The operator policy, replaced whole on reload.
pub struct OperatorAccess {
    policy: RwLock<Arc<Policy>>,
}

impl OperatorAccess {
    pub fn new(policy: Policy) -> OperatorAccess {
        OperatorAccess {
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Authorizes `caller` for a request of `kind`: the actor it acts as, or why not.
    pub fn authorize(&self, caller: &Caller, kind: Kind) -> Result<Actor, Error> {
        let refuse = |why: String| Err(engine::Error::PermissionDenied(why).into());
        match (caller, kind.need()) {
            (Caller::Internal, _) => Ok(Actor::internal()),
            (Caller::Worker, Need::Worker) | (Caller::Feed, Need::Alerts) => Ok(Actor::internal()),
            (Caller::Operator { principal, .. }, need) => {
                let principal = principal
                    .as_ref()
                    .map_err(|refused| Error::Unauthenticated(refused.to_string()))?;
                let grants = self.policy().grants(principal);
                let permission = match need {
                    Need::Operator(permission) => permission,
                    Need::Either(_, other) if grants.holds(other) => other,
                    Need::Either(one, _) => one,
                    Need::Alerts => Permission::Run,
                    Need::Worker | Need::Internal => {
                        return refuse(format!("{} is not an operator request", kind.name()));
                    }
                };
                Policy::check(&grants, principal, permission, kind.describe())
                    .map_err(|denied| engine::Error::PermissionDenied(denied.to_string()))?;
                Ok(Actor {
                    principal: Some(principal.clone()),
                    grants,
                    audit: Mutex::new(None),
                })
            }
            (_, _) => refuse(format!("{} is not allowed on this listener", kind.name())),
        }
    }
}

super::requests! {
    WhoAmI,
}

/// The caller's own principal and what the policy grants it.
pub struct WhoAmI;

impl super::Request for WhoAmI {
    type Reply = (Principal, Grants);
    const KIND: Kind = Kind::WhoAmI;

    async fn serve(self, _node: &Arc<super::Node>, actor: &Actor) -> Result<Self::Reply, Error> {
        let principal = actor.principal.clone().ok_or_else(|| {
            engine::Error::InvalidArgument("only an operator has a principal".into())
        })?;
        Ok((principal, actor.grants.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    /// Every role of the built-in set, one principal each.
    const POLICY: &str = "
principals:
  'cert:reader': [reader]
  'cert:responder': [responder]
  'cert:approver': [approver]
  'cert:author': [author]
  'cert:respond-admin': [respond-admin]
  'cert:admin': [admin]
";

    /// The authorization matrix, written out: for each kind, who may call it (R reader,
    /// S responder, P approver, A author, D respond-admin, M admin); `-` nobody among
    /// operators. An unauthenticated caller may call nothing.
    const MATRIX: &[(&str, &str)] = &[
        ("playbook.validate", "RSPADM"),
        ("playbook.apply", "A----M"),
        ("playbook.apply_builtin", "------"),
        ("playbook.list", "RSPADM"),
        ("playbook.get", "RSPADM"),
        ("playbook.versions", "RSPADM"),
        ("playbook.set_default", "A----M"),
        ("playbook.delete", "A----M"),
        ("run.start", "S----M"),
        ("run.get", "RSPADM"),
        ("run.list", "RSPADM"),
        ("run.watch", "RSPADM"),
        ("run.cancel", "S---DM"),
        ("run.repair", "D----M"),
        ("approval.decide", "P----M"),
        ("approval.list", "RSPADM"),
        ("grant.list", "RSPADM"),
        ("grant.revoke", "D----M"),
        ("containment.set", "D----M"),
        ("containment.get", "RSPADM"),
        ("schedule.apply", "A----M"),
        ("schedule.list", "RSPADM"),
        ("schedule.history", "RSPADM"),
        ("schedule.trigger", "A----M"),
        ("schedule.set_paused", "A----M"),
        ("schedule.delete", "A----M"),
        ("alert.ingest", "S----M"),
        ("alert.ingest_batch", "S----M"),
        ("alert.list", "RSPADM"),
        ("alert.get", "RSPADM"),
        ("alert.sources", "RSPADM"),
        ("rule.apply", "A----M"),
        ("rule.list", "RSPADM"),
        ("rule.get", "RSPADM"),
        ("rule.set_enabled", "A----M"),
        ("rule.delete", "A----M"),
        ("rule.test", "RSPADM"),
        ("worker.register", "------"),
        ("worker.poll", "------"),
        ("worker.heartbeat", "------"),
        ("worker.report", "------"),
        ("worker.claim_poll", "------"),
        ("worker.report_page", "------"),
        ("worker.list", "RSPADM"),
        ("whoami", "RSPADM"),
        ("audit.list", "-----M"),
        ("audit.verify", "-----M"),
    ];

    const ROLES: [(char, &str); 6] = [
        ('R', "reader"),
        ('S', "responder"),
        ('P', "approver"),
        ('A', "author"),
        ('D', "respond-admin"),
        ('M', "admin"),
    ];

    fn operator(name: &str) -> Caller {
        Caller::Operator {
            principal: Ok(Principal::new(Method::Certificate, name)),
            source: None,
            digest: String::new(),
        }
    }

    #[test]
    fn every_kind_is_allowed_to_exactly_the_roles_the_matrix_names() {
        let access = OperatorAccess::new(Policy::parse(POLICY).unwrap());
        let kinds = super::super::tests::all_kinds();
        assert_eq!(
            kinds.len(),
            MATRIX.len(),
            "a kind was added: give it a rule in `Kind::need` and a row here"
        );
        for kind in kinds {
            let (_, allowed) = MATRIX
                .iter()
                .find(|(name, _)| *name == kind.name())
                .unwrap_or_else(|| panic!("{} has no row in the matrix", kind.name()));
            for (letter, role) in ROLES {
                let expected = allowed.contains(letter);
                let got = access.authorize(&operator(role), kind).is_ok();
                assert_eq!(got, expected, "{role} calling {}", kind.name());
            }
            let anonymous = Caller::Operator {
                principal: Err(auth::Refused::Missing),
                source: None,
                digest: String::new(),
            };
            let refused = access.authorize(&anonymous, kind).unwrap_err();
            assert!(matches!(refused, Error::Unauthenticated(_)), "{refused}");
            let stranger = access.authorize(&operator("mallory"), kind).unwrap_err();
            let denied = matches!(stranger, Error::Engine(engine::Error::PermissionDenied(_)));
            assert!(denied, "{stranger}");
        }
    }

    #[test]
    fn workers_and_listeners_reach_only_their_own_kinds() {
        let access = OperatorAccess::new(Policy::default());
        for kind in super::super::tests::all_kinds() {
            let worker = access.authorize(&Caller::Worker, kind).is_ok();
            assert_eq!(worker, kind.need() == Need::Worker, "{}", kind.name());
            let feed = access.authorize(&Caller::Feed, kind).is_ok();
            assert_eq!(feed, kind.need() == Need::Alerts, "{}", kind.name());
        }
    }
}
