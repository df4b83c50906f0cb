//! Helpers for the response semantics: grants, approvals, concurrency keys, rollouts, repair
//! verbs and durable timers, seen through the operator API the way an operator's script sees
//! them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use riposte_proto::v1::{
    DecideRequest, GetRunRequest, GrantInfo, ListApprovalsRequest, ListGrantsRequest,
    PendingApproval, RepairRequest, RevokeGrantRequest, Run, RunEvent, RunStatus, StartRunRequest,
    StepStatus,
};
use serde_json::Value;
use tonic::{Code, Status};

use crate::access::as_principal;
use crate::api::{self, Operator};
use crate::wait::{wait_for, wait_until};

/// Milliseconds since the Unix epoch, the clock of history entries, grants and timers.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

/// Waits until the wall clock has passed `at_ms` (a condition on the clock, for a timer that
/// must fall due while the orchestrator is down).
pub async fn wait_wall_clock_past(at_ms: i64) {
    let timeout = Duration::from_millis(u64::try_from(at_ms - now_ms()).unwrap_or(0) + 5_000);
    wait_until(
        &format!("the wall clock passes {at_ms} ms"),
        timeout,
        async || now_ms() > at_ms,
    )
    .await;
}

/// Starts a run as principal `token:REQUESTED_BY`; panics when refused. The run may be
/// running, queued or already ended (a dropped run).
pub async fn start_run_as(
    client: &mut Operator,
    playbook: &str,
    params: Value,
    requested_by: &str,
) -> Run {
    let request = StartRunRequest {
        playbook: playbook.into(),
        params_json: params.to_string(),
        ..Default::default()
    };
    client
        .start_run(as_principal(request, requested_by))
        .await
        .unwrap_or_else(|status| panic!("StartRun as {requested_by} refused: {status:?}"))
        .into_inner()
        .run
        .expect("StartRun answers the run")
}

/// Polls GetRun until `accept` holds for the run; transport errors (a restart) count as "not
/// yet".
pub async fn wait_run(
    client: &mut Operator,
    run_id: &str,
    what: &str,
    timeout: Duration,
    accept: impl Fn(&Run) -> bool,
) -> Run {
    wait_for(&format!("run {run_id}: {what}"), timeout, async || {
        let request = GetRunRequest {
            run_id: run_id.into(),
        };
        match client.get_run(request).await {
            Ok(reply) if accept(reply.get_ref()) => Ok(reply.into_inner()),
            Ok(reply) => Err(format!(
                "{} phase {:?}",
                api::describe(reply.get_ref()),
                reply.get_ref().phase
            )),
            Err(status) => Err(format!("GetRun: {status}")),
        }
    })
    .await
}

