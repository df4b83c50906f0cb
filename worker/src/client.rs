//! The worker's only door to the orchestrator: the gRPC channels, registration (and
//! re-registration after an orchestrator restart), every conversion to and from the wire types,
//! the classification of gRPC errors, and the log lines on each change of reachability.
//!
//! Long polls travel on their own HTTP/2 connection so that up to `concurrency` parked polls
//! never hold up a heartbeat or a result behind the server's stream limit.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use riposte_proto::v1::report_page_request::Outcome as PageOutcome;
use riposte_proto::v1::report_result_request::Outcome as WireOutcome;
use riposte_proto::v1::worker_client::WorkerClient;
use riposte_proto::v1::{
    ClaimPollRequest, HeartbeatRequest, LeaseRef, PollClaim, PollTaskRequest, RegisterRequest,
    RegisterResponse, ReportPageRequest, ReportPageResponse, ReportResultRequest, TaskFailure,
    TaskSuccess,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::{error, info, warn};

use crate::task::{Outcome, Task};
use crate::{Config, Error};

/// Longest wait for the answer to a register or report call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Extra time a long poll is given beyond the wait the orchestrator was asked to hold it.
const POLL_MARGIN: Duration = Duration::from_secs(10);
/// Lease length assumed when the orchestrator answers 0.
const LEASE_DEFAULT: Duration = Duration::from_secs(30);
/// Long-poll wait assumed when the orchestrator answers 0.
const POLL_WAIT_DEFAULT: Duration = Duration::from_secs(20);
/// Shortest heartbeat interval the worker keeps to, whatever the orchestrator answers.
const HEARTBEAT_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// HTTP/2 ping interval, so a dead connection under a parked poll is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The parameters the orchestrator gave at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registration {
    /// A lease lasts this long unless a heartbeat extends it.
    pub(crate) lease: Duration,
    /// Send heartbeats this often.
    pub(crate) heartbeat_interval: Duration,
    /// Ask long polls to wait this long.
    pub(crate) poll_wait: Duration,
}

impl Registration {
    fn from_proto(response: &RegisterResponse) -> Registration {
        let lease = nonzero_ms(response.lease_ms).unwrap_or(LEASE_DEFAULT);
        let heartbeat_interval = nonzero_ms(response.heartbeat_interval_ms).unwrap_or(lease / 3);
        let poll_wait = nonzero_ms(response.poll_wait_ms_max).unwrap_or(POLL_WAIT_DEFAULT);
        let heartbeat_interval = heartbeat_interval.max(HEARTBEAT_INTERVAL_MIN);
        Registration {
            lease,
            heartbeat_interval,
            poll_wait,
        }
    }
}

fn nonzero_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Why a call did not succeed, as far as its caller needs to know.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The orchestrator could not be reached, is overloaded or is shutting down: try again later.
    #[error("orchestrator unreachable: {}", .0.message())]
    Unreachable(Status),
    /// The lease is no longer the current one: drop the result.
    #[error("stale lease: {0}")]
    StaleLease(String),
    /// Any other refusal; retrying the same call will not help.
    #[error("refused by the orchestrator ({:?}): {}", .0.code(), .0.message())]
    Refused(Status),
}

/// How a gRPC error status is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Transient,
    UnknownWorker,
    StaleLease,
    Refused,
}

fn classify(status: &Status) -> Class {
    match status.code() {
        Code::FailedPrecondition | Code::NotFound if is_unknown_worker(status.message()) => {
            Class::UnknownWorker
        }
        Code::FailedPrecondition => Class::StaleLease,
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal => Class::Transient,
        _ => Class::Refused,
    }
}

/// The orchestrator answers calls from a worker it does not know (it restarted and lost its
/// in-memory registry) with FAILED_PRECONDITION and a message saying so.
fn is_unknown_worker(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("unknown worker") || message.contains("not registered")
}

/// Whether the orchestrator answered the last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Unknown,
    Up,
    Down,
}

/// A connection to the orchestrator on behalf of one worker.
#[derive(Debug)]
pub(crate) struct Client {
    request: RegisterRequest,
    control: WorkerClient<Channel>,
    polling: WorkerClient<Channel>,
    registration: Mutex<Registration>,
    /// Counts successful registrations, so that many calls failing at once with "unknown
    /// worker" lead to one new registration.
    epoch: AtomicU64,
    register_lock: tokio::sync::Mutex<()>,
    link: Mutex<Link>,
}

impl Client {
    /// Prepares lazily connecting channels; nothing is sent until the first call.
    pub(crate) fn new(config: &Config, actions: Vec<String>) -> Result<Client, Error> {
        let request = RegisterRequest {
            worker_id: config.worker_id.to_string(),
            name: config.name.clone(),
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            actions,
            concurrency: config.concurrency,
        };
        let endpoint = endpoint(config)?;
        let registration = Registration::from_proto(&RegisterResponse::default());
        Ok(Client {
            request,
            control: WorkerClient::new(endpoint.connect_lazy()),
            polling: WorkerClient::new(endpoint.connect_lazy()),
            registration: Mutex::new(registration),
            epoch: AtomicU64::new(0),
            register_lock: tokio::sync::Mutex::new(()),
            link: Mutex::new(Link::Unknown),
        })
    }

