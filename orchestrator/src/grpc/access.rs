//! The operator service's access concerns: who sent a request (its credentials to a
//! principal, its address, its digest), `WhoAmI`, and the audit log's reads.

use riposte_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::operator::{OperatorApi, page_token};
use super::{NAME_BYTES_MAX, bounded, status};
use crate::auth::{self, Credentials};
use crate::convert;
use crate::door::Caller;
use crate::store::{AuditFilter, AuditOutcome, AuditVerdict};

impl OperatorApi {
    /// Who sent `request`: the principal its credentials prove (or why they prove none),
    /// its address, and the digest of the message (for the audit).
    pub(super) async fn caller<T: prost::Message>(&self, request: &Request<T>) -> Caller {
        let principal = match credentials(request) {
            Ok(credentials) => self.1.authenticate(&credentials).await,
            Err(refused) => Err(refused),
        };
        Caller::Operator {
            principal,
            source: request.remote_addr(),
            digest: auth::tokens::sha256_hex(&request.get_ref().encode_to_vec()),
        }
    }

    pub(super) async fn who_am_i_impl(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.caller(&request).await;
        let (principal, grants) = self
            .0
            .handle(caller, crate::door::access::WhoAmI)
            .await
            .map_err(status)?;
        let all_playbooks = grants.may_run_any();
        let playbooks = match grants.holds(crate::auth::Permission::Run) && !all_playbooks {
            true => grants.playbooks.clone().unwrap_or_default(),
            false => Vec::new(),
        };
        Ok(Response::new(pb::WhoAmIResponse {
            principal: principal.id,
            method: principal.method.name().into(),
            groups: grants.groups,
            roles: grants.roles,
            permissions: grants
                .permissions
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            all_playbooks,
            playbooks,
            label: principal.label.unwrap_or_default(),
        }))
    }

    pub(super) async fn list_audit_impl(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let caller = self.caller(&request).await;
        let req = request.into_inner();
        let before = page_token(&req.page_token, "ListAudit", |t| t.parse().ok())?;
        let outcome = match req.outcome.as_str() {
            "" => None,
            "ok" => Some(AuditOutcome::Ok),
            "refused" => Some(AuditOutcome::Refused),
            other => {
                return Err(Status::invalid_argument(format!(
                    "outcome `{other}` is not `ok` or `refused`"
                )));
            }
        };
        bounded("principal", &req.principal, NAME_BYTES_MAX * 2)?;
        bounded("action", &req.action, NAME_BYTES_MAX)?;
        let list = crate::door::audit::ListAudit {
            filter: AuditFilter {
                principal: req.principal,
                action: req.action,
                outcome,
                since_ms: (req.since_ms != 0).then_some(req.since_ms),
                until_ms: (req.until_ms != 0).then_some(req.until_ms),
            },
            before,
            limit: match req.limit {
                0 => 100,
                n => (n as usize).min(1000),
            },
        };
        let page = self.0.handle(caller, list).await.map_err(status)?;
        Ok(Response::new(pb::ListAuditResponse {
            records: page.records.iter().map(convert::audit_record).collect(),
            next_page_token: page.next.map(|seq| seq.to_string()).unwrap_or_default(),
        }))
    }

    pub(super) async fn verify_audit_impl(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let caller = self.caller(&request).await;
        let verdict = self
            .0
            .handle(caller, crate::door::audit::VerifyAudit)
            .await
            .map_err(status)?;
        Ok(Response::new(match verdict {
            AuditVerdict::Intact { records, head_mac } => pb::VerifyAuditResponse {
                intact: true,
                records,
                head_mac,
                ..Default::default()
            },
            AuditVerdict::Broken { seq, why } => pb::VerifyAuditResponse {
                intact: false,
                broken_seq: seq,
                why,
                ..Default::default()
            },
        }))
    }
}

/// What `request` presented: its client certificate's identity, its bearer token.
fn credentials<T>(request: &Request<T>) -> Result<Credentials, auth::Refused> {
    let certificate = request
        .peer_certs()
        .and_then(|certs| certs.first().and_then(riposte_tls::Identity::of));
    let bearer = match request.metadata().get("authorization") {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| auth::Refused::MalformedHeader)?;
            Some(auth::bearer(value)?)
        }
    };
    Ok(Credentials {
        certificate,
        bearer,
    })
}