/// Waits until the run has ended: succeeded, failed or cancelled (not queued, not halted).
pub async fn wait_ended(client: &mut Operator, run_id: &str, timeout: Duration) -> Run {
    wait_run(client, run_id, "ends", timeout, |run| {
        matches!(
            run.status(),
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    })
    .await
}

/// Waits until the run has `status`.
pub async fn wait_status(
    client: &mut Operator,
    run_id: &str,
    status: RunStatus,
    timeout: Duration,
) -> Run {
    wait_run(client, run_id, &format!("is {status:?}"), timeout, |run| {
        run.status() == status
    })
    .await
}

/// Waits until step `step` of the run has `status`.
pub async fn wait_step(
    client: &mut Operator,
    run_id: &str,
    step: &str,
    status: StepStatus,
    timeout: Duration,
) -> Run {
    wait_run(
        client,
        run_id,
        &format!("step {step} is {status:?}"),
        timeout,
        |run| {
            run.steps
                .iter()
                .any(|s| s.id == step && s.status() == status)
        },
    )
    .await
}

/// Every grant ListGrants shows now.
pub async fn grants(client: &mut Operator) -> Vec<GrantInfo> {
    client
        .list_grants(ListGrantsRequest {})
        .await
        .unwrap_or_else(|status| panic!("ListGrants: {status:?}"))
        .into_inner()
        .grants
}

/// The grants of one run.
pub async fn grants_of(client: &mut Operator, run_id: &str) -> Vec<GrantInfo> {
    grants(client)
        .await
        .into_iter()
        .filter(|g| g.run_id == run_id)
        .collect()
}

/// Waits until ListGrants shows the grant of `step` (item 0) of the run with status `status`.
pub async fn wait_grant(
    client: &mut Operator,
    run_id: &str,
    step: &str,
    status: &str,
    timeout: Duration,
) -> GrantInfo {
    wait_for(
        &format!("run {run_id} step {step} has a grant {status}"),
        timeout,
        async || {
            let grants = match client.list_grants(ListGrantsRequest {}).await {
                Ok(reply) => reply.into_inner().grants,
                Err(status) => return Err(format!("ListGrants: {status}")),
            };
            match grants
                .iter()
                .find(|g| g.run_id == run_id && g.step_id == step && g.item == 0)
            {
                Some(grant) if grant.status == status => Ok(grant.clone()),
                _ => Err(format!("{grants:?}")),
            }
        },
    )
    .await
}

/// RevokeGrant of `step` (item 0) of the run, as principal `token:WHO`.
pub async fn revoke_grant(
    client: &mut Operator,
    run_id: &str,
    step: &str,
    who: &str,
) -> Result<GrantInfo, Status> {
    let request = RevokeGrantRequest {
        run_id: run_id.into(),
        step_id: step.into(),
        item: 0,
        reason: "incident closed".into(),
    };
    client
        .revoke_grant(as_principal(request, who))
        .await
        .map(tonic::Response::into_inner)
}

/// Every approval ListApprovals shows now.
pub async fn approvals(client: &mut Operator) -> Vec<PendingApproval> {
    client
        .list_approvals(ListApprovalsRequest {})
        .await
        .unwrap_or_else(|status| panic!("ListApprovals: {status:?}"))
        .into_inner()
        .approvals
}

/// Waits until ListApprovals shows step `step` of the run waiting for a decision.
pub async fn wait_approval(
    client: &mut Operator,
    run_id: &str,
    step: &str,
    timeout: Duration,
) -> PendingApproval {
    wait_for(
        &format!("run {run_id} step {step} waits for a decision"),
        timeout,
        async || {
            let approvals = match client.list_approvals(ListApprovalsRequest {}).await {
                Ok(reply) => reply.into_inner().approvals,
                Err(status) => return Err(format!("ListApprovals: {status}")),
            };
            approvals
                .iter()
                .find(|a| a.run_id == run_id && a.step_id == step)
                .cloned()
                .ok_or_else(|| format!("{approvals:?}"))
        },
    )
    .await
}

/// The approval of `step` of the run as ListApprovals shows it now, if it is listed.
pub async fn approval_of(
    client: &mut Operator,
    run_id: &str,
    step: &str,
) -> Option<PendingApproval> {
    approvals(client)
        .await
        .into_iter()
        .find(|a| a.run_id == run_id && a.step_id == step)
}

/// Decide on `step` of the run as principal `token:WHO`, for the inputs with `digest`.
pub async fn decide(
    client: &mut Operator,
    run_id: &str,
    step: &str,
    approve: bool,
    digest: &str,
    who: &str,
) -> Result<Run, Status> {
    let request = DecideRequest {
        run_id: run_id.into(),
        step_id: step.into(),
        approve,
        digest: digest.into(),
        comment: format!("decided by {who}"),
    };
    client
        .decide(as_principal(request, who))
        .await
        .map(tonic::Response::into_inner)
}

/// A repair request on `step` of the run (`""` for the run), by principal `token:WHO`.
pub fn repair(run_id: &str, step: &str, who: &str) -> tonic::Request<RepairRequest> {
    let request = RepairRequest {
        run_id: run_id.into(),
        step_id: step.into(),
        reason: "operator repair".into(),
    };
    as_principal(request, who)
}

/// Asserts that `result` is an error with `code` whose message contains every one of
/// `fragments`; `what` names the request in the panic message.
pub fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Status>,
    code: Code,
    fragments: &[&str],
) -> Status {
    let status = match result {
        Ok(answer) => {
            panic!("{what} must be refused with {code:?}, but it was accepted: {answer:?}")
        }
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    for fragment in fragments {
        assert!(
            status.message().contains(fragment),
            "{what}: the message must contain {fragment:?}: {:?}",
            status.message()
        );
    }
    status
}

/// The events of `kind`.
pub fn of_kind<'a>(events: &'a [RunEvent], kind: &str) -> Vec<&'a RunEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

/// The events of `kind` about step `step`.
pub fn of_step<'a>(events: &'a [RunEvent], kind: &str, step: &str) -> Vec<&'a RunEvent> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.step_id == step)
        .collect()
}

/// The first event of `kind`; panics with the history's kinds when there is none.
pub fn first<'a>(events: &'a [RunEvent], kind: &str) -> &'a RunEvent {
    events
        .iter()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no `{kind}` event in {:?}", api::kinds(events)))
}

/// The history as `kind step` lines, for failure messages.
pub fn lines(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut line = format!("{} {}", e.at_ms, e.kind);
            if !e.step_id.is_empty() {
                line.push_str(&format!(" {}[{}]", e.step_id, e.item));
            }
            if !e.message.is_empty() {
                line.push_str(&format!(": {}", e.message));
            }
            line
        })
        .collect()
}
