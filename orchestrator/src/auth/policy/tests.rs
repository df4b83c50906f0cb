//! The operator policy: roles from principals and groups, run limits, default deny, the
//! platform rules and what a policy file may not say.

use super::*;
use crate::auth::Method;

const POLICY: &str = "
roles:
  analyst: { permissions: [read, run], playbooks: [ip-block, 'account-*'] }
principals:
  'cert:admin': [admin]
  'token:ci': [analyst]
groups:
  soc-leads:
    roles: [approver]
    members: ['cert:alice', 'cert:bob']
  entra-responders:
    roles: [responder]
";

fn principal(id: &str) -> Principal {
    let (method, name) = id.split_once(':').unwrap();
    let method = match method {
        "cert" => Method::Certificate,
        "token" => Method::Token,
        _ => Method::Oidc,
    };
    Principal::new(method, name)
}

#[test]
fn roles_come_from_the_principal_and_its_groups() {
    let policy = Policy::parse(POLICY).unwrap();
    let alice = policy.grants(&principal("cert:alice"));
    assert_eq!(alice.roles, ["approver"]);
    assert_eq!(alice.groups, ["soc-leads"]);
    assert!(alice.holds(Permission::Approve) && !alice.holds(Permission::Run));
    let admin = policy.grants(&principal("cert:admin"));
    assert!(admin.holds(Permission::RespondAdmin) && admin.may_run("anything"));
    // A group an OIDC token carries counts like one the policy lists.
    let mut carol = principal("oidc:5f1c");
    carol.groups = vec!["entra-responders".into()];
    let carol = policy.grants(&carol);
    assert!(carol.may_run("patch-deployment"));
    assert!(!carol.holds(Permission::Approve));
}

#[test]
fn run_is_limited_to_the_roles_playbooks() {
    let policy = Policy::parse(POLICY).unwrap();
    let ci = principal("token:ci");
    let grants = policy.grants(&ci);
    assert!(grants.may_run("ip-block") && grants.may_run("account-disable"));
    assert!(!grants.may_run("jit-access-grant"));
    assert_eq!(
        Policy::check_run(&grants, &ci, "jit-access-grant")
            .unwrap_err()
            .to_string(),
        "token:ci may not run playbook `jit-access-grant`: its roles allow `ip-block`, `account-*`"
    );
}

#[test]
fn unknown_principals_get_nothing() {
    let policy = Policy::parse(POLICY).unwrap();
    let mallory = principal("cert:mallory");
    let grants = policy.grants(&mallory);
    assert!(grants.roles.is_empty() && grants.permissions.is_empty() && grants.groups.is_empty());
    assert_eq!(
        Policy::check(&grants, &mallory, Permission::Read, "read runs")
            .unwrap_err()
            .to_string(),
        "cert:mallory has no role in the operator policy"
    );
    // A name without its method cannot be confused with another method's principal.
    assert!(policy.grants(&principal("token:admin")).roles.is_empty());
    assert!(
        Policy::default()
            .grants(&principal("cert:admin"))
            .roles
            .is_empty()
    );
}

#[test]
fn a_policy_that_names_what_does_not_exist_is_refused() {
    let refused = |text: &str| Policy::parse(text).unwrap_err().to_string();
    assert_eq!(
        refused("principals: {'cert:a': [wizard]}"),
        "principal `cert:a` has role `wizard`, which the policy does not define"
    );
    assert!(refused("principals: {alice: [admin]}").contains("no method prefix"));
    assert!(refused("roles: {admin: {permissions: [read]}}").contains("built in"));
    assert!(refused("roles: {x: {permissions: [fly]}}").contains("fly"));
    assert!(refused("rolez: {}").contains("rolez"));
}

#[test]
fn the_platform_rules_default_and_can_be_replaced() {
    let default = Policy::default();
    assert!(default.is_containment("firewall.unblock_ip"));
    assert!(default.is_containment("identity.enable_account"));
    assert!(!default.is_containment("firewall.list_blocked"));
    assert_eq!(default.approvals().len(), 2);
    let custom = Policy::parse(
        "approvals: [{actions: [access.grant_jit], approvers: [access-approvers]}]\n\
         containment: ['firewall.*']",
    )
    .unwrap();
    assert_eq!(custom.approvals()[0].approvers, ["access-approvers"]);
    assert!(custom.is_containment("firewall.list_blocked"));
    assert!(!custom.is_containment("identity.disable_account"));
}
