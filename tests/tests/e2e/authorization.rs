//! Who may do what, at the gRPC boundary: every operator RPC called by a principal of each
//! built-in role, by a principal the policy does not name, by an unknown token and with no
//! credentials at all, answered exactly as the policy says. The list of RPCs is read from the
//! proto file, so an RPC added without a row here fails the test.

use std::collections::BTreeSet;

use riposte_proto::v1::*;
use riposte_tests::Orchestrator;
use riposte_tests::access::Operator;
use tonic::Code;

/// Each role's principal (`token:ROLE`) and the letter the table uses for it.
const ROLES: [(char, &str); 6] = [
    ('R', "reader"),
    ('S', "responder"),
    ('P', "approver"),
    ('A', "author"),
    ('D', "respond-admin"),
    ('M', "admin"),
];

/// Every RPC of the Operator service and the roles it answers (letters of [`ROLES`]).
const TABLE: &[(&str, &str)] = &[
    ("ValidatePlaybook", "RSPADM"),
    ("ApplyPlaybook", "A----M"),
    ("ListPlaybooks", "RSPADM"),
    ("GetPlaybook", "RSPADM"),
    ("ListPlaybookVersions", "RSPADM"),
    ("SetDefaultPlaybookVersion", "A----M"),
    ("DeletePlaybookVersion", "A----M"),
    ("StartRun", "S----M"),
    ("GetRun", "RSPADM"),
    ("ListRuns", "RSPADM"),
    ("WatchRun", "RSPADM"),
    ("CancelRun", "S---DM"),
    ("ListWorkers", "RSPADM"),
    ("ListGrants", "RSPADM"),
    ("RevokeGrant", "D----M"),
    ("ListApprovals", "RSPADM"),
    ("Decide", "P----M"),
    ("RetryStep", "D----M"),
    ("SkipStep", "D----M"),
    ("ResumeRun", "D----M"),
    ("PauseContainment", "D----M"),
    ("ResumeContainment", "D----M"),
    ("GetContainment", "RSPADM"),
    ("ApplySchedule", "A----M"),
    ("ListSchedules", "RSPADM"),
    ("GetScheduleHistory", "RSPADM"),
    ("TriggerSchedule", "A----M"),
    ("PauseSchedule", "A----M"),
    ("ResumeSchedule", "A----M"),
    ("DeleteSchedule", "A----M"),
    ("IngestAlert", "S----M"),
    ("ListAlerts", "RSPADM"),
    ("GetAlert", "RSPADM"),
    ("ListAlertSources", "RSPADM"),
    ("ApplyRule", "A----M"),
    ("ListRules", "RSPADM"),
    ("GetRule", "RSPADM"),
    ("SetRuleEnabled", "A----M"),
    ("DeleteRule", "A----M"),
    ("TestRules", "RSPADM"),
    ("WhoAmI", "RSPADM"),
    ("ListAudit", "-----M"),
    ("VerifyAudit", "-----M"),
];

/// The RPCs of `service Operator` in the proto file.
fn operator_rpcs() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto/riposte.proto");
    let proto = std::fs::read_to_string(path).expect("the proto file");
    let service = proto
        .split("service Operator {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("service Operator");
    service
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .map(|rest| rest.split('(').next().unwrap_or_default().to_string())
        .collect()
}