    /// The parameters of the latest registration.
    pub(crate) fn registration(&self) -> Registration {
        *self
            .registration
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or registers again) once.
    pub(crate) async fn register(&self) -> Result<Registration, CallError> {
        let mut client = self.control.clone();
        let call = client.register(self.request.clone());
        let response = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(self.failed(status)),
            Err(_) => return Err(self.failed(no_answer(CALL_TIMEOUT))),
        };
        self.link_up();
        let registration = Registration::from_proto(&response);
        *self
            .registration
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = registration;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        info!(
            name = %self.request.name,
            concurrency = self.request.concurrency,
            lease_ms = registration.lease.as_millis(),
            heartbeat_interval_ms = registration.heartbeat_interval.as_millis(),
            poll_wait_ms = registration.poll_wait.as_millis(),
            "registered with the orchestrator"
        );
        Ok(registration)
    }

    /// Long-polls for one task; `None` when the wait elapsed without one.
    pub(crate) async fn poll_task(&self) -> Result<Option<Task>, CallError> {
        let wait = self.registration().poll_wait;
        let request = PollTaskRequest {
            worker_id: self.request.worker_id.clone(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let response = self
            .call(wait + POLL_MARGIN, || {
                let mut client = self.polling.clone();
                let request = request.clone();
                async move {
                    let response = client.poll_task(request).await?;
                    let trace = riposte_telemetry::context::from_metadata(response.metadata());
                    Ok(response.map(|body| (body, trace)))
                }
            })
            .await?;
        let (response, trace) = response;
        Ok(response.task.map(|task| task_from_proto(task, trace)))
    }

    /// Sends the leases still held; answers the ones to abandon as `(task id, lease token)`.
    pub(crate) async fn heartbeat(
        &self,
        held: Vec<(String, u64)>,
    ) -> Result<Vec<(String, u64)>, CallError> {
        let timeout = self
            .registration()
            .heartbeat_interval
            .clamp(Duration::from_secs(1), CALL_TIMEOUT);
        let request = HeartbeatRequest {
            worker_id: self.request.worker_id.clone(),
            leases: held
                .into_iter()
                .map(|(task_id, lease_token)| LeaseRef {
                    task_id,
                    lease_token,
                })
                .collect(),
        };
        let response = self
            .call(timeout, || {
                let mut client = self.control.clone();
                let request = request.clone();
                async move { client.heartbeat(request).await }
            })
            .await?;
        Ok(response
            .abandon
            .into_iter()
            .map(|lease| (lease.task_id, lease.lease_token))
            .collect())
    }

    /// Reports a task's outcome; answers true when the orchestrator already had this result.
    pub(crate) async fn report(&self, task: &Task, outcome: &Outcome) -> Result<bool, CallError> {
        let request = ReportResultRequest {
            worker_id: self.request.worker_id.clone(),
            task_id: task.task_id.clone(),
            lease_token: task.lease_token,
            outcome: Some(outcome_to_proto(outcome)),
        };
        let response = self
            .call(CALL_TIMEOUT, || {
                let mut client = self.control.clone();
                let request = request.clone();
                async move { client.report_result(request).await }
            })
            .await?;
        Ok(response.duplicate)
    }

    /// Claims a due alert poller; without one, how long to wait before asking again.
    pub(crate) async fn claim_poll(&self) -> Result<Result<PollClaim, Duration>, CallError> {
        let request = ClaimPollRequest {
            worker_id: self.request.worker_id.clone(),
        };
        let response = self
            .call(CALL_TIMEOUT, || {
                let mut client = self.control.clone();
                let request = request.clone();
                async move { client.claim_poll(request).await }
            })
            .await?;
        Ok(response
            .poll
            .ok_or(Duration::from_millis(response.retry_in_ms)))
    }

    /// Hands over page `page` of a claimed poll (or its failure).
    pub(crate) async fn report_page(
        &self,
        claim: &PollClaim,
        page: u32,
        outcome: PageOutcome,
    ) -> Result<ReportPageResponse, CallError> {
        let request = ReportPageRequest {
            worker_id: self.request.worker_id.clone(),
            poller: claim.poller.clone(),
            token: claim.token,
            page,
            outcome: Some(outcome),
        };
        self.call(CALL_TIMEOUT, || {
            let mut client = self.control.clone();
            let request = request.clone();
            async move { client.report_page(request).await }
        })
        .await
    }

    /// Makes one call, registering again (once) and repeating it when the orchestrator does not
    /// know this worker.
    async fn call<T, F, Fut>(&self, timeout: Duration, rpc: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut registered_again = false;
        loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            let status = match tokio::time::timeout(timeout, rpc()).await {
                Ok(Ok(response)) => {
                    self.link_up();
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => status,
                Err(_) => no_answer(timeout),
            };
            if registered_again || classify(&status) != Class::UnknownWorker {
                return Err(self.failed(status));
            }
            self.link_up();
            self.register_again(epoch).await?;
            registered_again = true;
        }
    }

    /// Registers again unless another call already did since `epoch`.
    async fn register_again(&self, epoch: u64) -> Result<(), CallError> {
        let _only_one = self.register_lock.lock().await;
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(());
        }
        warn!(
            "the orchestrator does not know this worker (it restarted, or fenced this worker after a silence); registering again, held leases keep running"
        );
        self.register().await.map(|_| ())
    }

    /// Turns an error status into a [`CallError`], noting a lost connection.
    fn failed(&self, status: Status) -> CallError {
        match classify(&status) {
            Class::Transient => {
                self.link_down(&status);
                CallError::Unreachable(status)
            }
            Class::StaleLease => CallError::StaleLease(status.message().to_owned()),
            Class::UnknownWorker | Class::Refused => CallError::Refused(status),
        }
    }

    fn link_up(&self) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if *link == Link::Down {
            info!("orchestrator reachable again");
        }
        *link = Link::Up;
    }

    fn link_down(&self, status: &Status) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if *link != Link::Down {
            let error = error_chain(status);
            warn!(code = ?status.code(), %error, "orchestrator unreachable; retrying with backoff");
        }
        *link = Link::Down;
    }
}

