//! The platform's approval rules, which stand above every playbook: an action family that
//! "always needs approval" may run only behind an approval, whatever the playbook's author
//! wrote. Pure: the rules come from the orchestrator's policy file, and [`unmet`] checks one
//! compiled playbook against them (at apply, and again at each start, so that a playbook
//! stored before a rule existed cannot run around it).
//!
//! A step whose action a rule names is gated when the step itself carries an `approval`, or
//! when one of the steps it needs (directly or not) is an approval step or carries one: a
//! skipped approval step skips what needs it, so no path reaches the action without a
//! decision. The approval must be decided by one of the rule's groups (any group when the
//! rule names none) and must reject on timeout. Undo actions are not checked: they restore.

use crate::{ApprovalOutcome, Diagnostic, Playbook};

/// One rule: the actions it covers, who must approve them, and whether runs a schedule
/// started are exempt (patching inside its maintenance window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Actions, `family.*` patterns, or `*`.
    pub actions: Vec<String>,
    /// Approver groups of which one must decide; empty: any approval counts.
    pub approvers: Vec<String>,
    /// Runs started by a schedule need no approval.
    pub scheduled_exempt: bool,
}

/// The rules when the policy states none: granting access, changing an identity, lifting a
/// block, and installing patches outside a schedule.
pub fn default_requirements() -> Vec<Requirement> {
    let rule = |actions: &[&str], scheduled_exempt| Requirement {
        actions: actions.iter().map(|a| a.to_string()).collect(),
        approvers: Vec::new(),
        scheduled_exempt,
    };
    vec![
        rule(
            &["access.grant_jit", "identity.*", "firewall.unblock_ip"],
            false,
        ),
        rule(&["patch.install"], true),
    ]
}

/// `pattern` is a name, a prefix ending in `*`, or `*` (playbooks a role may run, worker
/// identities, label values).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// `firewall.*` matches `firewall.block_ip`; `*` matches everything; else the exact action.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(family) => action
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == "*" || pattern == action,
    }
}

/// Every step of `playbook` a rule covers that no fitting approval gates, as diagnostics; a
/// run started by a schedule (`scheduled`) skips the rules that exempt it.
pub fn unmet(playbook: &Playbook, rules: &[Requirement], scheduled: bool) -> Vec<Diagnostic> {
    // Every start checks its playbook: the steps' ancestors are worked out only for a
    // playbook that runs a covered action at all.
    let mut ancestors = None;
    let mut unmet = Vec::new();
    for (index, step) in playbook.steps.iter().enumerate() {
        if step.action.is_empty() {
            continue;
        }
        for rule in rules {
            if (scheduled && rule.scheduled_exempt)
                || !rule.actions.iter().any(|p| action_matches(p, &step.action))
            {
                continue;
            }
            let ancestors = ancestors.get_or_insert_with(|| {
                let needs: Vec<Vec<usize>> =
                    playbook.steps.iter().map(|s| s.needs.clone()).collect();
                crate::graph::ancestors(&needs)
            });
            let gates = std::iter::once(index).chain(ancestors[index].iter().copied());
            let gated = gates
                .filter_map(|i| playbook.steps[i].approval.as_ref())
                .any(|approval| {
                    approval.on_timeout == ApprovalOutcome::Reject
                        && (rule.approvers.is_empty()
                            || approval
                                .approvers
                                .iter()
                                .any(|g| rule.approvers.contains(g)))
                });
            if !gated {
                let by = match rule.approvers.is_empty() {
                    true => "an approval".to_string(),
                    false => format!("an approval by {}", rule.approvers.join(" or ")),
                };
                let exempt = match rule.scheduled_exempt {
                    true => " unless a schedule starts the run",
                    false => "",
                };
                unmet.push(Diagnostic {
                    message: format!(
                        "step `{}` runs `{}`, which the platform policy lets run only behind \
                         {by} that rejects on timeout{exempt}: add `approval:` to the step or \
                         to a step it needs",
                        step.id, step.action
                    ),
                    path: format!("steps[{index}]"),
                    line: 0,
                    column: 0,
                });
                break;
            }
        }
    }
    unmet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> Playbook {
        crate::compile(source).unwrap_or_else(|d| panic!("{d:?}"))
    }

    const BARE: &str = "
name: bare
version: 1
steps:
  - id: open
    action: access.grant_jit
    with: { source_ip: 203.0.113.7, port: 22, ttl: 8h }
";

    const GATED: &str = "
name: gated
version: 1
steps:
  - id: ok
    approval: { approvers: [access-approvers], timeout: 30m }
  - id: open
    needs: [ok]
    action: access.grant_jit
    with: { source_ip: 203.0.113.7, port: 22, ttl: 8h }
";

    #[test]
    fn a_bare_covered_action_is_unmet_and_an_approval_before_it_meets_the_rule() {
        let unmet_bare = unmet(&compile(BARE), &default_requirements(), false);
        assert_eq!(unmet_bare.len(), 1);
        assert!(
            unmet_bare[0]
                .message
                .starts_with("step `open` runs `access.grant_jit`"),
            "{}",
            unmet_bare[0].message
        );
        assert!(unmet(&compile(GATED), &default_requirements(), false).is_empty());
    }

    #[test]
    fn a_rule_naming_groups_wants_one_of_them_and_a_schedule_may_be_exempt() {
        let leads = [Requirement {
            actions: vec!["access.*".into()],
            approvers: vec!["soc-leads".into()],
            scheduled_exempt: true,
        }];
        assert_eq!(unmet(&compile(GATED), &leads, false).len(), 1);
        assert!(unmet(&compile(BARE), &leads, true).is_empty());
        let approve_on_timeout = GATED.replace(
            "approvers: [access-approvers]",
            "approvers: [access-approvers], on_timeout: approve",
        );
        assert_eq!(
            unmet(
                &compile(&approve_on_timeout),
                &default_requirements(),
                false
            )
            .len(),
            1
        );
    }

    #[test]
    fn families_match_by_prefix_and_dot() {
        assert!(action_matches("identity.*", "identity.disable_account"));
        assert!(!action_matches("identity.*", "identityx.disable"));
        assert!(action_matches("*", "core.noop"));
        assert!(!action_matches("firewall.block_ip", "firewall.unblock_ip"));
    }
}
