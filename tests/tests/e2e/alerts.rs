//! Alerts end to end through `riposte alerts send|list|show`: the shared Azure Monitor
//! fixture is normalized (its `SourceIP` dimension becomes an attacker IP entity) and stored
//! with its fate; an alert survives `kill -9` right after its acknowledgement; a truncated or
//! over-size payload is refused with a specific error and nothing is stored.

use riposte_tests::Orchestrator;
use riposte_tests::alerts::{AZURE_FIXTURE, ECHO_IP, apply_rule, send_azure_monitor as send};

/// The `SourceIP` dimension of the fixture.
const FIXTURE_IP: &str = "203.0.113.45";
/// Bigger than the orchestrator accepts (256 KiB).
const OVERSIZE_BYTES: usize = 300 * 1024;

async fn listed(orchestrator: &Orchestrator) -> Vec<serde_json::Value> {
    let out = orchestrator
        .cli(&["--output", "json", "alerts", "list"])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    out.json().as_array().expect("a list").clone()
}

#[tokio::test]
async fn an_azure_monitor_alert_is_stored_normalized_with_its_fate_and_survives_kill_9() {
    let mut orchestrator = Orchestrator::start();
    let sent = send(&orchestrator, AZURE_FIXTURE).await;
    assert_eq!(sent.code(), 0, "{sent}");
    let alerts = sent.json();
    let alert = &alerts.as_array().expect("a list")[0];
    let id = alert["id"].as_str().expect("an id").to_string();
    assert_eq!(alert["fate"], "matched_nothing", "no rule is applied");
    assert_eq!(alert["severity"], "high", "Sev1 maps to high");
    let first_ip = &alert["alert"]["entities"]["ips"][0];
    assert_eq!(first_ip["address"], FIXTURE_IP, "{alert}");
    assert_eq!(first_ip["role"], "attacker", "SourceIP is the attacker");

    orchestrator.restart();
    orchestrator.wait_serving().await;

    let alerts = listed(&orchestrator).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["id"], id.as_str());
    assert_eq!(alerts[0]["fate"], "matched_nothing");
    let shown = orchestrator.cli(&["alerts", "show", &id]).await;
    assert_eq!(shown.code(), 0, "{shown}");
    assert!(shown.stdout.contains("matched_nothing"), "{shown}");
    assert!(shown.stdout.contains("received:"), "{shown}");
    assert!(shown.stdout.contains("Z\n"), "an RFC 3339 time: {shown}");
    assert!(
        shown.stdout.contains("payload:\n  {\n"),
        "pretty JSON: {shown}"
    );
    let schema = r#""schemaId": "azureMonitorCommonAlertSchema""#;
    assert!(shown.stdout.contains(schema), "{shown}");
    // With --local, the time carries this machine's offset instead of `Z`.
    let local = orchestrator.cli(&["--local", "alerts", "show", &id]).await;
    let received = local
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("received:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let offset = &received[received.len().saturating_sub(6)..];
    let signed = offset.starts_with('+') || offset.starts_with('-');
    assert!(signed && offset.as_bytes()[3] == b':', "{local}");
    assert!(
        shown
            .stdout
            .contains(&format!("ip {FIXTURE_IP} (attacker)")),
        "{shown}"
    );
}

#[tokio::test]
async fn truncated_and_oversize_payloads_are_refused_and_nothing_is_stored() {
    let orchestrator = Orchestrator::start();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fixture = std::fs::read_to_string(AZURE_FIXTURE).expect("the fixture");

    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &fixture[..fixture.len() / 2]).expect("written");
    let out = send(&orchestrator, truncated.to_str().expect("utf-8")).await;
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("invalid json"), "{out}");

    let oversize = dir.path().join("oversize.json");
    let padded = format!("{}{}", fixture, " ".repeat(OVERSIZE_BYTES));
    std::fs::write(&oversize, padded).expect("written");
    let out = send(&orchestrator, oversize.to_str().expect("utf-8")).await;
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("resource exhausted"), "{out}");
    assert!(out.stderr.contains("exceeds"), "{out}");

    let out = orchestrator
        .cli(&[
            "alerts",
            "send",
            "-f",
            AZURE_FIXTURE,
            "--source",
            "sentinel",
        ])
        .await;
    assert_ne!(
        out.code(),
        0,
        "an Azure Monitor payload is not a Sentinel incident: {out}"
    );

    assert!(listed(&orchestrator).await.is_empty(), "nothing was stored");
}

