//! The gRPC edge: the worker and operator services. Each handler checks its input, takes the
//! engine lock for one operation, waits until the change is durable, then answers. Engine
//! errors map to `tonic::Status` in [`status`] only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use riposte_proto::v1 as pb;
use riposte_proto::v1::operator_server::Operator;
use riposte_proto::v1::worker_server::Worker;
use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::convert;
use crate::dispatch;
use crate::engine::{self, ApplyOutcome, Engine, Grant, Poll, StartRequest, limits};
use crate::store::{Seq, Store};
use riposte_scheduler::state::{HistoryEvent, RunId};
use riposte_scheduler::{DecisionRequest, Repair};

/// What every handler shares.
pub struct Shared {
    pub engine: Mutex<Engine>,
    pub store: Store,
    /// The engine's clock, readable without its lock.
    pub clock: Clock,
    /// Wakes the timer loop; the engine notifies it when a timer becomes the earliest.
    pub timers: Arc<Notify>,
    /// Alert payloads being ingested now, at most `ingesting_max` (`--alerts-in-flight`).
    pub ingesting: Arc<tokio::sync::Semaphore>,
    pub ingesting_max: usize,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock is a bug; the state it left is still the best we have.
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place in the ingestion queue: held while a payload is read, parsed, stored and
    /// flushed. Refused while `--alerts-in-flight` payloads hold one (HTTP 429, gRPC
    /// RESOURCE_EXHAUSTED): the sender retries; nothing it was told was accepted is dropped.
    pub fn ingest_slot(&self) -> Result<IngestSlot, IngestRefusal> {
        self.ingesting
            .clone()
            .try_acquire_owned()
            .map(|permit| IngestSlot { _permit: permit })
            .map_err(|_| {
                IngestRefusal::Backlog(format!(
                    "{} alert payloads are being ingested, the most allowed; retry later",
                    self.ingesting_max
                ))
            })
    }

    /// Ingests one alert payload in its `slot` and waits until its alerts are durable. Every
    /// listener goes through here.
    pub async fn ingest_alert(
        &self,
        slot: IngestSlot,
        source: &str,
        payload: &[u8],
    ) -> Result<Vec<crate::store::StoredAlert>, IngestRefusal> {
        let _slot = slot;
        // Parsing and the rules' templates run outside the lock; fates are given under it.
        let rules = self.lock().alert_rules();
        let decided =
            engine::alerts::decide(source, payload, &rules).map_err(IngestRefusal::Engine)?;
        let (alerts, seq) = self
            .lock()
            .ingest_decided(decided)
            .map_err(IngestRefusal::Engine)?;
        self.store
            .durable(seq)
            .await
            .map_err(|e| IngestRefusal::Engine(e.into()))?;
        Ok(alerts)
    }

    /// Ingests a batch of single-message payloads from a stream listener (syslog): waits for
    /// room in the ingestion queue rather than refusing (the sender is slowed down, nothing
    /// read is dropped), ingests each under one engine lock and waits until all are durable.
    /// Answers why each refused payload was refused.
    pub async fn ingest_batch(
        &self,
        source: &str,
        payloads: &[Vec<u8>],
    ) -> Result<Vec<String>, crate::store::Error> {
        let wanted = u32::try_from(payloads.len().min(self.ingesting_max))
            .expect("the ingestion limit fits u32");
        let _permits = self
            .ingesting
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the ingestion semaphore is never closed");
        let mut refused = Vec::new();
        let rules = self.lock().alert_rules();
        let mut decided = Vec::with_capacity(payloads.len());
        for payload in payloads {
            match engine::alerts::decide(source, payload, &rules) {
                Ok(d) => decided.push(d),
                Err(e) => refused.push(e.to_string()),
            }
        }
        let mut last = None;
        {
            let mut engine = self.lock();
            for d in decided {
                match engine.ingest_decided(d) {
                    Ok((_, seq)) => last = Some(seq),
                    Err(engine::Error::Store(e)) => return Err(e),
                    Err(e) => refused.push(e.to_string()),
                }
            }
        }
        if let Some(seq) = last {
            self.store.durable(seq).await?;
        }
        Ok(refused)
    }

