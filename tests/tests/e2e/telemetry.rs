//! Telemetry end to end: an alert posted with a W3C `traceparent` starts a run whose steps run
//! on a worker process and call a local HTTP server; a real OTLP receiver gets the spans of
//! both processes in the sender's trace, parented alert → rule → run → step → task → action →
//! HTTP call, and the server sees that trace in the request's `traceparent`. The orchestrator
//! is killed (-9) during the run's durable sleep; the step after it still joins the trace. The
//! admin listener's `/metrics` moves with the run, `/healthz` and `/readyz` answer; a JSON log
//! line names its trace. A collector that is down costs counted, dropped spans, and no run. An
//! operator's run is a trace of its own; a worker exporting over OTLP/HTTP sends its spans
//! and its metrics. `/readyz` answers "not ready" while the store is being opened. A
//! schedule's fire and a refused connection are counted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use riposte_tests::alerts::apply_rule;
use riposte_tests::api::{apply_playbook, wait_finished};
use riposte_tests::otlp::{Collector, Span};
use riposte_tests::worker::Worker;
use riposte_tests::{Orchestrator, wait_for, wait_until};

const TOKEN: &str = "generic-s3cret";
const TIMEOUT: Duration = Duration::from_secs(30);
/// The sender's trace and span, as a SIEM would send them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

const RULE: &str = r#"
name: traced
match: "alert.title == 'port scan'"
playbook: traced
"#;

fn playbook(url: &str) -> String {
    format!(
        r#"
name: traced
version: 1
steps:
  - id: first
    action: http.request
    with: {{ url: "{url}/first", method: POST }}
  - id: nap
    needs: [first]
    sleep: 3s
  - id: second
    needs: [nap]
    action: http.request
    with: {{ url: "{url}/second", method: POST }}
"#
    )
}