const RULE: &str = r#"
name: ssh-bruteforce
match: "alert.source == 'azure_monitor' and alert.severity in ['high', 'critical']"
playbook: ip-echo
params:
  ip: "{{ alert.entities.ips[0].address }}"
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 10m }
budget: { runs: 20, per: 1h }
"#;

/// How many times the same alert is sent within the dedup window.
const REPEATS: usize = 50;
/// A run of `core.echo` finishes well within this.
const RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test]
async fn a_matching_rule_starts_one_run_with_the_ip_and_coalesces_the_repeats() {
    use riposte_tests::{Worker, api};
    let orchestrator = Orchestrator::start();
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ECHO_IP).await;
    let applied = apply_rule(&orchestrator, RULE).await;
    assert_eq!(applied.code(), 0, "{applied}");
    let rules = orchestrator
        .cli(&["--output", "json", "rules", "list"])
        .await;
    assert_eq!(rules.json()[0]["name"], "ssh-bruteforce", "{rules}");

    let first = send(&orchestrator, AZURE_FIXTURE).await;
    assert_eq!(first.code(), 0, "{first}");
    let first = &first.json()[0];
    assert_eq!(first["fate"], "started", "{first}");
    let run_id = first["run_id"].as_str().expect("a run").to_string();
    let run = api::wait_finished(&mut client, &run_id, RUN_TIMEOUT).await;
    assert_eq!(
        api::json(&run.params_json)["ip"],
        FIXTURE_IP,
        "{}",
        api::describe(&run)
    );
    let said = api::json(&api::step(&run, "say").output_json);
    assert!(said.to_string().contains(FIXTURE_IP), "{said}");

    for _ in 1..REPEATS {
        let again = send(&orchestrator, AZURE_FIXTURE).await;
        assert_eq!(again.code(), 0, "{again}");
    }
    let alerts = listed(&orchestrator).await;
    assert_eq!(alerts.len(), REPEATS);
    let started: Vec<_> = alerts.iter().filter(|a| a["fate"] == "started").collect();
    let coalesced: Vec<_> = alerts
        .iter()
        .filter(|a| a["fate"] == "deduplicated")
        .collect();
    assert_eq!(started.len(), 1, "{alerts:?}");
    assert_eq!(coalesced.len(), REPEATS - 1, "{alerts:?}");
    assert!(coalesced.iter().all(|a| a["run_id"] == run_id.as_str()));
    let runs = client
        .list_runs(riposte_proto::v1::ListRunsRequest {
            playbook: "ip-echo".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1, "exactly one run");
}

#[tokio::test]
async fn an_alert_no_rule_matches_and_a_refused_start_are_recorded() {
    let orchestrator = Orchestrator::start();
    let no_playbook = RULE
        .replace("ssh-bruteforce", "needs-missing")
        .replace("ip-echo", "missing");
    let applied = apply_rule(&orchestrator, &no_playbook).await;
    assert_eq!(applied.code(), 0, "{applied}");
    let sent = send(&orchestrator, AZURE_FIXTURE).await;
    let alert = &sent.json()[0];
    assert_eq!(alert["fate"], "start_refused", "{alert}");
    assert_eq!(alert["rule"], "needs-missing", "{alert}");
    assert!(
        alert["detail"].as_str().unwrap_or("").contains("missing"),
        "{alert}"
    );

    let bad = apply_rule(
        &orchestrator,
        "name: x\nmatch: \"alert.source ==\"\nplaybook: p\n",
    )
    .await;
    assert_ne!(
        bad.code(),
        0,
        "an expression that does not compile is refused: {bad}"
    );
    assert!(bad.stderr.contains("match"), "{bad}");
}

#[tokio::test]
async fn a_rule_over_its_budget_suppresses_the_run() {
    use riposte_tests::{Worker, api};
    let orchestrator = Orchestrator::start();
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ECHO_IP).await;
    let one_per_hour = RULE
        .replace(
            "dedup: { key: \"{{ alert.entities.ips[0].address }}\", window: 10m }\n",
            "",
        )
        .replace("runs: 20", "runs: 1");
    let applied = apply_rule(&orchestrator, &one_per_hour).await;
    assert_eq!(applied.code(), 0, "{applied}");
    let first = send(&orchestrator, AZURE_FIXTURE).await;
    assert_eq!(first.json()[0]["fate"], "started", "{first}");
    let second = send(&orchestrator, AZURE_FIXTURE).await;
    assert_eq!(second.json()[0]["fate"], "suppressed_by_budget", "{second}");
    assert_eq!(second.json()[0]["run_id"], "", "{second}");
}

