//! The operator service's lifecycle handlers: apply, list, read, disable and enable, delete
//! and test alert rules; the alert pollers' condition; delete a schedule; list a playbook's
//! versions, set its default, delete one. Each translates its wire request into a door request and the reply back.

use riposte_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::operator::{ALERT_SOURCE_BYTES_MAX, OperatorApi};
use super::{NAME_BYTES_MAX, bounded, or_default, status};
use crate::convert;
use crate::door::{alerts, playbooks, schedules, sources};

impl OperatorApi {
    pub(super) async fn list_alert_sources_impl(
        &self,
        request: Request<pb::ListAlertSourcesRequest>,
    ) -> Result<Response<pb::ListAlertSourcesResponse>, Status> {
        let caller = self.caller(&request).await;
        let (views, now_ms) = self
            .0
            .handle(caller, sources::ListAlertSources)
            .await
            .map_err(status)?;
        let sources = views
            .iter()
            .map(|v| convert::alert_source(v, now_ms))
            .collect();
        Ok(Response::new(pb::ListAlertSourcesResponse { sources }))
    }

    pub(super) async fn apply_rule_impl(
        &self,
        request: Request<pb::ApplyRuleRequest>,
    ) -> Result<Response<pb::ApplyRuleResponse>, Status> {
        let caller = self.caller(&request).await;
        let source = request.into_inner().source;
        bounded(
            "source",
            &source,
            riposte_playbooks::rules::limits::SOURCE_BYTES_MAX,
        )?;
        let outcome = self
            .0
            .handle(caller, alerts::ApplyRule { source })
            .await
            .map_err(status)?;
        let response = match outcome {
            alerts::RuleOutcome::Invalid(diagnostics) => pb::ApplyRuleResponse {
                diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
                rule: None,
            },
            alerts::RuleOutcome::Applied(rule) => pb::ApplyRuleResponse {
                diagnostics: vec![],
                rule: rule.as_deref().map(|(r, s)| convert::rule(r, s)),
            },
        };
        Ok(Response::new(response))
    }

    pub(super) async fn list_rules_impl(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let caller = self.caller(&request).await;
        let rules = self
            .0
            .handle(caller, alerts::ListRules)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(|(r, s)| convert::rule(r, s)).collect(),
        }))
    }

    pub(super) async fn get_rule_impl(
        &self,
        request: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        let caller = self.caller(&request).await;
        let name = rule_name(request.into_inner().name)?;
        let (rule, stored) = self
            .0
            .handle(caller, alerts::GetRule { name })
            .await
            .map_err(status)?;
        Ok(Response::new(with_source(&rule, stored)))
    }

    pub(super) async fn set_rule_enabled_impl(
        &self,
        request: Request<pb::SetRuleEnabledRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let name = rule_name(req.name)?;
        bounded("reason", &req.reason, crate::engine::limits::KEY_BYTES_MAX)?;
        let set = alerts::SetRuleEnabled {
            name,
            enabled: req.enabled,
            reason: or_default(req.reason, "no reason given"),
        };
        let (rule, stored) = self.0.handle(caller, set).await.map_err(status)?;
        Ok(Response::new(convert::rule(&rule, &stored)))
    }

    pub(super) async fn delete_rule_impl(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::RuleInfo>, Status> {
        let caller = self.caller(&request).await;
        let name = rule_name(request.into_inner().name)?;
        let (rule, stored) = self
            .0
            .handle(caller, alerts::DeleteRule { name })
            .await
            .map_err(status)?;
        Ok(Response::new(with_source(&rule, stored)))
    }

    pub(super) async fn test_rules_impl(
        &self,
        request: Request<pb::TestRulesRequest>,
    ) -> Result<Response<pb::TestRulesResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("source", &req.source, ALERT_SOURCE_BYTES_MAX)?;
        let test = alerts::TestRules {
            source: req.source,
            payload: req.payload,
        };
        let verdicts = self.0.handle(caller, test).await.map_err(status)?;
        Ok(Response::new(pb::TestRulesResponse {
            verdicts: verdicts.iter().map(convert::verdict).collect(),
        }))
    }

    pub(super) async fn delete_schedule_impl(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let caller = self.caller(&request).await;
        let name = request.into_inner().name;
        bounded("name", &name, NAME_BYTES_MAX)?;
        let delete = schedules::DeleteSchedule { name };
        let name = self.0.handle(caller, delete).await.map_err(status)?;
        Ok(Response::new(pb::DeleteScheduleResponse { name }))
    }
}