/// A local server keeping the `traceparent` of every request, by path.
async fn traceparent_server() -> (SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let keep = |path: &'static str, seen: Arc<Mutex<Vec<(String, String)>>>| {
        post(move |headers: HeaderMap| async move {
            let value = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen.lock().unwrap().push((path.to_owned(), value));
            "ok"
        })
    };
    let app = Router::new()
        .route("/first", keep("first", seen.clone()))
        .route("/second", keep("second", seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

async fn scrape(orchestrator: &Orchestrator, path: &str) -> (u16, String) {
    let answer = reqwest::get(format!("{}{path}", orchestrator.admin_url()))
        .await
        .expect("the admin listener answers");
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The value of the metric line that starts with `prefix` (name and labels), 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn one<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert!(
        !found.is_empty(),
        "no {service} span {name:?} among {:#?}",
        spans
            .iter()
            .map(|s| (&s.service, &s.name))
            .collect::<Vec<_>>()
    );
    found[0]
}

#[tokio::test]
async fn a_response_is_one_trace_across_processes_and_a_restart() {
    let collector = Collector::start().await;
    let (server, seen) = traceparent_server().await;
    let mut orchestrator = Orchestrator::builder()
        .alert_secrets(&[("generic", TOKEN)])
        .args(&[
            "--alerts-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &collector.endpoint(),
            "--log-format",
            "json",
        ])
        .start();
    let (status, _) = scrape(&orchestrator, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = scrape(&orchestrator, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, before) = scrape(&orchestrator, "/metrics").await;
    let finished = "riposte_runs_finished_total{";
    assert_eq!(metric(&before, finished), 0.0, "{before}");

    let _worker = Worker::builder(&orchestrator.url())
        .args(&["--http-allow-hosts", &server.to_string()])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let mut client = orchestrator.client();
    apply_playbook(&mut client, &playbook(&format!("http://{server}"))).await;
    let applied = apply_rule(&orchestrator, RULE).await;
    assert_eq!(applied.code(), 0, "{applied}");

    let answer = reqwest::Client::new()
        .post(format!("{}/alerts/generic/siem", orchestrator.alerts_url()))
        .header("X-Riposte-Token", TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{SENDER_SPAN}-01"))
        .body(r#"{"id": "a-1", "title": "port scan"}"#)
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let run_id = body["alerts"][0]["run_id"].as_str().unwrap().to_owned();
    assert!(!run_id.is_empty(), "{body}");

    // The first step is done and exported; the run sleeps: kill the orchestrator, start it
    // again.
    wait_until("the first step's span", TIMEOUT, async || {
        collector
            .trace(TRACE_ID)
            .iter()
            .any(|s| s.name == "step first")
    })
    .await;
    orchestrator.kill9();
    orchestrator.restart();
    let mut client = orchestrator.client();
    let run = wait_finished(&mut client, &run_id, TIMEOUT).await;
    assert_eq!(
        run.status,
        riposte_proto::v1::RunStatus::Succeeded as i32,
        "{run:?}"
    );

    // Both calls carried the sender's trace.
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (_, traceparent) in &calls {
        assert!(
            traceparent.starts_with(&format!("00-{TRACE_ID}-")),
            "{traceparent:?}"
        );
    }

    // The receiver has every span of the response, in one trace, parented.
    let want = [
        ("riposte-orchestrator", "step second"),
        ("riposte-worker", "POST http"),
    ];
    wait_until("the spans after the restart", TIMEOUT, async || {
        let spans = collector.trace(TRACE_ID);
        want.iter().all(|(service, name)| {
            spans
                .iter()
                .filter(|s| s.service == *service && s.name == *name)
                .count()
                >= 1
        }) && spans.iter().filter(|s| s.name == "POST http").count() == 2
    })
    .await;
    let spans = collector.trace(TRACE_ID);
    let orchestrator_service = "riposte-orchestrator";
    let received = one(&spans, orchestrator_service, "alert.received");
    assert_eq!(received.parent_span_id, SENDER_SPAN);
    let decided = one(&spans, orchestrator_service, "rule.decided");
    assert_eq!(decided.parent_span_id, received.span_id);
    let run_span = one(&spans, orchestrator_service, "run");
    assert_eq!(run_span.parent_span_id, decided.span_id);
    assert_eq!(run_span.attribute("riposte.run.id"), Some(run_id.as_str()));
    for step in ["first", "second"] {
        let step_span = one(&spans, orchestrator_service, &format!("step {step}"));
        assert_eq!(step_span.parent_span_id, run_span.span_id, "{step}");
        assert_eq!(step_span.attribute("riposte.action"), Some("http.request"));
        let task = one(&spans, orchestrator_service, &format!("task {step}"));
        assert_eq!(task.parent_span_id, step_span.span_id, "{step}");
        assert_eq!(task.attribute("riposte.outcome"), Some("succeeded"));
        let action = spans
            .iter()
            .find(|s| s.service == "riposte-worker" && s.parent_span_id == task.span_id)
            .unwrap_or_else(|| panic!("no worker span below the task of {step}: {spans:#?}"));
        assert_eq!(action.name, "action http.request");
        assert_eq!(action.attribute("riposte.run.id"), Some(run_id.as_str()));
        let call = spans
            .iter()
            .find(|s| s.name == "POST http" && s.parent_span_id == action.span_id)
            .unwrap_or_else(|| panic!("no HTTP call below the action of {step}"));
        let sent = calls
            .iter()
            .find(|(p, _)| p == step)
            .map(|(_, t)| t.as_str());
        assert_eq!(
            sent,
            Some(format!("00-{TRACE_ID}-{}-01", call.span_id).as_str()),
            "the server saw the call's own span"
        );
    }
    one(&spans, orchestrator_service, "run.finished");

    // A log line of the alert's arrival leads to its trace.
    let logged = orchestrator.logs();
    let line = logged
        .lines()
        .find(|l| l.contains("alert.ingested"))
        .unwrap_or_else(|| panic!("no alert.ingested line in {logged}"));
    let line: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(line["openTelemetry"]["traceId"], TRACE_ID, "{line}");

    // The counters and histograms moved with the run.
    let (_, after) = scrape(&orchestrator, "/metrics").await;
    let succeeded = "riposte_runs_finished_total{playbook=\"traced\",status=\"succeeded\"";
    assert_eq!(metric(&after, succeeded), 1.0, "{after}");
    let steps = "riposte_step_duration_seconds_count{action=\"http.request\",outcome=\"succeeded\"";
    assert_eq!(
        metric(&after, steps),
        1.0,
        "the second step, after the restart: {after}"
    );
    assert!(after.contains("riposte_workers_connected"), "{after}");
    let flushes = "riposte_store_flush_duration_seconds_count";
    assert!(metric(&after, flushes) >= 1.0, "{after}");
}

const CHAIN: &str = r#"
name: chain
version: 1
steps:
  - id: a
    action: core.noop
  - id: b
    needs: [a]
    action: core.noop
"#;

#[tokio::test]
async fn a_collector_that_is_down_costs_dropped_spans_and_no_run() {
    // A port nothing listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let orchestrator = Orchestrator::builder()
        .args(&[
            "--admin-listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &format!("http://{closed}"),
        ])
        .start();
    let _worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    apply_playbook(&mut client, CHAIN).await;
    for _ in 0..5 {
        let run = riposte_tests::api::start_run(&mut client, "chain", serde_json::json!({})).await;
        let run = wait_finished(&mut client, &run.run_id, TIMEOUT).await;
        assert_eq!(run.status, riposte_proto::v1::RunStatus::Succeeded as i32);
    }
    // Each run is at least its own span, two steps, two tasks and its end.
    let dropped = "riposte_telemetry_spans_total{outcome=\"dropped\"";
    wait_until("the spans are counted as dropped", TIMEOUT, async || {
        let (_, text) = scrape(&orchestrator, "/metrics").await;
        metric(&text, dropped) >= 30.0
    })
    .await;
    let (_, text) = scrape(&orchestrator, "/metrics").await;
    let exported = "riposte_telemetry_spans_total{outcome=\"exported\"";
    assert_eq!(metric(&text, exported), 0.0, "{text}");
    let (status, _) = scrape(&orchestrator, "/readyz").await;
    assert_eq!(
        status, 200,
        "a collector that is down does not make the orchestrator unready"
    );
}

#[tokio::test]
async fn an_operator_start_is_a_trace_of_its_own_and_http_export_carries_worker_metrics() {
    let collector = Collector::start().await;
    let orchestrator = Orchestrator::builder()
        .args(&["--otlp-endpoint", &collector.endpoint()])
        .start();
    let _worker = Worker::builder(&orchestrator.url())
        .args(&[
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-endpoint",
            &collector.http_endpoint(),
        ])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .start();
    let mut client = orchestrator.client();
    apply_playbook(&mut client, CHAIN).await;
    let run = riposte_tests::api::start_run(&mut client, "chain", serde_json::json!({})).await;
    wait_finished(&mut client, &run.run_id, TIMEOUT).await;
    // The run's trace id is its id.
    let trace = run.run_id.replace('-', "");
    wait_until("the worker's spans over OTLP/HTTP", TIMEOUT, async || {
        collector
            .trace(&trace)
            .iter()
            .filter(|s| s.service == "riposte-worker")
            .count()
            == 2
    })
    .await;
    wait_until("the run's span", TIMEOUT, async || {
        collector
            .trace(&trace)
            .iter()
            .any(|s| s.name == "run.finished")
    })
    .await;
    let spans = collector.trace(&trace);
    let root = one(&spans, "riposte-orchestrator", "run");
    assert_eq!(
        root.parent_span_id, "",
        "an operator's run is the root of its trace"
    );
    wait_until("the worker's metrics over OTLP/HTTP", TIMEOUT, async || {
        collector
            .metric_names("riposte-worker")
            .iter()
            .any(|m| m == "riposte.worker.task.duration")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_is_not_ready_until_its_store_is_open() {
    // The store's opening waits on a playbook file that is a pipe: it is read once the test
    // writes it. Meanwhile the admin listener, bound first, must answer "not ready".
    let playbooks = tempfile::tempdir().expect("a folder");
    let pipe = playbooks.path().join("chain.yaml");
    nix::unistd::mkfifo(&pipe, nix::sys::stat::Mode::S_IRWXU).expect("a named pipe");
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let folder = playbooks.path().to_str().expect("utf-8").to_owned();
    // Built first, so that the wait below is the orchestrator's alone.
    tokio::task::spawn_blocking(riposte_tests::binaries::binaries)
        .await
        .expect("the binaries built");
    let starting = tokio::task::spawn_blocking(move || {
        Orchestrator::builder()
            .args(&["--admin-listen", &admin.to_string(), "--playbooks", &folder])
            .start()
    });
    let url = format!("http://{admin}/readyz");
    let (status, body) = wait_for("the admin listener", TIMEOUT, async || {
        let answer = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        Ok::<_, String>((status, answer.text().await.map_err(|e| e.to_string())?))
    })
    .await;
    assert_eq!((status, body.as_str()), (503, "not ready: starting\n"));
    assert!(
        !starting.is_finished(),
        "the orchestrator is still opening its store"
    );
    tokio::task::spawn_blocking(move || std::fs::write(&pipe, CHAIN))
        .await
        .unwrap()
        .expect("the playbook written into the pipe");
    let orchestrator = starting.await.expect("the orchestrator started");
    let (status, body) = scrape(&orchestrator, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn schedule_fires_and_refused_connections_are_counted() {
    use riposte_proto::v1::{ApplyScheduleRequest, TriggerScheduleRequest};
    let orchestrator = Orchestrator::builder()
        .alert_secrets(&[("generic", TOKEN)])
        .args(&[
            "--admin-listen",
            "127.0.0.1:0",
            "--alerts-listen",
            "127.0.0.1:0",
            "--alerts-peer-connections-max",
            "1",
        ])
        .start();
    let mut client = orchestrator.client();
    apply_playbook(&mut client, CHAIN).await;
    // A schedule far from its next occurrence, fired by hand.
    let source = "name: nightly\ncron: \"0 0 3 * * *\"\nplaybook: chain\n";
    client
        .apply_schedule(ApplyScheduleRequest {
            source: source.into(),
        })
        .await
        .expect("the schedule applied");
    client
        .trigger_schedule(TriggerScheduleRequest {
            name: "nightly".into(),
        })
        .await
        .expect("the schedule fired");
    // One connection is the peer's whole share: a second is refused.
    let addr = orchestrator
        .alerts_url()
        .trim_start_matches("http://")
        .to_owned();
    let _held = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("a connection");
    let fires = "riposte_schedule_fires_total{fate=\"fired\",schedule=\"nightly\"";
    let refused = "riposte_refusals_total{listener=\"alerts\",reason=\"peer_connections_max\"";
    wait_until("the fire and a refusal counted", TIMEOUT, async || {
        let _refused = tokio::net::TcpStream::connect(&addr).await;
        let (_, text) = scrape(&orchestrator, "/metrics").await;
        metric(&text, fires) == 1.0 && metric(&text, refused) >= 1.0
    })
    .await;
}