    async fn durable(&self, seq: Seq) -> Result<(), Status> {
        self.store
            .durable(seq)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

/// A place in the ingestion queue ([`Shared::ingest_slot`]).
pub struct IngestSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Why an alert payload was not ingested.
pub enum IngestRefusal {
    /// `--alerts-in-flight` payloads are in flight: retry later.
    Backlog(String),
    Engine(engine::Error),
}

fn ingest_status(refusal: IngestRefusal) -> Status {
    match refusal {
        IngestRefusal::Backlog(m) => Status::resource_exhausted(m),
        IngestRefusal::Engine(e) => status(e),
    }
}

fn status(error: engine::Error) -> Status {
    match error {
        engine::Error::InvalidArgument(m) => Status::invalid_argument(m),
        engine::Error::NotFound(m) => Status::not_found(m),
        engine::Error::FailedPrecondition(m) => Status::failed_precondition(m),
        engine::Error::ResourceExhausted(m) => Status::resource_exhausted(m),
        engine::Error::PermissionDenied(m) => Status::permission_denied(m),
        engine::Error::Store(e) => {
            tracing::error!(error = %e, "store.error");
            Status::internal(e.to_string())
        }
    }
}

fn bounded(what: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{what} is {} bytes, more than the {max} allowed",
            value.len()
        )));
    }
    Ok(())
}

fn parse_run_id(id: &str) -> Result<RunId, Status> {
    id.parse()
        .map_err(|_| Status::invalid_argument(format!("`{id}` is not a run id")))
}

pub struct WorkerApi(pub Arc<Shared>);

const WORKER_LABELS_MAX: usize = 64;
const WORKER_ACTIONS_MAX: usize = 1024;
const NAME_BYTES_MAX: usize = 128;
const LEASES_PER_HEARTBEAT_MAX: usize = 4096;

#[tonic::async_trait]
impl Worker for WorkerApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
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
        let worker = dispatch::Worker {
            id: req.worker_id,
            name: req.name,
            labels: req.labels.into_iter().collect(),
            actions: req.actions.into_iter().collect::<HashSet<_>>(),
            concurrency: req.concurrency,
            last_seen: self.0.clock.monotonic(),
        };
        let mut engine = self.0.lock();
        engine.register(worker);
        let settings = engine.settings().clone();
        drop(engine);
        Ok(Response::new(pb::RegisterResponse {
            lease_ms: settings.lease.as_millis() as u64,
            heartbeat_interval_ms: (settings.lease.as_millis() / 3) as u64,
            poll_wait_ms_max: settings.poll_wait_max.as_millis() as u64,
        }))
    }

    async fn poll_task(
        &self,
        request: Request<pb::PollTaskRequest>,
    ) -> Result<Response<pb::PollTaskResponse>, Status> {
        let req = request.into_inner();
        let poll = self.0.lock().poll(&req.worker_id).map_err(status)?;
        let grant = match poll {
            Poll::Now(grant) => Some(*grant),
            Poll::Wait(mut rx) => {
                let max = self.0.lock().settings().poll_wait_max;
                let wait = Duration::from_millis(req.wait_ms).min(max);
                match tokio::time::timeout(wait, &mut rx).await {
                    Ok(Ok(grant)) => Some(grant),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        // A grant sent just as the wait ended still belongs to this poll.
                        rx.close();
                        rx.try_recv().ok()
                    }
                }
            }
        };
        let Some(grant) = grant else {
            return Ok(Response::new(pb::PollTaskResponse { task: None }));
        };
        self.0.durable(grant.seq).await?;
        log_grant(&grant, &req.worker_id);
        Ok(Response::new(pb::PollTaskResponse {
            task: Some(convert::task(&grant)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        if req.leases.len() > LEASES_PER_HEARTBEAT_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {LEASES_PER_HEARTBEAT_MAX} leases per heartbeat"
            )));
        }
        let held: Vec<(String, u64)> = req
            .leases
            .into_iter()
            .map(|l| (l.task_id, l.lease_token))
            .collect();
        let abandon = self
            .0
            .lock()
            .heartbeat(&req.worker_id, &held)
            .map_err(status)?;
        Ok(Response::new(pb::HeartbeatResponse {
            abandon: abandon
                .into_iter()
                .map(|(task_id, lease_token)| pb::LeaseRef {
                    task_id,
                    lease_token,
                })
                .collect(),
        }))
    }

    async fn report_result(
        &self,
        request: Request<pb::ReportResultRequest>,
    ) -> Result<Response<pb::ReportResultResponse>, Status> {
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
        let report = self
            .0
            .lock()
            .report(&req.task_id, req.lease_token, outcome)
            .map_err(status)?;
        self.0.durable(report.seq).await?;
        if let Some(reason) = report.rejected {
            tracing::warn!(task.id = %req.task_id, lease.token = req.lease_token, worker.id = %req.worker_id, %reason, "task.result_rejected");
            return Err(Status::failed_precondition(format!(
                "result rejected: {reason}"
            )));
        }
        Ok(Response::new(pb::ReportResultResponse {
            duplicate: report.duplicate,
        }))
    }
}