/// A rule for the wire with its source (the lists leave it out).
fn with_source(
    rule: &riposte_playbooks::rules::Rule,
    stored: crate::store::StoredRule,
) -> pb::RuleInfo {
    let mut info = convert::rule(rule, &stored);
    info.source = stored.source;
    info
}

impl OperatorApi {
    pub(super) async fn list_playbooks_impl(
        &self,
        request: Request<pb::ListPlaybooksRequest>,
    ) -> Result<Response<pb::ListPlaybooksResponse>, Status> {
        let caller = self.caller(&request).await;
        let list = self
            .0
            .handle(caller, playbooks::ListPlaybooks)
            .await
            .map_err(status)?;
        let playbooks = list
            .iter()
            .map(|(stored, compiled)| convert::playbook(compiled, Some(stored), ""))
            .collect();
        Ok(Response::new(pb::ListPlaybooksResponse { playbooks }))
    }

    pub(super) async fn get_playbook_impl(
        &self,
        request: Request<pb::GetPlaybookRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let get = playbooks::GetPlaybook {
            name: req.name,
            version: req.version,
        };
        let (compiled, stored) = self.0.handle(caller, get).await.map_err(status)?;
        Ok(Response::new(with_playbook_source(&compiled, stored)))
    }

    pub(super) async fn list_playbook_versions_impl(
        &self,
        request: Request<pb::ListPlaybookVersionsRequest>,
    ) -> Result<Response<pb::ListPlaybookVersionsResponse>, Status> {
        let caller = self.caller(&request).await;
        let name = request.into_inner().name;
        bounded("name", &name, NAME_BYTES_MAX)?;
        let list = playbooks::ListPlaybookVersions { name };
        let (versions, default) = self.0.handle(caller, list).await.map_err(status)?;
        let versions = versions
            .iter()
            .map(|(compiled, stored)| {
                let mut playbook = convert::playbook(compiled, Some(stored), "");
                (playbook.params, playbook.steps) = (Vec::new(), Vec::new());
                playbook
            })
            .collect();
        Ok(Response::new(pb::ListPlaybookVersionsResponse {
            versions,
            default_version: default,
        }))
    }

    pub(super) async fn set_default_playbook_version_impl(
        &self,
        request: Request<pb::SetDefaultPlaybookVersionRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let set = playbooks::SetDefaultPlaybookVersion {
            name: req.name,
            version: req.version,
        };
        let (compiled, stored) = self.0.handle(caller, set).await.map_err(status)?;
        Ok(Response::new(with_playbook_source(&compiled, stored)))
    }

    pub(super) async fn delete_playbook_version_impl(
        &self,
        request: Request<pb::DeletePlaybookVersionRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let delete = playbooks::DeletePlaybookVersion {
            name: req.name,
            version: req.version,
        };
        let (compiled, stored) = self.0.handle(caller, delete).await.map_err(status)?;
        Ok(Response::new(with_playbook_source(&compiled, Some(stored))))
    }
}

/// A playbook for the wire, with its stored source.
fn with_playbook_source(
    compiled: &riposte_playbooks::Playbook,
    stored: Option<crate::store::StoredPlaybook>,
) -> pb::Playbook {
    let source = stored
        .as_ref()
        .map(|s| s.source.clone())
        .unwrap_or_default();
    convert::playbook(compiled, stored.as_ref(), &source)
}

fn rule_name(name: String) -> Result<String, Status> {
    bounded(
        "name",
        &name,
        riposte_playbooks::rules::limits::NAME_BYTES_MAX,
    )?;
    Ok(name)
}
