//! The Operator service: each handler translates its wire request into a door request and the
//! reply back, nothing else.

use std::sync::Arc;

use riposte_proto::v1 as pb;
use riposte_proto::v1::operator_server::Operator;
use riposte_scheduler::{DecisionRequest, Repair};
use serde_json::Value;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{NAME_BYTES_MAX, bounded, non_empty, or_default, parse_run_id, status};
use crate::auth::Authenticator;
use crate::convert;
use crate::door::{Caller, Node, alerts, containment, playbooks, runs, schedules};
use crate::engine::{StartRequest, limits};
use crate::store::RunFilter;

/// Longest alert source name accepted, in bytes.
pub(super) const ALERT_SOURCE_BYTES_MAX: usize = 64;

/// Largest schedule source accepted.
const SCHEDULE_SOURCE_BYTES_MAX: usize = riposte_playbooks::schedule::limits::SOURCE_BYTES_MAX;

/// The service: the door, and what turns an operator's credentials into a principal.
pub struct OperatorApi(pub Arc<Node>, pub Arc<Authenticator>);

type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

fn run(view: &runs::RunView) -> pb::Run {
    convert::run(&view.state, &view.playbook, &view.waiting)
}

fn containment(view: &containment::ContainmentView) -> pb::ContainmentStatus {
    convert::containment(&view.state, view.held)
}

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn validate_playbook(
        &self,
        request: Request<pb::ValidatePlaybookRequest>,
    ) -> Result<Response<pb::ValidatePlaybookResponse>, Status> {
        let caller = self.caller(&request).await;
        let source = request.into_inner().source;
        let validate = playbooks::ValidatePlaybook {
            source: source.clone(),
        };
        let response = match self.0.handle(caller, validate).await.map_err(status)? {
            Ok(compiled) => pb::ValidatePlaybookResponse {
                diagnostics: vec![],
                playbook: Some(convert::playbook(&compiled, None, &source)),
            },
            Err(diagnostics) => pb::ValidatePlaybookResponse {
                diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
                playbook: None,
            },
        };
        Ok(Response::new(response))
    }

    async fn apply_playbook(
        &self,
        request: Request<pb::ApplyPlaybookRequest>,
    ) -> Result<Response<pb::ApplyPlaybookResponse>, Status> {
        let caller = self.caller(&request).await;
        let source = request.into_inner().source;
        let applied = self
            .0
            .handle(caller, playbooks::ApplyPlaybook { source })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ApplyPlaybookResponse {
            name: applied.playbook.name.clone(),
            version: applied.playbook.version,
            unchanged: applied.unchanged,
        }))
    }

    async fn list_playbooks(
        &self,
        request: Request<pb::ListPlaybooksRequest>,
    ) -> Result<Response<pb::ListPlaybooksResponse>, Status> {
        self.list_playbooks_impl(request).await
    }

    async fn get_playbook(
        &self,
        request: Request<pb::GetPlaybookRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        self.get_playbook_impl(request).await
    }

    async fn list_playbook_versions(
        &self,
        request: Request<pb::ListPlaybookVersionsRequest>,
    ) -> Result<Response<pb::ListPlaybookVersionsResponse>, Status> {
        self.list_playbook_versions_impl(request).await
    }

    async fn set_default_playbook_version(
        &self,
        request: Request<pb::SetDefaultPlaybookVersionRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        self.set_default_playbook_version_impl(request).await
    }

    async fn delete_playbook_version(
        &self,
        request: Request<pb::DeletePlaybookVersionRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        self.delete_playbook_version_impl(request).await
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("params_json", &req.params_json, limits::PARAMS_BYTES_MAX)?;
        let params = if req.params_json.trim().is_empty() {
            serde_json::Map::new()
        } else {
            match serde_json::from_str(&req.params_json) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(Status::invalid_argument(
                        "params_json must be a JSON object",
                    ));
                }
                Err(e) => {
                    return Err(Status::invalid_argument(format!(
                        "params_json is not JSON: {e}"
                    )));
                }
            }
        };
        let start = StartRequest {
            playbook: req.playbook,
            version: req.version,
            params,
            idempotency_key: req.idempotency_key,
            requested_by: String::new(),
            dry_run: req.dry_run,
            trigger: Value::Null,
            trace: None,
        };
        let started = self
            .0
            .handle(caller, runs::StartRun(start))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StartRunResponse {
            run: Some(run(&started.run)),
            existing: started.existing,
        }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        let id = parse_run_id(&request.into_inner().run_id)?;
        let view = self
            .0
            .handle(caller, runs::GetRun { run: id })
            .await
            .map_err(status)?;
        Ok(Response::new(run(&view)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(limits::LIST_MAX),
        };
        let before = page_token(&req.page_token, "ListRuns", |t| t.parse().ok())?;
        let list = runs::ListRuns {
            filter: RunFilter {
                playbook: req.playbook,
                status: convert::run_status_from_proto(req.status),
            },
            before,
            limit,
        };
        let page = self.0.handle(caller, list).await.map_err(status)?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: page.runs.iter().map(run).collect(),
            next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let caller = self.caller(&request).await;
        let id = parse_run_id(&request.into_inner().run_id)?;
        let events = self
            .0
            .handle(caller, runs::WatchRun { run: id })
            .await
            .map_err(status)?;
        let run_id = id.to_string();
        let stream =
            ReceiverStream::new(events).map(move |event| Ok(convert::event_for(&run_id, &event)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let cancel = runs::CancelRun {
            run: parse_run_id(&req.run_id)?,
            reason: non_empty(req.reason, "no reason given"),
        };
        let view = self.0.handle(caller, cancel).await.map_err(status)?;
        Ok(Response::new(run(&view)))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let caller = self.caller(&request).await;
        let (workers, now) = self
            .0
            .handle(caller, crate::door::workers::ListWorkers)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers
                .iter()
                .map(|(w, n)| convert::worker(w, *n, now))
                .collect(),
        }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let caller = self.caller(&request).await;
        let grants = self
            .0
            .handle(caller, runs::ListGrants)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListGrantsResponse {
            grants: grants.iter().map(convert::grant).collect(),
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let revoke = runs::RevokeGrant {
            run: parse_run_id(&req.run_id)?,
            step: req.step_id,
            item: req.item,
            reason: or_default(req.reason, "no reason given"),
        };
        let grant = self.0.handle(caller, revoke).await.map_err(status)?;
        Ok(Response::new(convert::grant(&grant)))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let caller = self.caller(&request).await;
        let approvals = self
            .0
            .handle(caller, runs::ListApprovals)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListApprovalsResponse {
            approvals: approvals.iter().map(convert::approval).collect(),
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let decision = DecisionRequest {
            run: parse_run_id(&req.run_id)?,
            step: req.step_id,
            approve: req.approve,
            digest: req.digest,
            // Who decides, and for which groups, is the door's to say (the caller's principal).
            who: String::new(),
            groups: Vec::new(),
            comment: req.comment,
        };
        let view = self
            .0
            .handle(caller, runs::Decide(decision))
            .await
            .map_err(status)?;
        Ok(Response::new(run(&view)))
    }

    async fn retry_step(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        self.repair(caller, request.into_inner(), Repair::RetryStep)
            .await
    }

    async fn skip_step(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        self.repair(caller, request.into_inner(), Repair::SkipStep)
            .await
    }

    async fn resume_run(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let caller = self.caller(&request).await;
        self.repair(caller, request.into_inner(), Repair::Resume)
            .await
    }

    async fn pause_containment(
        &self,
        request: Request<pb::ContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let caller = self.caller(&request).await;
        self.set_containment(caller, request.into_inner(), true)
            .await
    }

    async fn resume_containment(
        &self,
        request: Request<pb::ContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let caller = self.caller(&request).await;
        self.set_containment(caller, request.into_inner(), false)
            .await
    }

    async fn get_containment(
        &self,
        request: Request<pb::GetContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let caller = self.caller(&request).await;
        let view = self
            .0
            .handle(caller, containment::GetContainment)
            .await
            .map_err(status)?;
        Ok(Response::new(containment(&view)))
    }

    async fn apply_schedule(
        &self,
        request: Request<pb::ApplyScheduleRequest>,
    ) -> Result<Response<pb::ApplyScheduleResponse>, Status> {
        let caller = self.caller(&request).await;
        let source = request.into_inner().source;
        bounded("source", &source, SCHEDULE_SOURCE_BYTES_MAX)?;
        let applied = self
            .0
            .handle(caller, schedules::ApplySchedule { source })
            .await
            .map_err(status)?;
        let response = match applied {
            schedules::ScheduleApplied::Invalid(diagnostics) => pb::ApplyScheduleResponse {
                diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
                schedule: None,
                unchanged: false,
            },
            schedules::ScheduleApplied::Applied { view, unchanged } => pb::ApplyScheduleResponse {
                diagnostics: vec![],
                schedule: Some(convert::schedule(&view)),
                unchanged,
            },
        };
        Ok(Response::new(response))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let caller = self.caller(&request).await;
        let views = self
            .0
            .handle(caller, schedules::ListSchedules)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: views.iter().map(convert::schedule).collect(),
        }))
    }

    async fn get_schedule_history(
        &self,
        request: Request<pb::GetScheduleHistoryRequest>,
    ) -> Result<Response<pb::GetScheduleHistoryResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        // A token is `SCHEDULED_MS.MANUAL` (0 or 1) of the last entry of the previous page.
        let before = page_token(&req.page_token, "GetScheduleHistory", |token| {
            let (ms, manual) = token.split_once('.')?;
            let manual = match manual {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            Some((ms.parse().ok()?, manual))
        })?;
        let history = schedules::GetScheduleHistory {
            name: req.name.clone(),
            before,
            limit: req.limit as usize,
        };
        let page = self.0.handle(caller, history).await.map_err(status)?;
        Ok(Response::new(pb::GetScheduleHistoryResponse {
            entries: page
                .entries
                .iter()
                .map(|e| convert::ledger_entry(&req.name, e))
                .collect(),
            next_page_token: page
                .next
                .map(|(ms, manual)| format!("{ms}.{}", u8::from(manual)))
                .unwrap_or_default(),
        }))
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::LedgerEntry>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let trigger = schedules::TriggerSchedule {
            name: req.name.clone(),
        };
        let entry = self.0.handle(caller, trigger).await.map_err(status)?;
        Ok(Response::new(convert::ledger_entry(&req.name, &entry)))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let caller = self.caller(&request).await;
        self.set_schedule_paused(caller, request.into_inner(), true)
            .await
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        let caller = self.caller(&request).await;
        self.set_schedule_paused(caller, request.into_inner(), false)
            .await
    }

    async fn ingest_alert(
        &self,
        request: Request<pb::IngestAlertRequest>,
    ) -> Result<Response<pb::IngestAlertResponse>, Status> {
        let caller = self.caller(&request).await;
        let trace = riposte_telemetry::context::from_metadata(request.metadata());
        let req = request.into_inner();
        bounded("source", &req.source, ALERT_SOURCE_BYTES_MAX)?;
        let ingest = alerts::IngestAlert {
            slot: self.0.ingest_slot(alerts::Feed::Grpc).map_err(status)?,
            source: req.source,
            payload: req.payload.into(),
            trace,
        };
        let alerts = self.0.handle(caller, ingest).await.map_err(status)?;
        Ok(Response::new(pb::IngestAlertResponse {
            alerts: alerts.iter().map(|a| convert::alert(a, false)).collect(),
        }))
    }

    async fn list_alert_sources(
        &self,
        request: Request<pb::ListAlertSourcesRequest>,
    ) -> Result<Response<pb::ListAlertSourcesResponse>, Status> {
        self.list_alert_sources_impl(request).await
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let before = page_token(&req.page_token, "ListAlerts", |t| t.parse().ok())?;
        let list = alerts::ListAlerts {
            before,
            limit: req.limit as usize,
        };
        let page = self.0.handle(caller, list).await.map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: page
                .alerts
                .iter()
                .map(|a| convert::alert(a, false))
                .collect(),
            next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::AlertInfo>, Status> {
        let caller = self.caller(&request).await;
        let id = request.into_inner().id;
        let id: uuid::Uuid = id
            .parse()
            .map_err(|_| Status::invalid_argument(format!("`{id}` is not an alert id")))?;
        let alert = self
            .0
            .handle(caller, alerts::GetAlert { id })
            .await
            .map_err(status)?;
        Ok(Response::new(convert::alert(&alert, true)))
    }

    async fn apply_rule(
        &self,
        request: Request<pb::ApplyRuleRequest>,
    ) -> Result<Response<pb::ApplyRuleResponse>, Status> {
        self.apply_rule_impl(request).await
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        self.list_rules_impl(request).await
    }

    async fn get_rule(
        &self,
        request: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        self.get_rule_impl(request).await
    }

    async fn set_rule_enabled(
        &self,
        request: Request<pb::SetRuleEnabledRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        self.set_rule_enabled_impl(request).await
    }

    async fn delete_rule(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        self.delete_rule_impl(request).await
    }

    async fn test_rules(
        &self,
        request: Request<pb::TestRulesRequest>,
    ) -> Result<Response<pb::TestRulesResponse>, Status> {
        self.test_rules_impl(request).await
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        self.delete_schedule_impl(request).await
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        self.who_am_i_impl(request).await
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        self.list_audit_impl(request).await
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        self.verify_audit_impl(request).await
    }
}