/// The Azure Monitor endpoint's secret in these tests.
const AZURE_TOKEN: &str = "azure-s3cret";

fn with_listener() -> Orchestrator {
    Orchestrator::builder()
        .args(&["--alerts-listen", "127.0.0.1:0"])
        .alert_secrets(&[("azure-monitor", AZURE_TOKEN)])
        .start()
}

/// The same listener, its secret read from a file written by hand, with a comment and spaces
/// around the `=` (kept in the folder).
fn with_listener_secrets_file() -> (Orchestrator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("alert-secrets");
    let text = format!("# per-source tokens\nazure-monitor = {AZURE_TOKEN}\n");
    riposte_tests::orchestrator::write_private(&file, &text);
    let orchestrator = Orchestrator::builder()
        .args(&[
            "--alerts-listen",
            "127.0.0.1:0",
            "--alert-secrets-file",
            file.to_str().expect("utf-8"),
        ])
        .start();
    (orchestrator, dir)
}

async fn post(
    orchestrator: &Orchestrator,
    token: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let url = format!("{}/alerts/azure_monitor", orchestrator.alerts_url());
    let mut request = reqwest::Client::new().post(url).body(body);
    if let Some(token) = token {
        request = request.header("X-Riposte-Token", token);
    }
    request.send().await.expect("the alert listener answers")
}

#[tokio::test]
async fn over_http_wrong_secrets_and_bad_bodies_are_refused_and_nothing_is_stored() {
    let (orchestrator, _secrets) = with_listener_secrets_file();
    let fixture = std::fs::read(AZURE_FIXTURE).expect("the fixture");

    let wrong = post(&orchestrator, Some("guess"), fixture.clone()).await;
    assert_eq!(wrong.status().as_u16(), 401);
    let missing = post(&orchestrator, None, fixture.clone()).await;
    assert_eq!(missing.status().as_u16(), 401);
    let other_source = reqwest::Client::new()
        .post(format!(
            "{}/alerts/sentinel?token={AZURE_TOKEN}",
            orchestrator.alerts_url()
        ))
        .body(fixture.clone())
        .send()
        .await
        .expect("answers");
    assert_eq!(
        other_source.status().as_u16(),
        401,
        "a source without a secret refuses all"
    );

    let truncated = post(
        &orchestrator,
        Some(AZURE_TOKEN),
        fixture[..fixture.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(truncated.status().as_u16(), 400);
    let text = truncated.text().await.expect("a body");
    assert!(text.contains("invalid json"), "{text}");

    let mut oversize = fixture.clone();
    oversize.extend(std::iter::repeat_n(b' ', OVERSIZE_BYTES));
    let too_big = post(&orchestrator, Some(AZURE_TOKEN), oversize).await;
    assert_eq!(too_big.status().as_u16(), 413);

    assert!(listed(&orchestrator).await.is_empty(), "nothing was stored");

    let by_query = reqwest::Client::new()
        .post(format!(
            "{}/alerts/azure-monitor?token={AZURE_TOKEN}",
            orchestrator.alerts_url()
        ))
        .body(fixture)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        by_query.status().as_u16(),
        200,
        "the query token is accepted"
    );
    assert_eq!(listed(&orchestrator).await.len(), 1);
}

#[tokio::test]
async fn over_http_one_run_starts_with_the_ip_repeats_coalesce_and_alerts_survive_kill_9() {
    use riposte_tests::{Worker, api};
    let mut orchestrator = with_listener();
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ECHO_IP).await;
    let applied = apply_rule(&orchestrator, RULE).await;
    assert_eq!(applied.code(), 0, "{applied}");
    let fixture = std::fs::read(AZURE_FIXTURE).expect("the fixture");

    let first = post(&orchestrator, Some(AZURE_TOKEN), fixture.clone()).await;
    assert_eq!(first.status().as_u16(), 200);
    let first: serde_json::Value =
        serde_json::from_str(&first.text().await.expect("a body")).expect("JSON");
    assert_eq!(first["alerts"][0]["fate"], "started", "{first}");
    let run_id = first["alerts"][0]["run_id"]
        .as_str()
        .expect("a run")
        .to_string();
    let run = api::wait_finished(&mut client, &run_id, RUN_TIMEOUT).await;
    assert_eq!(api::json(&run.params_json)["ip"], FIXTURE_IP);

    let mut last_id = String::new();
    for _ in 1..REPEATS {
        let again = post(&orchestrator, Some(AZURE_TOKEN), fixture.clone()).await;
        assert_eq!(again.status().as_u16(), 200);
        let again: serde_json::Value =
            serde_json::from_str(&again.text().await.expect("a body")).expect("JSON");
        assert_eq!(again["alerts"][0]["fate"], "deduplicated", "{again}");
        last_id = again["alerts"][0]["id"]
            .as_str()
            .expect("an id")
            .to_string();
    }
    // Killed right after the last 2xx: that alert was durable before the answer.
    orchestrator.restart();
    orchestrator.wait_serving().await;

    let alerts = listed(&orchestrator).await;
    assert_eq!(alerts.len(), REPEATS, "every acknowledged alert survived");
    assert_eq!(alerts[0]["id"], last_id.as_str(), "newest first");
    assert_eq!(alerts[0]["fate"], "deduplicated");
    let started = alerts.iter().filter(|a| a["fate"] == "started").count();
    let coalesced = alerts
        .iter()
        .filter(|a| a["fate"] == "deduplicated" && a["run_id"] == run_id.as_str())
        .count();
    assert_eq!((started, coalesced), (1, REPEATS - 1));
}

