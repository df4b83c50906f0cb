//! Talking to the orchestrator through its public gRPC API the way an operator's script
//! would: apply a playbook, start a run, wait for it to finish, read its history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use riposte_proto::v1::{
    ApplyPlaybookRequest, ApplyPlaybookResponse, GetRunRequest, Run, RunEvent, RunStatus,
    StartRunRequest, StartRunResponse, Step, WatchRunRequest,
};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::wait::wait_for;

/// The operator client type used throughout.
pub use crate::access::Operator;

/// Longest time reading the stored history of a finished run may take.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// The same over TLS with `tls` (the CA to trust, the client certificate to present).
pub fn tls_channel(url: &str, tls: &riposte_tls::client::Files) -> Channel {
    let endpoint = Endpoint::from_shared(url.to_string()).expect("a valid URL");
    let config = riposte_tls::client::config(tls, endpoint.uri()).expect("the TLS files read");
    endpoint
        .tls_config(config)
        .expect("a TLS configuration")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// A lazily connected channel to `url`: it connects on first use and again after the server
/// went away, so it survives an orchestrator restart.
pub fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// Applies a playbook; panics when the orchestrator refuses it.
pub async fn apply_playbook(client: &mut Operator, source: &str) -> ApplyPlaybookResponse {
    client
        .apply_playbook(ApplyPlaybookRequest {
            source: source.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("ApplyPlaybook refused: {status:?}"))
        .into_inner()
}

/// Starts a run of the latest version of `playbook` with `params` (a JSON object).
pub async fn start_run(client: &mut Operator, playbook: &str, params: Value) -> Run {
    let request = StartRunRequest {
        playbook: playbook.into(),
        params_json: params.to_string(),
        ..Default::default()
    };
    start_run_with(client, request)
        .await
        .run
        .expect("StartRun answers the run")
}

/// Sends `request`; panics when the orchestrator refuses it.
pub async fn start_run_with(client: &mut Operator, request: StartRunRequest) -> StartRunResponse {
    client
        .start_run(request)
        .await
        .unwrap_or_else(|status| panic!("StartRun refused: {status:?}"))
        .into_inner()
}

/// The run as the orchestrator sees it now.
pub async fn get_run(client: &mut Operator, run_id: &str) -> Run {
    client
        .get_run(GetRunRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("GetRun {run_id}: {status:?}"))
        .into_inner()
}

/// Polls GetRun until the run is no longer running; transport errors (an orchestrator being
/// restarted) count as "not yet".
pub async fn wait_finished(client: &mut Operator, run_id: &str, timeout: Duration) -> Run {
    wait_for(
        &format!("run {run_id} finishes"),
        timeout,
        async || match client
            .get_run(GetRunRequest {
                run_id: run_id.into(),
            })
            .await
        {
            Ok(run) if run.get_ref().status() != RunStatus::Running => Ok(run.into_inner()),
            Ok(run) => Err(describe(run.get_ref())),
            Err(status) => Err(format!("GetRun: {status}")),
        },
    )
    .await
}

/// One WatchRun of `run_id` to the end of its stream.
async fn read_history(client: &mut Operator, run_id: &str) -> Result<Vec<RunEvent>, tonic::Status> {
    let request = WatchRunRequest {
        run_id: run_id.into(),
    };
    let mut stream = client.watch_run(request).await?.into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

/// The whole stored history of a run, read from WatchRun until the stream ends. For a finished
/// run the stream ends by itself; for a running run this waits for the end (bounded).
/// An UNAVAILABLE answer (the store is being opened again after a disk failure) is retried.
pub async fn history(client: &mut Operator, run_id: &str) -> Vec<RunEvent> {
    let read = async {
        loop {
            match read_history(client, run_id).await {
                Ok(events) => return events,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("WatchRun {run_id}: {status:?}"),
            }
        }
    };
    tokio::time::timeout(HISTORY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            panic!("the history of run {run_id} did not end within {HISTORY_TIMEOUT:?}")
        })
}

/// A run's history as it happens: a background task follows WatchRun and keeps every event.
pub struct HistoryWatch {
    events: Arc<Mutex<Vec<RunEvent>>>,
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HistoryWatch {
    /// Starts following `run_id`.
    pub fn start(client: &Operator, run_id: &str) -> HistoryWatch {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (mut client, run_id) = (client.clone(), run_id.to_string());
        let (sink, end) = (events.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let why = match client.watch_run(WatchRunRequest { run_id }).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.next().await {
                            Some(Ok(event)) => sink.lock().unwrap().push(event),
                            Some(Err(status)) => break format!("stream broke: {status}"),
                            None => break "stream ended".to_string(),
                        }
                    }
                }
                Err(status) => format!("WatchRun refused: {status}"),
            };
            *end.lock().unwrap() = Some(why);
        });
        HistoryWatch {
            events,
            ended,
            task,
        }
    }

    /// The events seen so far.
    pub fn events(&self) -> Vec<RunEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until an event of `kind` arrives and returns the first such event.
    pub async fn wait_kind(&self, kind: &str, timeout: Duration) -> RunEvent {
        self.wait_nth_kind(kind, 1, timeout).await
    }

    /// Waits until `n` events of `kind` arrived and returns the n-th.
    pub async fn wait_nth_kind(&self, kind: &str, n: usize, timeout: Duration) -> RunEvent {
        wait_for(
            &format!("{n} `{kind}` event(s) in the history"),
            timeout,
            async || {
                let events = self.events();
                match events.iter().filter(|e| e.kind == kind).nth(n - 1) {
                    Some(event) => Ok(event.clone()),
                    None => {
                        let end = self.ended.lock().unwrap().clone().unwrap_or_default();
                        Err(format!("{:?} {end}", kinds(&events)))
                    }
                }
            },
        )
        .await
    }
}

impl Drop for HistoryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[RunEvent]) -> Vec<String> {
    events.iter().map(|e| e.kind.clone()).collect()
}

/// How many of `events` are of `kind`.
pub fn count(events: &[RunEvent], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// The step `id` of `run`; panics when there is none.
pub fn step<'a>(run: &'a Run, id: &str) -> &'a Step {
    run.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("run {} has no step {id}: {}", run.run_id, describe(run)))
}

/// A JSON text field parsed; panics when it is not JSON.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// One line about a run and its steps, for failure messages.
pub fn describe(run: &Run) -> String {
    let steps: Vec<String> = run
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}={:?}({}/{})",
                s.id,
                s.status(),
                s.items_succeeded,
                s.items_total
            )
        })
        .collect();
    format!(
        "run {} {:?} [{}] {:?}",
        run.run_id,
        run.status(),
        steps.join(" "),
        run.error
    )
}

/// The overall health status (service `""`) at `url`.
pub async fn health(url: &str) -> Result<ServingStatus, tonic::Status> {
    health_of(url, "").await
}

/// The health of one service (`""`: the whole server), e.g. `riposte.store`.
pub async fn health_of(url: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    health_on(channel(url), service).await
}

/// The health of one service over `channel`.
pub async fn health_on(channel: Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(reply.into_inner().status())
}
