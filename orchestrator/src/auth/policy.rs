//! The operator policy: who may do what, and the platform's rules above every playbook. A
//! YAML file (`--policy`), read at start and again when it changes:
//!
//! ```yaml
//! roles:                               # more roles beside the built-in ones
//!   analyst: { permissions: [read, run], playbooks: [ip-block, "account-*"] }
//! principals:                          # a principal's roles
//!   "cert:admin": [admin]
//!   "token:soar-bridge": [responder]
//! groups:                              # a group's roles and members
//!   soc-leads:
//!     roles: [approver]
//!     members: ["cert:alice", "oidc:5f1c…"]   # an OIDC token's groups count as well
//! approvals:                           # replaces the default platform approval rules
//!   - actions: [access.grant_jit]
//!     approvers: [access-approvers]
//!   - { actions: [patch.install], scheduled_exempt: true }
//! containment: [firewall.block_ip, firewall.unblock_ip, "identity.*"]   # the kill switch holds
//! ```
//!
//! Built-in roles: `reader` (read), `responder` (read, run), `approver` (read, approve),
//! `author` (read, author), `respond-admin` (read, respond-admin) and `admin` (everything).
//! Default deny: a principal no entry names, directly or through a group, may do nothing.
//! Pure: the file is read by the caller.

use std::collections::BTreeMap;

use riposte_playbooks::platform::{
    Requirement, action_matches, default_requirements, name_matches,
};
use serde::Deserialize;

use super::principal::Principal;

/// What a role lets a principal do. Each operator request needs one (see
/// [`Kind::permission`](crate::door::Kind::permission)); `admin` holds every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// See playbooks, runs, approvals, grants, alerts, rules, schedules, workers.
    Read,
    /// Start runs (of the playbooks the role names, when it names some), cancel one's own.
    Run,
    /// Decide approvals, as a member of the approver groups a step names.
    Approve,
    /// Apply playbooks, rules and schedules; pause, resume and trigger schedules.
    Author,
    /// The containment switch, repairs, revoking grants, cancelling anyone's run.
    RespondAdmin,
    /// Everything, and what only an admin may: replacing a built-in playbook, the audit log.
    Admin,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Run => "run",
            Permission::Approve => "approve",
            Permission::Author => "author",
            Permission::RespondAdmin => "respond-admin",
            Permission::Admin => "admin",
        }
    }
}

/// The roles every policy has.
const BUILTIN_ROLES: &[(&str, &[Permission])] = &[
    ("reader", &[Permission::Read]),
    ("responder", &[Permission::Read, Permission::Run]),
    ("approver", &[Permission::Read, Permission::Approve]),
    ("author", &[Permission::Read, Permission::Author]),
    (
        "respond-admin",
        &[Permission::Read, Permission::RespondAdmin],
    ),
    ("admin", &[Permission::Admin]),
];

/// The families the kill switch holds when the policy names none.
const CONTAINMENT_DEFAULT: &[&str] = &["firewall.block_ip", "firewall.unblock_ip", "identity.*"];

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    roles: BTreeMap<String, Role>,
    principals: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, Group>,
    approvals: Vec<Requirement>,
    containment: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Role {
    permissions: Vec<Permission>,
    /// Limits `run` to playbooks matching one of these (a name, or a prefix ending in `*`).
    #[serde(default)]
    playbooks: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    roles: BTreeMap<String, Role>,
    #[serde(default)]
    principals: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    groups: BTreeMap<String, Group>,
    approvals: Option<Vec<ApprovalRule>>,
    containment: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRule {
    actions: Vec<String>,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    scheduled_exempt: bool,
}

/// Why a policy file does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPolicy(String);

/// Why the policy refuses a principal a permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{principal} has no role in the operator policy")]
    Unknown { principal: String },
    #[error("{principal} may not {what}: that needs the `{permission}` permission")]
    Missing {
        principal: String,
        what: String,
        permission: &'static str,
    },
    #[error("{principal} may not run playbook `{playbook}`: its roles allow {allowed}")]
    Playbook {
        principal: String,
        playbook: String,
        allowed: String,
    },
}

/// What the policy grants one principal: its roles' permissions, the playbooks it may run,
/// and its groups (the proof's and the policy's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub roles: Vec<String>,
    pub permissions: Vec<Permission>,
    /// `None`: any playbook (when `run` is held); else the patterns of the roles holding `run`.
    pub playbooks: Option<Vec<String>>,
    pub groups: Vec<String>,
}

impl Grants {
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::Admin) || self.permissions.contains(&permission)
    }

    /// Whether it may start runs of every playbook.
    pub fn may_run_any(&self) -> bool {
        self.holds(Permission::Run)
            && (self.permissions.contains(&Permission::Admin) || self.playbooks.is_none())
    }

    /// Whether it may start runs of `playbook`.
    pub fn may_run(&self, playbook: &str) -> bool {
        if self.permissions.contains(&Permission::Admin) {
            return true;
        }
        self.holds(Permission::Run)
            && self
                .playbooks
                .as_ref()
                .is_none_or(|patterns| patterns.iter().any(|p| name_matches(p, playbook)))
    }
}

impl Default for Policy {
    /// Nobody may do anything; the default platform rules.
    fn default() -> Policy {
        Policy::parse("{}").expect("the empty policy parses")
    }
}