impl OperatorApi {
    async fn set_schedule_paused(
        &self,
        caller: Caller,
        req: pb::PauseScheduleRequest,
        paused: bool,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let set = schedules::SetSchedulePaused {
            name: req.name,
            paused,
            reason: or_default(req.reason, "no reason given"),
        };
        let view = self.0.handle(caller, set).await.map_err(status)?;
        Ok(Response::new(convert::schedule(&view)))
    }

    async fn set_containment(
        &self,
        caller: Caller,
        req: pb::ContainmentRequest,
        paused: bool,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let set = containment::SetContainment {
            paused,
            reason: or_default(req.reason, "no reason given"),
        };
        let view = self.0.handle(caller, set).await.map_err(status)?;
        Ok(Response::new(containment(&view)))
    }

    async fn repair(
        &self,
        caller: Caller,
        req: pb::RepairRequest,
        repair: Repair,
    ) -> Result<Response<pb::Run>, Status> {
        let repair = runs::RepairRun {
            run: parse_run_id(&req.run_id)?,
            repair,
            step: req.step_id,
            reason: or_default(req.reason, "no reason given"),
        };
        let view = self.0.handle(caller, repair).await.map_err(status)?;
        Ok(Response::new(run(&view)))
    }
}

/// A list call's `page_token`: `None` when empty, else what `parse` reads in it, or
/// INVALID_ARGUMENT naming the call whose answers give such tokens.
pub(super) fn page_token<T>(
    token: &str,
    call: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    parse(token).map(Some).ok_or_else(|| {
        Status::invalid_argument(format!(
            "page_token `{token}` is not one a {call} answer gave"
        ))
    })
}
