//! The Worker service: register, long-poll, heartbeat, report, claim a poller and hand over
//! its pages, each a door request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use riposte_proto::v1 as pb;
use riposte_proto::v1::worker_server::Worker;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::{NAME_BYTES_MAX, bounded, status};
use crate::convert;
use crate::door::{self, Node, sources, workers, workers::Caller};
use crate::engine::limits;
use crate::engine::pollers::{Claimed, Page};
use crate::pollers::PAGE_SIZE_MAX;
use riposte_scheduler::TaskId;

const WORKER_LABELS_MAX: usize = 64;
const WORKER_ACTIONS_MAX: usize = 1024;
const LEASES_PER_HEARTBEAT_MAX: usize = 4096;

pub struct WorkerApi(pub Arc<Node>);

#[tonic::async_trait]
impl Worker for WorkerApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        if req.worker_id.is_empty() {
            return Err(Status::invalid_argument("worker_id is required"));
        }
        bounded("worker_id", &req.worker_id, NAME_BYTES_MAX)?;
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        if req.labels.len() > WORKER_LABELS_MAX || req.actions.len() > WORKER_ACTIONS_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {WORKER_LABELS_MAX} labels and {WORKER_ACTIONS_MAX} actions"
            )));
        }
        let register = workers::Register {
            caller,
            id: req.worker_id,
            name: req.name,
            labels: req.labels.into_iter().collect(),
            actions: req.actions.into_iter().collect::<HashSet<_>>(),
            concurrency: req.concurrency,
        };
        let terms = self
            .0
            .handle(door::Caller::Worker, register)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RegisterResponse {
            lease_ms: terms.lease.as_millis() as u64,
            heartbeat_interval_ms: terms.heartbeat_interval.as_millis() as u64,
            poll_wait_ms_max: terms.poll_wait_max.as_millis() as u64,
        }))
    }

    async fn poll_task(
        &self,
        request: Request<pb::PollTaskRequest>,
    ) -> Result<Response<pb::PollTaskResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let poll = workers::PollTask {
            caller,
            worker: req.worker_id,
            wait: Duration::from_millis(req.wait_ms),
        };
        let leased = self
            .0
            .handle(door::Caller::Worker, poll)
            .await
            .map_err(status)?;
        let trace = leased.as_ref().and_then(|l| l.trace);
        let mut response = Response::new(pb::PollTaskResponse {
            task: leased.as_ref().map(convert::task),
        });
        // The task attempt's span: the worker's spans are its children.
        if let Some(trace) = trace {
            riposte_telemetry::context::to_metadata(&trace, response.metadata_mut());
        }
        Ok(response)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        if req.leases.len() > LEASES_PER_HEARTBEAT_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {LEASES_PER_HEARTBEAT_MAX} leases per heartbeat"
            )));
        }
        // A lease whose id does not parse is not one this orchestrator handed out: the
        // worker is told to abandon it, as any other lease it does not hold.
        let (held, unknown): (Vec<_>, Vec<_>) = req
            .leases
            .into_iter()
            .map(|l| match l.task_id.parse::<TaskId>() {
                Ok(id) => Ok((id, l.lease_token)),
                Err(_) => Err(l),
            })
            .partition(Result::is_ok);
        let heartbeat = workers::Heartbeat {
            caller,
            worker: req.worker_id,
            held: held.into_iter().flatten().collect(),
        };
        let abandon = self
            .0
            .handle(door::Caller::Worker, heartbeat)
            .await
            .map_err(status)?;
        let abandon = abandon
            .into_iter()
            .map(|(task_id, lease_token)| pb::LeaseRef {
                task_id: task_id.to_string(),
                lease_token,
            });
        let unknown = unknown.into_iter().filter_map(Result::err);
        Ok(Response::new(pb::HeartbeatResponse {
            abandon: abandon.chain(unknown).collect(),
        }))
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let outcome = match req.outcome {
            Some(pb::report_result_request::Outcome::Success(s)) => {
                bounded("output_json", &s.output_json, limits::OUTPUT_BYTES_MAX)?;
                let output: Value = if s.output_json.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&s.output_json).map_err(|e| {
                        Status::invalid_argument(format!("output_json is not JSON: {e}"))
                    })?
                };
                Ok(output)
            }
            Some(pb::report_result_request::Outcome::Failure(f)) => {
                Err((truncate(f.message, limits::ERROR_BYTES_MAX), f.retryable))
            }
            None => return Err(Status::invalid_argument("outcome is required")),
        };
        let report = workers::ReportResult {
            caller,
            worker: req.worker_id,
            task_id: task_id(&req.task_id)?,
            token: req.lease_token,
            outcome,
        };
        let duplicate = self
            .0
            .handle(door::Caller::Worker, report)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReportResultResponse { duplicate }))
    }

    async fn claim_poll(
        &self,
        request: Request<pb::ClaimPollRequest>,
    ) -> Result<Response<pb::ClaimPollResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let claim = sources::ClaimPoll {
            caller,
            worker: req.worker_id,
        };
        let claimed = self
            .0
            .handle(door::Caller::Worker, claim)
            .await
            .map_err(status)?;
        Ok(Response::new(match claimed {
            Claimed::Poll(claim) => pb::ClaimPollResponse {
                poll: Some(pb::PollClaim {
                    poller: claim.poller,
                    action: claim.action.to_owned(),
                    input_json: claim.input.to_string(),
                    token: claim.token,
                    lease_ms: claim.lease.as_millis() as u64,
                    timeout_ms: claim.timeout.as_millis() as u64,
                }),
                retry_in_ms: 0,
            },
            Claimed::AskAgain(wait) => pb::ClaimPollResponse {
                poll: None,
                retry_in_ms: wait.as_millis() as u64,
            },
        }))
    }

    async fn report_page(
        &self,
        request: Request<pb::ReportPageRequest>,
    ) -> Result<Response<pb::ReportPageResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        bounded("poller", &req.poller, NAME_BYTES_MAX)?;
        let outcome = match req.outcome {
            Some(pb::report_page_request::Outcome::Items(page)) => {
                if page.items.len() > PAGE_SIZE_MAX as usize {
                    return Err(Status::invalid_argument(format!(
                        "{} items in one page exceed {PAGE_SIZE_MAX}",
                        page.items.len()
                    )));
                }
                Page::Items {
                    items: page.items,
                    more: page.more,
                }
            }
            Some(pb::report_page_request::Outcome::Failure(f)) => Page::Failed {
                message: truncate(f.message, limits::ERROR_BYTES_MAX),
                retry_after: (f.retry_after_ms > 0)
                    .then(|| Duration::from_millis(f.retry_after_ms.min(RETRY_AFTER_MAX_MS))),
            },
            None => return Err(Status::invalid_argument("outcome is required")),
        };
        let report = sources::ReportPage {
            caller,
            worker: req.worker_id,
            poller: req.poller,
            token: req.token,
            page: req.page,
            outcome,
        };
        let taken = self
            .0
            .handle(door::Caller::Worker, report)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReportPageResponse {
            ingested: taken.ingested,
            already_seen: taken.already_seen,
            unreadable: taken.unreadable,
            go_on: taken.go_on,
        }))
    }
}

/// Longest `Retry-After` a poller's failure is taken at (a day).
const RETRY_AFTER_MAX_MS: u64 = 24 * 3600 * 1000;

/// The identity the caller's client certificate names; TLS verified the certificate (its CA,
/// its validity) before any request could arrive on the connection.
fn caller<T>(request: &Request<T>) -> Caller {
    let certs = request.peer_certs()?;
    riposte_tls::Identity::of(certs.first()?)
}

/// A task id as the worker sent it, parsed at the edge.
fn task_id(text: &str) -> Result<TaskId, Status> {
    text.parse()
        .map_err(|e: riposte_scheduler::MalformedTaskId| Status::invalid_argument(e.to_string()))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