/// Logs a refusal that an operator must look at (a protocol mismatch, a bad registration).
pub(crate) fn log_refusal(what: &str, error: &CallError) {
    error!(%error, "{what} refused by the orchestrator");
}

/// The status message followed by its sources ("transport error: tcp connect error: ...").
fn error_chain(status: &Status) -> String {
    let mut chain = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        // Layers often repeat their source's text; keep each piece once.
        let text = error.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = error.source();
    }
    chain
}

fn no_answer(timeout: Duration) -> Status {
    let timeout = humantime::format_duration(timeout);
    Status::deadline_exceeded(format!("no answer within {timeout}"))
}

fn endpoint(config: &Config) -> Result<Endpoint, Error> {
    let url = config.orchestrator_url.clone();
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Error::OrchestratorUrl {
            url,
            reason: e.to_string(),
        })?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_INTERVAL)
        .keep_alive_while_idle(true);
    let Some(files) = &config.tls else {
        return Ok(endpoint);
    };
    let tls = riposte_tls::client::config(files, endpoint.uri())?;
    endpoint
        .tls_config(tls)
        .map_err(|e| Error::OrchestratorUrl {
            url: config.orchestrator_url.clone(),
            reason: e.to_string(),
        })
}

fn task_from_proto(
    task: riposte_proto::v1::Task,
    trace: Option<riposte_telemetry::TraceParent>,
) -> Task {
    Task {
        task_id: task.task_id,
        run_id: task.run_id,
        step_id: task.step_id,
        item: task.item,
        attempt: task.attempt,
        action: task.action,
        input_json: task.input_json,
        idempotency_key: task.idempotency_key,
        lease_token: task.lease_token,
        timeout_ms: task.timeout_ms,
        dry_run: task.dry_run,
        trace,
    }
}

fn outcome_to_proto(outcome: &Outcome) -> WireOutcome {
    match outcome {
        Outcome::Success { output_json } => WireOutcome::Success(TaskSuccess {
            output_json: output_json.clone(),
        }),
        Outcome::Failure(failure) => WireOutcome::Failure(TaskFailure {
            message: failure.message.clone(),
            retryable: failure.retryable,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let cases = [
            (
                Status::failed_precondition("unknown worker 0194"),
                Class::UnknownWorker,
            ),
            (
                Status::failed_precondition("worker abc is not registered"),
                Class::UnknownWorker,
            ),
            (
                Status::failed_precondition("lease token 3 is not current"),
                Class::StaleLease,
            ),
            (Status::unavailable("shutting down"), Class::Transient),
            (Status::resource_exhausted("queue full"), Class::Transient),
            (Status::invalid_argument("bad json"), Class::Refused),
            (Status::not_found("no such task"), Class::Refused),
        ];
        for (status, class) in cases {
            assert_eq!(classify(&status), class, "{status:?}");
        }
    }

    #[test]
    fn registration_fills_zero_values() {
        let response = RegisterResponse {
            lease_ms: 9000,
            heartbeat_interval_ms: 0,
            poll_wait_ms_max: 0,
        };
        let registration = Registration::from_proto(&response);
        assert_eq!(registration.lease, Duration::from_secs(9));
        assert_eq!(registration.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(registration.poll_wait, POLL_WAIT_DEFAULT);
    }

    #[test]
    fn outcomes_convert_to_the_wire() {
        let failure = crate::connectors::Failure::retryable("boom");
        let wire = outcome_to_proto(&Outcome::Failure(failure));
        assert_eq!(
            wire,
            WireOutcome::Failure(TaskFailure {
                message: "boom".to_owned(),
                retryable: true
            })
        );
    }
}
