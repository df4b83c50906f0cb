//! The worker's life: register, run `concurrency` slots that long-poll and execute tasks, one
//! heartbeat loop for the leases held, the alert pollers' loop when it offers a list action
//! (`crate::sources`), and a graceful drain on shutdown.
//!
//! Nothing here is durable. If the process dies, the orchestrator lets its leases expire and
//! runs the tasks elsewhere; if the orchestrator goes away, every loop retries with backoff and
//! the worker never exits because of it.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::Backoff;
use crate::client::{CallError, Client, log_refusal};
use crate::clock;
use crate::connectors::Connectors;
use crate::leases::Leases;
use crate::task::{self, Outcome, Task};
use crate::{Config, Error};

/// Longest time spent retrying one result report before giving up on it (the lease then
/// expires and the task runs again).
const REPORT_RETRY_TOTAL: Duration = Duration::from_secs(600);

/// What every loop of one worker shares.
#[derive(Debug)]
struct Shared {
    client: Client,
    connectors: Connectors,
    leases: Leases,
    /// The worker's name, as operators see it.
    name: String,
}

/// Runs a worker until `shutdown` resolves, then drains: stops polling at once (parked long
/// polls are dropped), lets in-flight tasks finish and report their results, and returns. After
/// `config.drain_timeout` it returns anyway, dropping whatever still runs (those leases expire on
/// the orchestrator).
///
/// Fails only on a configuration that cannot work (bad URL, out-of-bounds concurrency, no HTTP
/// client); an unreachable orchestrator is retried for as long as the worker runs.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.validate()?;
    let span = info_span!("worker", worker.id = %config.worker_id);
    run_worker(config, shutdown).instrument(span).await
}

async fn run_worker(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let connectors = Connectors::new(&config)?;
    connectors.prepare().await?;
    let actions = connectors
        .offered()
        .into_iter()
        .map(|action| action.name().to_owned())
        .collect();
    let client = Client::new(&config, actions)?;
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        client,
        connectors,
        leases: Leases::default(),
    });
    let mut shutdown = pin!(shutdown);
    info!(name = %config.name, orchestrator = %config.orchestrator_url, concurrency = config.concurrency, "worker starting");

    tokio::select! {
        () = &mut shutdown => {
            info!("shutdown before registration");
            return Ok(());
        }
        () = register_until_done(&shared.client) => {}
    }

    let (stop, stopped) = watch::channel(false);
    let mut slots = JoinSet::new();
    for slot in 0..config.concurrency {
        spawn_slot(&mut slots, &shared, &stopped, slot);
    }
    let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&shared)).in_current_span());
    // Alert pollers run here only while this worker offers a list action.
    let polls = shared
        .connectors
        .offered()
        .iter()
        .any(|a| crate::sources::LIST_ACTIONS.contains(&a.name()))
        .then(|| {
            let shared = Arc::clone(&shared);
            let polling = async move {
                crate::sources::poll_loop(&shared.client, &shared.connectors).await;
            };
            tokio::spawn(polling.in_current_span())
        });

    let mut next_slot = config.concurrency;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(joined) = slots.join_next() => {
                // A slot only ends on stop; anything else is a bug in an action. Keep capacity.
                error!(error = ?joined.err(), "a task slot ended unexpectedly; starting a new one");
                spawn_slot(&mut slots, &shared, &stopped, next_slot);
                next_slot += 1;
            }
        }
    }

    info!(
        in_flight = shared.leases.len(),
        "shutting down: polling stopped, draining in-flight tasks"
    );
    let _ = stop.send(true);
    let drain = async { while slots.join_next().await.is_some() {} };
    match tokio::time::timeout(config.drain_timeout, drain).await {
        Ok(()) => info!("drained; worker stopped"),
        Err(_) => warn!(
            abandoned = shared.leases.len(),
            "drain timed out; in-flight tasks dropped, their leases will expire"
        ),
    }
    slots.abort_all();
    heartbeat.abort();
    if let Some(polls) = polls {
        polls.abort();
    }
    Ok(())
}

fn spawn_slot(
    slots: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
    slot: u32,
) {
    let span = info_span!("slot", slot);
    slots.spawn(slot_loop(Arc::clone(shared), stopped.clone()).instrument(span));
}