impl Policy {
    /// Parses a policy file's text, checking that every role it refers to exists.
    pub fn parse(text: &str) -> Result<Policy, InvalidPolicy> {
        let file: File =
            marked_yaml::from_yaml(0, text).map_err(|e| InvalidPolicy(e.to_string()))?;
        let mut roles: BTreeMap<String, Role> = BUILTIN_ROLES
            .iter()
            .map(|(name, permissions)| {
                let role = Role {
                    permissions: permissions.to_vec(),
                    playbooks: None,
                };
                (name.to_string(), role)
            })
            .collect();
        for (name, role) in file.roles {
            if roles.contains_key(&name) && BUILTIN_ROLES.iter().any(|(n, _)| *n == name) {
                return Err(InvalidPolicy(format!(
                    "role `{name}` is built in and may not be redefined"
                )));
            }
            roles.insert(name, role);
        }
        let named = file
            .principals
            .iter()
            .flat_map(|(who, r)| r.iter().map(move |r| (format!("principal `{who}`"), r)))
            .chain(
                file.groups
                    .iter()
                    .flat_map(|(g, e)| e.roles.iter().map(move |r| (format!("group `{g}`"), r))),
            );
        for (whose, role) in named {
            if !roles.contains_key(role) {
                return Err(InvalidPolicy(format!(
                    "{whose} has role `{role}`, which the policy does not define"
                )));
            }
        }
        for who in file.principals.keys().chain(
            file.groups
                .values()
                .flat_map(|g| g.members.iter())
                .collect::<Vec<_>>(),
        ) {
            if !who.contains(':') {
                return Err(InvalidPolicy(format!(
                    "principal `{who}` has no method prefix: write `cert:{who}`, \
                     `token:{who}` or `oidc:{who}`"
                )));
            }
        }
        let approvals = match file.approvals {
            Some(rules) => rules
                .into_iter()
                .map(|r| Requirement {
                    actions: r.actions,
                    approvers: r.approvers,
                    scheduled_exempt: r.scheduled_exempt,
                })
                .collect(),
            None => default_requirements(),
        };
        let containment = file
            .containment
            .unwrap_or_else(|| CONTAINMENT_DEFAULT.iter().map(|f| f.to_string()).collect());
        Ok(Policy {
            roles,
            principals: file.principals,
            groups: file.groups,
            approvals,
            containment,
        })
    }

    /// What the policy grants `principal`.
    pub fn grants(&self, principal: &Principal) -> Grants {
        let mut groups: Vec<String> = principal.groups.clone();
        groups.extend(
            self.groups
                .iter()
                .filter(|(_, g)| g.members.contains(&principal.id))
                .map(|(name, _)| name.clone()),
        );
        groups.sort();
        groups.dedup();
        let mut roles: Vec<String> = self
            .principals
            .get(&principal.id)
            .into_iter()
            .flatten()
            .chain(
                groups
                    .iter()
                    .filter_map(|g| self.groups.get(g))
                    .flat_map(|g| g.roles.iter()),
            )
            .cloned()
            .collect();
        roles.sort();
        roles.dedup();
        let mut grants = Grants {
            groups,
            ..Grants::default()
        };
        let mut patterns: Option<Vec<String>> = Some(Vec::new());
        for role in roles.iter().filter_map(|r| self.roles.get(r)) {
            grants.permissions.extend(role.permissions.iter().copied());
            if role.permissions.contains(&Permission::Run) {
                match (&mut patterns, &role.playbooks) {
                    (Some(all), Some(some)) => all.extend(some.iter().cloned()),
                    (all, None) => *all = None,
                    (None, Some(_)) => {}
                }
            }
        }
        grants.permissions.sort();
        grants.permissions.dedup();
        grants.playbooks = patterns;
        grants.roles = roles;
        grants
    }

    /// Whether `grants` (of `principal`) hold `permission` for `what` (a phrase, e.g.
    /// "cancel run 42"); why not, otherwise.
    pub fn check(
        grants: &Grants,
        principal: &Principal,
        permission: Permission,
        what: &str,
    ) -> Result<(), Denied> {
        if grants.roles.is_empty() {
            return Err(Denied::Unknown {
                principal: principal.id.clone(),
            });
        }
        match grants.holds(permission) {
            true => Ok(()),
            false => Err(Denied::Missing {
                principal: principal.id.clone(),
                what: what.to_string(),
                permission: permission.name(),
            }),
        }
    }

    /// Whether `grants` may start runs of `playbook`; why not, otherwise.
    pub fn check_run(grants: &Grants, principal: &Principal, playbook: &str) -> Result<(), Denied> {
        Policy::check(grants, principal, Permission::Run, "start runs")?;
        match grants.may_run(playbook) {
            true => Ok(()),
            false => Err(Denied::Playbook {
                principal: principal.id.clone(),
                playbook: playbook.to_string(),
                allowed: grants
                    .playbooks
                    .iter()
                    .flatten()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The platform approval rules.
    pub fn approvals(&self) -> &[Requirement] {
        &self.approvals
    }

    /// Whether the kill switch holds `action`.
    pub fn is_containment(&self, action: &str) -> bool {
        self.containment.iter().any(|f| action_matches(f, action))
    }

    /// The families the kill switch holds.
    pub fn containment(&self) -> &[String] {
        &self.containment
    }
}

#[cfg(test)]
mod tests;