fn log_grant(grant: &Grant, worker: &str) {
    tracing::debug!(
        task.id = %grant.task_id,
        lease.token = grant.token,
        worker.id = %worker,
        action = %grant.task.action,
        "task.leased"
    );
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

pub struct OperatorApi(pub Arc<Shared>);

type EventStream = ReceiverStream<Result<pb::RunEvent, Status>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn validate_playbook(
        &self,
        request: Request<pb::ValidatePlaybookRequest>,
    ) -> Result<Response<pb::ValidatePlaybookResponse>, Status> {
        let source = request.into_inner().source;
        let response = match riposte_playbooks::compile(&source) {
            Ok(compiled) => pb::ValidatePlaybookResponse {
                diagnostics: vec![],
                playbook: Some(convert::playbook(&compiled, None, &source)),
            },
            Err(diagnostics) => pb::ValidatePlaybookResponse {
                diagnostics: diagnostics
                    .into_iter()
                    .map(|d| pb::Diagnostic {
                        message: d.message,
                        path: d.path,
                        line: d.line,
                        column: d.column,
                    })
                    .collect(),
                playbook: None,
            },
        };
        Ok(Response::new(response))
    }

    async fn apply_playbook(
        &self,
        request: Request<pb::ApplyPlaybookRequest>,
    ) -> Result<Response<pb::ApplyPlaybookResponse>, Status> {
        let source = request.into_inner().source;
        let (compiled, unchanged, seq) = self.0.lock().apply_playbook(&source).map_err(status)?;
        self.0.durable(seq).await?;
        tracing::info!(playbook = %compiled.name, version = compiled.version, unchanged, "playbook.applied");
        Ok(Response::new(pb::ApplyPlaybookResponse {
            name: compiled.name.clone(),
            version: compiled.version,
            unchanged,
        }))
    }

    async fn list_playbooks(
        &self,
        _request: Request<pb::ListPlaybooksRequest>,
    ) -> Result<Response<pb::ListPlaybooksResponse>, Status> {
        let list = self.0.lock().list_playbooks().map_err(status)?;
        let playbooks = list
            .iter()
            .map(|(stored, compiled)| convert::playbook(compiled, Some(stored), ""))
            .collect();
        Ok(Response::new(pb::ListPlaybooksResponse { playbooks }))
    }

    async fn get_playbook(
        &self,
        request: Request<pb::GetPlaybookRequest>,
    ) -> Result<Response<pb::Playbook>, Status> {
        let req = request.into_inner();
        let mut engine = self.0.lock();
        let compiled = engine.playbook(&req.name, req.version).map_err(status)?;
        let stored = engine
            .store()
            .playbook(&compiled.name, compiled.version)
            .map_err(|e| status(e.into()))?;
        let source = stored
            .as_ref()
            .map(|s| s.source.clone())
            .unwrap_or_default();
        Ok(Response::new(convert::playbook(
            &compiled,
            stored.as_ref(),
            &source,
        )))
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
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
            requested_by: req.requested_by,
            dry_run: req.dry_run,
            trigger: Value::Null,
        };
        let (run, existing, seq, playbook) = {
            let mut engine = self.0.lock();
            let (run, existing, seq) = engine.start_run(start).map_err(status)?;
            let playbook = engine
                .playbook(&run.playbook, run.version)
                .map_err(status)?;
            (run, existing, seq, playbook)
        };
        self.0.durable(seq).await?;
        if !existing {
            tracing::info!(run.id = %run.id, playbook = %run.playbook, "run.started");
        }
        Ok(Response::new(pb::StartRunResponse {
            run: Some(convert::run(&run, &playbook)),
            existing,
        }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let id = parse_run_id(&request.into_inner().run_id)?;
        let mut engine = self.0.lock();
        let run = engine.run(id).map_err(status)?;
        let playbook = engine
            .playbook(&run.playbook, run.version)
            .map_err(status)?;
        Ok(Response::new(convert::run(&run, &playbook)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(limits::LIST_MAX),
        };
        let status_filter = convert::run_status_from_proto(req.status);
        let mut engine = self.0.lock();
        let runs = engine
            .list_runs(&req.playbook, status_filter, limit)
            .map_err(status)?;
        let mut out = Vec::with_capacity(runs.len());
        for run in &runs {
            let playbook = engine
                .playbook(&run.playbook, run.version)
                .map_err(status)?;
            out.push(convert::run(run, &playbook));
        }
        Ok(Response::new(pb::ListRunsResponse { runs: out }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let id = parse_run_id(&request.into_inner().run_id)?;
        let watch = self.0.lock().watch(id).map_err(status)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(stream_events(self.0.clone(), id, watch, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let req = request.into_inner();
        let id = parse_run_id(&req.run_id)?;
        let by = if req.requested_by.is_empty() {
            "operator".into()
        } else {
            req.requested_by
        };
        let reason = if req.reason.is_empty() {
            "no reason given".into()
        } else {
            req.reason
        };
        let (run, playbook, seq) = {
            let mut engine = self.0.lock();
            let seq = engine.cancel_run(id, reason, by).map_err(status)?;
            let run = engine.run(id).map_err(status)?;
            let playbook = engine
                .playbook(&run.playbook, run.version)
                .map_err(status)?;
            (run, playbook, seq)
        };
        self.0.durable(seq).await?;
        tracing::info!(run.id = %id, "run.cancelled");
        Ok(Response::new(convert::run(&run, &playbook)))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let now = self.0.clock.monotonic();
        let workers = self.0.lock().workers();
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers
                .iter()
                .map(|(w, n)| convert::worker(w, *n, now))
                .collect(),
        }))
    }

    async fn list_grants(
        &self,
        _request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let grants = self.0.lock().grants();
        Ok(Response::new(pb::ListGrantsResponse {
            grants: grants.iter().map(convert::grant).collect(),
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let req = request.into_inner();
        let run = parse_run_id(&req.run_id)?;
        let who = who(req.who)?;
        let reason = or_default(req.reason, "no reason given");
        let (seq, grant) = {
            let mut engine = self.0.lock();
            let seq = engine
                .revoke_grant(run, req.step_id.clone(), req.item, who, reason)
                .map_err(status)?;
            let grant = engine
                .grants()
                .into_iter()
                .find(|g| g.run == run && g.step == req.step_id && g.item == req.item);
            (seq, grant)
        };
        self.0.durable(seq).await?;
        let grant = grant.ok_or_else(|| Status::not_found("the grant ended meanwhile"))?;
        Ok(Response::new(convert::grant(&grant)))
    }

    async fn list_approvals(
        &self,
        _request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let approvals = self.0.lock().approvals();
        Ok(Response::new(pb::ListApprovalsResponse {
            approvals: approvals.iter().map(convert::approval).collect(),
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        let req = request.into_inner();
        let run = parse_run_id(&req.run_id)?;
        let decision = DecisionRequest {
            run,
            step: req.step_id,
            approve: req.approve,
            digest: req.digest,
            who: who(req.who)?,
            groups: Vec::new(),
            comment: req.comment,
        };
        let seq = self.0.lock().decide(decision).map_err(status)?;
        self.answer_run(run, seq).await
    }

    async fn retry_step(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        self.repair(request.into_inner(), Repair::RetryStep).await
    }

    async fn skip_step(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        self.repair(request.into_inner(), Repair::SkipStep).await
    }

    async fn resume_run(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        self.repair(request.into_inner(), Repair::Resume).await
    }

    async fn pause_containment(
        &self,
        request: Request<pb::ContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let req = request.into_inner();
        let (who, reason) = (who(req.who)?, or_default(req.reason, "no reason given"));
        let seq = self
            .0
            .lock()
            .pause_containment(who, reason)
            .map_err(status)?;
        self.answer_containment(seq).await
    }

    async fn resume_containment(
        &self,
        request: Request<pb::ContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let req = request.into_inner();
        let (who, reason) = (who(req.who)?, or_default(req.reason, "no reason given"));
        let seq = self
            .0
            .lock()
            .resume_containment(who, reason)
            .map_err(status)?;
        self.answer_containment(seq).await
    }

    async fn get_containment(
        &self,
        _request: Request<pb::GetContainmentRequest>,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        let (state, held) = self.0.lock().containment();
        Ok(Response::new(convert::containment(&state, held)))
    }

    async fn apply_schedule(
        &self,
        request: Request<pb::ApplyScheduleRequest>,
    ) -> Result<Response<pb::ApplyScheduleResponse>, Status> {
        let source = request.into_inner().source;
        bounded("source", &source, SCHEDULE_SOURCE_BYTES_MAX)?;
        let outcome = self.0.lock().apply_schedule(&source).map_err(status)?;
        let response = match outcome {
            ApplyOutcome::Invalid(diagnostics) => pb::ApplyScheduleResponse {
                diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
                schedule: None,
                unchanged: false,
            },
            ApplyOutcome::Applied {
                view,
                unchanged,
                seq,
            } => {
                self.0.durable(seq).await?;
                pb::ApplyScheduleResponse {
                    diagnostics: vec![],
                    schedule: Some(convert::schedule(&view)),
                    unchanged,
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn list_schedules(
        &self,
        _request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let views = self.0.lock().list_schedules().map_err(status)?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: views.iter().map(convert::schedule).collect(),
        }))
    }

    async fn get_schedule_history(
        &self,
        request: Request<pb::GetScheduleHistoryRequest>,
    ) -> Result<Response<pb::GetScheduleHistoryResponse>, Status> {
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let entries = self
            .0
            .lock()
            .schedule_history(&req.name, req.limit as usize)
            .map_err(status)?;
        Ok(Response::new(pb::GetScheduleHistoryResponse {
            entries: entries
                .iter()
                .map(|e| convert::ledger_entry(&req.name, e))
                .collect(),
        }))
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::LedgerEntry>, Status> {
        let req = request.into_inner();
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let who = who(req.who)?;
        let (entry, seq) = self
            .0
            .lock()
            .trigger_schedule(&req.name, &who)
            .map_err(status)?;
        self.0.durable(seq).await?;
        tracing::info!(schedule = %req.name, by = %who, fate = ?entry.fate, "schedule.triggered");
        Ok(Response::new(convert::ledger_entry(&req.name, &entry)))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        self.set_schedule_paused(request.into_inner(), true).await
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        self.set_schedule_paused(request.into_inner(), false).await
    }

    async fn ingest_alert(
        &self,
        request: Request<pb::IngestAlertRequest>,
    ) -> Result<Response<pb::IngestAlertResponse>, Status> {
        self.ingest_alert_rpc(request.into_inner()).await
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let limit = request.into_inner().limit as usize;
        let alerts = self.0.lock().list_alerts(limit).map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.iter().map(|a| convert::alert(a, false)).collect(),
        }))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::AlertInfo>, Status> {
        let id = request.into_inner().id;
        let id: uuid::Uuid = id
            .parse()
            .map_err(|_| Status::invalid_argument(format!("`{id}` is not an alert id")))?;
        let alert = self.0.lock().alert(id).map_err(status)?;
        Ok(Response::new(convert::alert(&alert, true)))
    }

    async fn apply_rule(
        &self,
        request: Request<pb::ApplyRuleRequest>,
    ) -> Result<Response<pb::ApplyRuleResponse>, Status> {
        let source = request.into_inner().source;
        bounded(
            "source",
            &source,
            riposte_playbooks::rules::limits::SOURCE_BYTES_MAX,
        )?;
        let outcome = self.0.lock().apply_rule(&source).map_err(status)?;
        let response = match outcome {
            engine::RuleApplied::Invalid(diagnostics) => pb::ApplyRuleResponse {
                diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
                rule: None,
            },
            engine::RuleApplied::Applied { rule, seq } => {
                self.0.durable(seq).await?;
                let rules = self.0.lock().list_rules();
                let info = rules
                    .iter()
                    .find(|(r, _)| r.name == rule.name)
                    .map(|(r, s)| convert::rule(r, s));
                pb::ApplyRuleResponse {
                    diagnostics: vec![],
                    rule: info,
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn list_rules(
        &self,
        _request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let rules = self.0.lock().list_rules();
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(|(r, s)| convert::rule(r, s)).collect(),
        }))
    }
}

/// Longest alert source name accepted, in bytes.
const ALERT_SOURCE_BYTES_MAX: usize = 64;

impl OperatorApi {
    async fn ingest_alert_rpc(
        &self,
        req: pb::IngestAlertRequest,
    ) -> Result<Response<pb::IngestAlertResponse>, Status> {
        bounded("source", &req.source, ALERT_SOURCE_BYTES_MAX)?;
        let slot = self.0.ingest_slot().map_err(ingest_status)?;
        let alerts = self
            .0
            .ingest_alert(slot, &req.source, &req.payload)
            .await
            .map_err(ingest_status)?;
        for a in &alerts {
            tracing::info!(alert = %a.id, source = %a.source, fate = ?a.fate, "alert.ingested");
        }
        Ok(Response::new(pb::IngestAlertResponse {
            alerts: alerts.iter().map(|a| convert::alert(a, false)).collect(),
        }))
    }
}

/// Largest schedule source accepted.
const SCHEDULE_SOURCE_BYTES_MAX: usize = riposte_playbooks::schedule::limits::SOURCE_BYTES_MAX;

impl OperatorApi {
    async fn set_schedule_paused(
        &self,
        req: pb::PauseScheduleRequest,
        paused: bool,
    ) -> Result<Response<pb::ScheduleInfo>, Status> {
        bounded("name", &req.name, NAME_BYTES_MAX)?;
        let who = who(req.who)?;
        let reason = or_default(req.reason, "no reason given");
        let (view, seq) = self
            .0
            .lock()
            .pause_schedule(&req.name, paused, who, reason)
            .map_err(status)?;
        self.0.durable(seq).await?;
        Ok(Response::new(convert::schedule(&view)))
    }

    async fn repair(
        &self,
        req: pb::RepairRequest,
        repair: Repair,
    ) -> Result<Response<pb::Run>, Status> {
        let run = parse_run_id(&req.run_id)?;
        let who = who(req.who)?;
        let reason = or_default(req.reason, "no reason given");
        let seq = self
            .0
            .lock()
            .repair(run, repair, req.step_id, who, reason)
            .map_err(status)?;
        self.answer_run(run, seq).await
    }

    /// Waits until `seq` is durable, then answers the kill switch's state.
    async fn answer_containment(
        &self,
        seq: Seq,
    ) -> Result<Response<pb::ContainmentStatus>, Status> {
        self.0.durable(seq).await?;
        let (state, held) = self.0.lock().containment();
        Ok(Response::new(convert::containment(&state, held)))
    }

    /// Waits until `seq` is durable, then answers the run's state.
    async fn answer_run(&self, run: RunId, seq: Seq) -> Result<Response<pb::Run>, Status> {
        self.0.durable(seq).await?;
        let mut engine = self.0.lock();
        let state = engine.run(run).map_err(status)?;
        let playbook = engine
            .playbook(&state.playbook, state.version)
            .map_err(status)?;
        Ok(Response::new(convert::run(&state, &playbook)))
    }
}

/// The operator's name: required for decisions and repairs (recorded in the history).
fn who(who: String) -> Result<String, Status> {
    let who = who.trim().to_string();
    if who.is_empty() {
        return Err(Status::invalid_argument(
            "`who` is required: name the operator",
        ));
    }
    bounded("who", &who, NAME_BYTES_MAX)?;
    Ok(who)
}

fn or_default(text: String, default: &str) -> String {
    if text.trim().is_empty() {
        default.to_string()
    } else {
        text
    }
}

/// Sends the stored history (for a finished run, all of it, including results rejected after
/// the end), then live events, each only once durable; a live stream ends after `run.finished`.
async fn stream_events(
    shared: Arc<Shared>,
    id: RunId,
    watch: engine::Watch,
    tx: mpsc::Sender<Result<pb::RunEvent, Status>>,
) {
    let run_id = id.to_string();
    if shared.durable(watch.seq).await.is_err() {
        return;
    }
    let mut last = 0;
    for event in &watch.history {
        last = event.seq;
        if tx
            .send(Ok(convert::event_for(&run_id, event)))
            .await
            .is_err()
        {
            return;
        }
    }
    let Some(mut live) = watch.live else { return };
    loop {
        let (seq, event) = match live.recv().await {
            Ok(pair) => pair,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let missed = shared.lock().history_after(id, last);
                let Ok(missed) = missed else { return };
                let seq = shared.store.last_write();
                if shared.durable(seq).await.is_err() {
                    return;
                }
                for event in missed {
                    last = event.seq;
                    if tx
                        .send(Ok(convert::event_for(&run_id, &event)))
                        .await
                        .is_err()
                        || is_final(&event)
                    {
                        return;
                    }
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The run finished; anything not yet sent is in the store.
                let Ok(rest) = shared.lock().history_after(id, last) else {
                    return;
                };
                let seq = shared.store.last_write();
                if shared.durable(seq).await.is_err() {
                    return;
                }
                for event in rest {
                    if tx
                        .send(Ok(convert::event_for(&run_id, &event)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                return;
            }
        };
        if event.seq <= last {
            continue;
        }
        if shared.durable(seq).await.is_err() {
            return;
        }
        last = event.seq;
        if tx
            .send(Ok(convert::event_for(&run_id, &event)))
            .await
            .is_err()
            || is_final(&event)
        {
            return;
        }
    }
}

fn is_final(event: &HistoryEvent) -> bool {
    event.kind == "run.finished"
}
