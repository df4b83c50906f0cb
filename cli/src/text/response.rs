//! Text forms of the response views: open grants, pending approvals and decisions, the kill
//! switch.

use super::*;

/// What is about to be decided, for stderr: `approving DIGEST: INPUT` with the input as one
/// line of JSON.
pub fn deciding(approve: bool, approval: &PendingApproval) -> String {
    let verb = if approve { "approving" } else { "rejecting" };
    let input = serde_json::from_str::<Value>(&approval.input_json)
        .map_or_else(|_| approval.input_json.clone(), |input| input.to_string());
    format!("{verb} {}: {input}", approval.digest)
}

/// The outcome of a decision: `approved step STEP of run ID: step STATUS, run STATUS`.
pub fn decided(run: &Run, step_id: &str, approve: bool) -> String {
    let verb = if approve { "approved" } else { "rejected" };
    let run_status = status(run);
    match run.steps.iter().find(|step| step.id == step_id) {
        Some(step) => format!(
            "{verb} step {step_id} of run {}: step {}, run {run_status}",
            run.run_id,
            display::step_status(step.status())
        ),
        None => format!(
            "{verb} step {step_id} of run {}: run {run_status}",
            run.run_id
        ),
    }
}

/// The grant list.
pub fn grants(grants: &[GrantInfo], now_ms: i64) -> Vec<String> {
    let mut rows = table(&[
        "RUN", "PLAYBOOK", "STEP", "ITEM", "SUBJECT", "STATUS", "OPENED", "EXPIRES", "REVOKE",
    ]);
    for grant in grants {
        rows.add_row(vec![
            grant.run_id.clone(),
            grant.playbook.clone(),
            grant.step_id.clone(),
            grant.item.to_string(),
            or_none(&grant.subject),
            grant_status(grant),
            display::relative(grant.opened_at_ms, now_ms).unwrap_or_else(|| NONE.to_string()),
            display::relative(grant.expires_at_ms, now_ms).unwrap_or_else(|| "never".to_string()),
            or_none(&grant.revoke_action),
        ]);
    }
    lines(&rows)
}

/// One grant after a revocation request:
/// `grant run ID step STEP item N (subject S): STATUS`.
pub fn grant(grant: &GrantInfo) -> String {
    let mut line = format!(
        "grant run {} step {} item {}",
        grant.run_id, grant.step_id, grant.item
    );
    if !grant.subject.is_empty() {
        line.push_str(&format!(" (subject {})", grant.subject));
    }
    line.push_str(": ");
    line.push_str(&grant_status(grant));
    line
}

/// A grant's status, with why its revoke failed.
pub(super) fn grant_status(grant: &GrantInfo) -> String {
    if grant.error.is_empty() {
        grant.status.clone()
    } else {
        format!("{}: {}", grant.status, grant.error)
    }
}

/// The pending approvals, one block each: where it is, who may decide, what was decided, until
/// when, the digest, and the input exactly as it would be acted on.
pub fn approvals(approvals: &[PendingApproval], now_ms: i64) -> Vec<String> {
    if approvals.is_empty() {
        return vec!["no step is waiting for a decision".to_string()];
    }
    let mut out = Vec::new();
    for approval in approvals {
        out.extend(self::approval(approval, now_ms));
        out.push(String::new());
    }
    out.push(
        "decide with `riposte approve RUN_ID STEP` (approve) or `riposte approve RUN_ID STEP \
         --reject`"
            .to_string(),
    );
    out
}

pub(super) fn approval(approval: &PendingApproval, now_ms: i64) -> Vec<String> {
    let action = if approval.action.is_empty() {
        "- (approval step: the run's parameters)".to_string()
    } else {
        approval.action.clone()
    };
    let mut header = vec![
        ("run", approval.run_id.clone()),
        ("playbook", approval.playbook.clone()),
        ("step", approval.step_id.clone()),
        ("action", action),
        ("requested by", or_none(&approval.requested_by)),
        ("approvers", approvers(approval)),
    ];
    if approval.decisions.is_empty() {
        header.push(("decisions", "none yet".to_string()));
    }
    for decision in &approval.decisions {
        header.push((
            "decision",
            self::decision(decision, &approval.digest, now_ms),
        ));
    }
    let expires = if approval.expires_at_ms > 0 {
        let mut expires = instant(approval.expires_at_ms, now_ms);
        if !approval.on_timeout.is_empty() {
            expires.push_str(&format!(", then {}", approval.on_timeout));
        }
        expires
    } else {
        "never".to_string()
    };
    header.extend([
        ("expires", expires),
        ("digest", approval.digest.clone()),
        ("input", String::new()),
    ]);
    let mut out = fields(&header);
    out.extend(
        pretty_json(&approval.input_json)
            .lines()
            .map(|line| format!("  {line}")),
    );
    out
}

/// `secops, netops (2 approvals needed)`.
pub(super) fn approvers(approval: &PendingApproval) -> String {
    let groups = or_none(&approval.approvers.join(", "));
    let noun = if approval.min == 1 {
        "approval"
    } else {
        "approvals"
    };
    format!("{groups} ({} {noun} needed)", approval.min)
}

/// `carol approved 3m ago: looks right`; a decision about other inputs says so.
pub(super) fn decision(decision: &Decision, digest: &str, now_ms: i64) -> String {
    let verb = if decision.approve {
        "approved"
    } else {
        "rejected"
    };
    let mut line = format!("{} {verb}", decision.who);
    if let Some(when) = display::relative(decision.at_ms, now_ms) {
        line.push(' ');
        line.push_str(&when);
    }
    if !decision.digest.is_empty() && decision.digest != digest {
        line.push_str(&format!(" (for other inputs, digest {})", decision.digest));
    }
    if !decision.comment.is_empty() {
        line.push_str(": ");
        line.push_str(&decision.comment);
    }
    line
}

/// The kill switch: paused or not, by whom, since when, why, and what it holds.
pub fn containment(status: &ContainmentStatus, now_ms: i64) -> Vec<String> {
    let state = if status.paused {
        "paused: no containment task is handed to a worker"
    } else {
        "running"
    };
    let mut header = vec![("containment", state.to_string())];
    if !status.changed_by.is_empty() {
        let verb = if status.paused {
            "paused by"
        } else {
            "resumed by"
        };
        header.push((verb, status.changed_by.clone()));
        header.push(("since", instant(status.changed_at_ms, now_ms)));
        header.push(("reason", or_none(&status.reason)));
    }
    header.push(("tasks held", status.tasks_held.to_string()));
    fields(&header)
}