/// Calls `rpc` with a request that names nothing that exists (or an empty one); the code it
/// answers, `None` for OK.
async fn call(client: &mut Operator, rpc: &str) -> Option<Code> {
    let run_id = "01a23c8b-c13f-727f-9498-9af16c3564e9".to_string();
    let result = match rpc {
        "ValidatePlaybook" => client
            .validate_playbook(ValidatePlaybookRequest::default())
            .await
            .map(drop),
        "ApplyPlaybook" => client
            .apply_playbook(ApplyPlaybookRequest::default())
            .await
            .map(drop),
        "ListPlaybooks" => client
            .list_playbooks(ListPlaybooksRequest::default())
            .await
            .map(drop),
        "GetPlaybook" => client
            .get_playbook(GetPlaybookRequest {
                name: "nope".into(),
                version: 0,
            })
            .await
            .map(drop),
        "StartRun" => client
            .start_run(StartRunRequest {
                playbook: "nope".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetRun" => client
            .get_run(GetRunRequest {
                run_id: run_id.clone(),
            })
            .await
            .map(drop),
        "ListRuns" => client.list_runs(ListRunsRequest::default()).await.map(drop),
        "WatchRun" => client
            .watch_run(WatchRunRequest {
                run_id: run_id.clone(),
            })
            .await
            .map(drop),
        "CancelRun" => client
            .cancel_run(CancelRunRequest {
                run_id: run_id.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListWorkers" => client
            .list_workers(ListWorkersRequest::default())
            .await
            .map(drop),
        "ListGrants" => client
            .list_grants(ListGrantsRequest::default())
            .await
            .map(drop),
        "RevokeGrant" => client
            .revoke_grant(RevokeGrantRequest {
                run_id: run_id.clone(),
                step_id: "s".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListApprovals" => client
            .list_approvals(ListApprovalsRequest::default())
            .await
            .map(drop),
        "Decide" => client
            .decide(DecideRequest {
                run_id: run_id.clone(),
                step_id: "s".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "RetryStep" | "SkipStep" | "ResumeRun" => {
            let request = RepairRequest {
                run_id: run_id.clone(),
                step_id: "s".into(),
                ..Default::default()
            };
            match rpc {
                "RetryStep" => client.retry_step(request).await.map(drop),
                "SkipStep" => client.skip_step(request).await.map(drop),
                _ => client.resume_run(request).await.map(drop),
            }
        }
        "PauseContainment" => client
            .pause_containment(ContainmentRequest::default())
            .await
            .map(drop),
        "ResumeContainment" => client
            .resume_containment(ContainmentRequest::default())
            .await
            .map(drop),
        "GetContainment" => client
            .get_containment(GetContainmentRequest::default())
            .await
            .map(drop),
        "ApplySchedule" => client
            .apply_schedule(ApplyScheduleRequest::default())
            .await
            .map(drop),
        "ListSchedules" => client
            .list_schedules(ListSchedulesRequest::default())
            .await
            .map(drop),
        "GetScheduleHistory" => client
            .get_schedule_history(GetScheduleHistoryRequest {
                name: "nope".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "TriggerSchedule" => client
            .trigger_schedule(TriggerScheduleRequest {
                name: "nope".into(),
            })
            .await
            .map(drop),
        "PauseSchedule" | "ResumeSchedule" => {
            let request = PauseScheduleRequest {
                name: "nope".into(),
                ..Default::default()
            };
            match rpc {
                "PauseSchedule" => client.pause_schedule(request).await.map(drop),
                _ => client.resume_schedule(request).await.map(drop),
            }
        }
        "IngestAlert" => client
            .ingest_alert(IngestAlertRequest {
                source: "generic".into(),
                payload: b"not json".to_vec(),
            })
            .await
            .map(drop),
        "ListAlerts" => client
            .list_alerts(ListAlertsRequest::default())
            .await
            .map(drop),
        "GetAlert" => client
            .get_alert(GetAlertRequest { id: run_id.clone() })
            .await
            .map(drop),
        "ListAlertSources" => client
            .list_alert_sources(ListAlertSourcesRequest {})
            .await
            .map(drop),
        "ApplyRule" => client
            .apply_rule(ApplyRuleRequest::default())
            .await
            .map(drop),
        "ListRules" => client
            .list_rules(ListRulesRequest::default())
            .await
            .map(drop),
        "GetRule" => client.get_rule(GetRuleRequest::default()).await.map(drop),
        "ListPlaybookVersions" => client
            .list_playbook_versions(ListPlaybookVersionsRequest::default())
            .await
            .map(drop),
        "SetDefaultPlaybookVersion" => client
            .set_default_playbook_version(SetDefaultPlaybookVersionRequest::default())
            .await
            .map(drop),
        "DeletePlaybookVersion" => client
            .delete_playbook_version(DeletePlaybookVersionRequest::default())
            .await
            .map(drop),
        "SetRuleEnabled" => client
            .set_rule_enabled(SetRuleEnabledRequest::default())
            .await
            .map(drop),
        "DeleteRule" => client
            .delete_rule(DeleteRuleRequest::default())
            .await
            .map(drop),
        "TestRules" => client
            .test_rules(TestRulesRequest::default())
            .await
            .map(drop),
        "DeleteSchedule" => client
            .delete_schedule(DeleteScheduleRequest::default())
            .await
            .map(drop),
        "WhoAmI" => client.who_am_i(WhoAmIRequest::default()).await.map(drop),
        "ListAudit" => client
            .list_audit(ListAuditRequest::default())
            .await
            .map(drop),
        "VerifyAudit" => client
            .verify_audit(VerifyAuditRequest::default())
            .await
            .map(drop),
        other => panic!("no call for {other}: add one, and a row to TABLE"),
    };
    result.err().map(|status| status.code())
}

#[tokio::test]
async fn every_operator_rpc_answers_each_role_exactly_as_the_policy_says() {
    let rpcs = operator_rpcs();
    let listed: BTreeSet<String> = TABLE.iter().map(|(rpc, _)| rpc.to_string()).collect();
    assert_eq!(
        rpcs, listed,
        "every RPC of the Operator service has a row, and only those"
    );
    let mut builder = Orchestrator::builder().principal("nobody", &[]);
    for (_, role) in ROLES {
        builder = builder.principal(role, &[role]);
    }
    let orchestrator = builder.start();
    let mut failures = Vec::new();
    for (rpc, allowed) in TABLE {
        for (letter, role) in ROLES {
            let code = call(&mut orchestrator.client_as(role), rpc).await;
            // Allowed: anything but a refusal of who is asking (the requests name nothing that
            // exists, so NOT_FOUND and the like are answers); denied: PERMISSION_DENIED.
            let answered = match allowed.contains(letter) {
                true => !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
                false => code == Some(Code::PermissionDenied),
            };
            if !answered {
                failures.push(format!("{rpc} as {role}: {code:?}"));
            }
        }
        for (who, mut client, expected) in [
            (
                "no credentials",
                orchestrator.client_anonymous(),
                Code::Unauthenticated,
            ),
            (
                "an unknown token",
                orchestrator.client_as("mallory"),
                Code::Unauthenticated,
            ),
            (
                "a principal without roles",
                orchestrator.client_as("nobody"),
                Code::PermissionDenied,
            ),
        ] {
            let code = call(&mut client, rpc).await;
            if code != Some(expected) {
                failures.push(format!("{rpc} with {who}: {code:?}, not {expected:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Every refusal is in the audit log, with who and what.
    let audit = orchestrator
        .cli(&[
            "--output",
            "json",
            "audit",
            "list",
            "--outcome",
            "refused",
            "--all",
        ])
        .await;
    assert_eq!(audit.code(), 0, "{audit}");
    let records = audit.json();
    let records = records.as_array().expect("a list");
    let refused_by = |principal: &str, action: &str| {
        records
            .iter()
            .any(|r| r["principal"] == principal && r["action"] == action)
    };
    assert!(refused_by("token:reader", "run.start"), "{records:#?}");
    assert!(refused_by("token:nobody", "run.get"), "{records:#?}");
    assert!(
        refused_by("unauthenticated", "audit.verify"),
        "{records:#?}"
    );
    let verified = orchestrator.cli(&["audit", "verify"]).await;
    assert_eq!(verified.code(), 0, "{verified}");
    assert!(verified.stdout.starts_with("intact: "), "{verified}");
}