#[tokio::test]
async fn a_full_ingestion_queue_answers_429_and_resource_exhausted_and_the_accepted_alert_is_kept()
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let orchestrator = Orchestrator::builder()
        .args(&["--alerts-listen", "127.0.0.1:0", "--alerts-in-flight", "1"])
        .alert_secrets(&[("azure-monitor", AZURE_TOKEN)])
        .start();
    let fixture = std::fs::read(AZURE_FIXTURE).expect("the fixture");
    let addr = orchestrator
        .alerts_url()
        .trim_start_matches("http://")
        .to_string();

    // A sender whose body is still arriving holds the only place in the queue. (It may lose
    // the place to a probe and be refused itself: then it starts again.)
    let head = format!(
        "POST /alerts/azure-monitor HTTP/1.1\r\nHost: {addr}\r\nX-Riposte-Token: {AZURE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        fixture.len()
    );
    let mut slow: Option<tokio::net::TcpStream> = None;
    let refused = riposte_tests::wait_for("the queue is full", RUN_TIMEOUT, async || {
        if let Some(stream) = &slow {
            let mut byte = [0u8; 1];
            if stream.try_read(&mut byte).is_ok() {
                slow = None; // answered (refused) or closed: start again
            }
        }
        if slow.is_none() {
            let mut stream = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            stream
                .write_all(&fixture[..10])
                .await
                .map_err(|e| e.to_string())?;
            slow = Some(stream);
        }
        let answer = post(&orchestrator, Some(AZURE_TOKEN), fixture.clone()).await;
        match answer.status().as_u16() {
            429 => Ok(answer),
            other => Err(format!("{other}")),
        }
    })
    .await;
    let mut slow = slow.expect("the slow sender holds the place");
    let before = listed(&orchestrator).await.len();
    assert_eq!(
        refused.headers()["retry-after"],
        "1",
        "429 says when to retry"
    );
    let over_grpc = send(&orchestrator, AZURE_FIXTURE).await;
    assert_ne!(over_grpc.code(), 0, "{over_grpc}");
    assert!(
        over_grpc.stderr.contains("resource exhausted") && over_grpc.stderr.contains("retry later"),
        "{over_grpc}"
    );
    assert_eq!(
        listed(&orchestrator).await.len(),
        before,
        "nothing refused was stored"
    );

    slow.write_all(&fixture[10..]).await.expect("sent");
    let mut answer = vec![0u8; 4096];
    let n = slow.read(&mut answer).await.expect("answered");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let alerts = listed(&orchestrator).await;
    assert_eq!(alerts.len(), before + 1, "the accepted alert is stored");

    let again = post(&orchestrator, Some(AZURE_TOKEN), fixture).await;
    assert_eq!(again.status().as_u16(), 200, "the place was given back");
}