/// Registers, retrying with backoff until the orchestrator answers.
async fn register_until_done(client: &Client) {
    let mut backoff = Backoff::new();
    loop {
        match client.register().await {
            Ok(_) => return,
            Err(error @ CallError::Refused(_)) => log_refusal("registration", &error),
            Err(error) => debug!(%error, "registration failed"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One slot: long-poll while free, run the task it gets, report, repeat; return on stop.
async fn slot_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    loop {
        let polled = tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            polled = shared.client.poll_task() => polled,
        };
        let error = match polled {
            Ok(Some(task)) => {
                backoff.reset();
                run_task(&shared, task).await;
                continue;
            }
            Ok(None) => {
                backoff.reset();
                continue;
            }
            Err(error) => error,
        };
        match &error {
            CallError::Refused(_) => log_refusal("poll", &error),
            _ => debug!(%error, "poll failed"),
        }
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Runs one task under its lease and reports the outcome. An abandon cancels the action while it
/// runs; an action that already finished is reported even if its lease was lost meanwhile, so
/// the orchestrator records that it ran (and rejects the late result).
async fn run_task(shared: &Shared, task: Task) {
    let span = info_span!(
        "task",
        task.id = %task.task_id,
        run.id = %task.run_id,
        step.id = %task.step_id,
        item = task.item,
        attempt = task.attempt,
        action = %task.action,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if let Some(parent) = &task.trace {
        // Exported with the attributes every Riposte span uses.
        use riposte_telemetry::context::OpenTelemetrySpanExt as _;
        parent.adopt_by(&span);
        span.record("otel.name", format!("action {}", task.action));
        span.record("otel.kind", "consumer");
        for (key, value) in [
            ("riposte.run.id", task.run_id.clone()),
            ("riposte.step.id", task.step_id.clone()),
            ("riposte.action", task.action.clone()),
            ("riposte.worker.name", shared.name.clone()),
        ] {
            span.set_attribute(key, value);
        }
        span.set_attribute("riposte.attempt", i64::from(task.attempt));
        if task.dry_run {
            span.set_attribute("riposte.dry_run", true);
        }
    }
    async {
        let mut lease = shared.leases.hold(&task.task_id, task.lease_token);
        debug!(timeout_ms = task.timeout_ms, "task started");
        let started = clock::monotonic();
        let outcome = tokio::select! {
            outcome = task::execute(&shared.connectors, &task) => outcome,
            () = lease.abandoned() => {
                warn!("lease abandoned: action cancelled, no result reported");
                return;
            }
        };
        log_outcome(&outcome, started.elapsed());
        let labels = [
            opentelemetry::KeyValue::new("action", task.action.clone()),
            opentelemetry::KeyValue::new(
                "outcome",
                match &outcome {
                    Outcome::Success { .. } => "succeeded",
                    Outcome::Failure(_) => "failed",
                },
            ),
        ];
        crate::telemetry::metrics()
            .task_duration
            .record(started.elapsed().as_secs_f64(), &labels);
        report(&shared.client, &task, &outcome).await;
    }
    .instrument(span)
    .await
}

fn log_outcome(outcome: &Outcome, elapsed: Duration) {
    let elapsed_ms = elapsed.as_millis();
    match outcome {
        Outcome::Success { output_json } => info!(
            elapsed_ms,
            output_bytes = output_json.len(),
            "task succeeded"
        ),
        Outcome::Failure(failure) => {
            info!(elapsed_ms, retryable = failure.retryable, error = %failure.message, "task failed")
        }
    }
}

/// Reports an outcome, retrying an unreachable orchestrator with backoff for at most
/// [`REPORT_RETRY_TOTAL`]. A stale lease or a refusal ends it: retrying cannot help.
async fn report(client: &Client, task: &Task, outcome: &Outcome) {
    let give_up_at = clock::monotonic() + REPORT_RETRY_TOTAL;
    let mut backoff = Backoff::new();
    loop {
        let error = match client.report(task, outcome).await {
            Ok(false) => {
                debug!("result reported");
                return;
            }
            Ok(true) => {
                info!("result was already recorded");
                return;
            }
            Err(CallError::StaleLease(message)) => {
                warn!(%message, "result rejected: the lease is no longer current");
                return;
            }
            Err(error @ CallError::Refused(_)) => {
                log_refusal("result", &error);
                return;
            }
            Err(error @ CallError::Unreachable(_)) => error,
        };
        let delay = backoff.next_delay();
        if clock::monotonic() + delay > give_up_at {
            let total = humantime::format_duration(REPORT_RETRY_TOTAL);
            warn!(%error, "gave up reporting the result after {total}; the lease will expire");
            return;
        }
        debug!(%error, "report failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Every heartbeat interval, sends the leases held and cancels the ones to abandon.
async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut period = shared.client.registration().heartbeat_interval;
    let mut ticker = heartbeat_ticker(period);
    loop {
        ticker.tick().await;
        match shared.client.heartbeat(shared.leases.snapshot()).await {
            Ok(abandon) => abandon_leases(&shared.leases, abandon),
            Err(error @ CallError::Refused(_)) => log_refusal("heartbeat", &error),
            Err(error) => debug!(%error, "heartbeat failed"),
        }
        // A new registration may have brought a new interval.
        let current = shared.client.registration().heartbeat_interval;
        if current != period {
            period = current;
            ticker = heartbeat_ticker(period);
        }
    }
}

fn heartbeat_ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval_at(clock::monotonic() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

fn abandon_leases(leases: &Leases, abandon: Vec<(String, u64)>) {
    for (task_id, lease_token) in abandon {
        if leases.abandon(&task_id, lease_token) {
            info!(task.id = %task_id, "the orchestrator asked to abandon a lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CONCURRENCY_MAX;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_can_be_spawned() {
        let future = run(Config::new("http://127.0.0.1:1"), async {});
        assert_send(&future);
    }

    #[tokio::test]
    async fn bad_config_fails_before_connecting() {
        let config = Config::new("http://127.0.0.1:1").with_concurrency(CONCURRENCY_MAX + 1);
        let error = run(config, std::future::pending())
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "invalid configuration: concurrency 257 is not in 1..=256"
        );
    }

    #[tokio::test]
    async fn shutdown_while_unreachable_returns() {
        // Port 1 on loopback refuses connections: the worker keeps retrying until shutdown.
        let config = Config::new("http://127.0.0.1:1");
        let shutdown = tokio::time::sleep(Duration::from_millis(300));
        let result = tokio::time::timeout(Duration::from_secs(5), run(config, shutdown)).await;
        assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    }
}
