//! Alert pollers end to end, against the local Sentinel and Graph: the orchestrator holds the
//! pollers (`--pollers`), a worker with the `sentinel` and `defender` backends fetches their
//! pages.
//!
//! - Exactly once: incidents and Graph alerts are pulled page by page while the polling worker
//!   and then the orchestrator are killed (`kill -9`) mid-window, twice over (the second time
//!   while updated items flow). Every incident and alert arrives once as revision 1, every
//!   update once as revision 2, nothing else.
//! - A pulled Sentinel incident and a pulled Defender alert each start the built-in
//!   `ip-block`, which blocks their address in the NSG and writes back to the incident (a
//!   rule on `alert.revision == 1`: the write-back is itself a change the poller pulls).
//! - A claim answers only to the identity that holds it: a worker without a certificate is
//!   refused, another identity under the same worker id can neither claim the held poller nor
//!   hand over a page of it.
//! - A poller no connected worker can run says so in `riposte alerts sources`; a throttled
//!   list (429 with `Retry-After`) is reported there and polled again after the wait, without
//!   losing anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use riposte_proto::v1::report_page_request::Outcome as PageOutcome;
use riposte_proto::v1::{
    ClaimPollRequest, PolledPage, RegisterRequest, ReportPageRequest, StepStatus,
};
use riposte_tests::alerts::apply_rule;
use riposte_tests::api::Operator;
use riposte_tests::azure::{self as local, AzureServer, Fault};
use riposte_tests::pki::Pki;
use riposte_tests::wait::wait_until;
use riposte_tests::{Orchestrator, Worker, response};
use serde_json::Value;

use crate::transport_security::{worker_api, worker_as};
use tonic::Code;

const SECRET: &str = "local-test-secret-Zq8";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Both pollers, polling every second, each page of `page_size`.
fn pollers_file(dir: &Path, page_size: u32) -> String {
    let text = format!(
        "pollers:\n\
         - name: soc\n  kind: sentinel_incidents\n  workspace: {ws}\n  every: 1s\n  settle: 0s\n  look_back: 1h\n  page_size: {page_size}\n  timeout: 3s\n\
         - name: xdr\n  kind: defender_alerts\n  every: 1s\n  settle: 0s\n  look_back: 1h\n  page_size: {page_size}\n  timeout: 3s\n",
        ws = local::WORKSPACE_ID,
    );
    let path = dir.join("pollers.yaml");
    std::fs::write(&path, text).expect("the pollers file is written");
    path.display().to_string()
}

fn polling_worker(orchestrator: &Orchestrator, azure: &AzureServer, extra: &[&str]) -> Worker {
    Worker::builder(&orchestrator.url())
        .args(&["--sentinel-backend", "azure", "--defender-backend", "azure"])
        .args(extra)
        .azure(azure, SECRET)
        .start()
}

/// `riposte alerts sources` as JSON, by poller name; empty while the orchestrator is down.
async fn sources(orchestrator: &Orchestrator) -> BTreeMap<String, Value> {
    let out = orchestrator
        .cli(&["--output", "json", "alerts", "sources"])
        .await;
    if out.code() != 0 {
        return BTreeMap::new();
    }
    let listed: Value = serde_json::from_str(&out.stdout).expect("JSON");
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// Items ingested by both pollers together (first revisions and later ones).
async fn pulled(orchestrator: &Orchestrator) -> u64 {
    sources(orchestrator)
        .await
        .values()
        .map(|s| s["alerts"].as_u64().unwrap_or(0) + s["revisions"].as_u64().unwrap_or(0))
        .sum()
}

async fn wait_pulled(orchestrator: &Orchestrator, at_least: u64) {
    wait_until(&format!("{at_least} items pulled"), TIMEOUT, async || {
        pulled(orchestrator).await >= at_least
    })
    .await;
}

/// Every stored alert of a pulled source as (vendor id, revision), with how often each came.
async fn arrivals(orchestrator: &Orchestrator) -> BTreeMap<(String, u64), u32> {
    let out = orchestrator
        .cli(&["--output", "json", "alerts", "list", "--all"])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let alerts: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let mut seen = BTreeMap::new();
    for a in alerts.as_array().unwrap() {
        let revision = a["alert"]["revision"]
            .as_u64()
            .expect("a pulled alert has a revision");
        let id = a["alert_id"].as_str().unwrap().to_owned();
        *seen.entry((id, revision)).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn every_incident_and_alert_arrives_once_across_kill_9_of_the_worker_and_the_orchestrator() {
    let azure = AzureServer::start(SECRET).await;
    // Each list and entities answer takes a while: a window of pages takes seconds.
    azure.set_list_delay(Duration::from_millis(40));
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(azure.add_incident(&format!("incident {n}"), &format!("198.51.100.{n}")));
        ids.push(azure.add_graph_alert(&format!("alert {n}"), &format!("198.51.100.{}", 100 + n)));
    }
    let dir = tempfile::tempdir().unwrap();
    let pollers = pollers_file(dir.path(), 3);
    let mut orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .args(&["--pollers", &pollers])
        .start();
    let mut worker = polling_worker(&orchestrator, &azure, &[]);

    // Mid-window: kill the polling worker, then the orchestrator.
    wait_pulled(&orchestrator, 9).await;
    worker.kill9();
    let mut worker = polling_worker(&orchestrator, &azure, &[]);
    wait_pulled(&orchestrator, 24).await;
    orchestrator.restart();
    wait_pulled(&orchestrator, 60).await;

    // Every item changes once; the changes flow while both are killed again.
    let updated: Vec<&String> = ids.iter().step_by(3).collect();
    for id in &updated {
        azure.update_feed_item(id, "Active");
    }
    wait_pulled(&orchestrator, 62).await;
    worker.kill9();
    let _worker = polling_worker(&orchestrator, &azure, &[]);
    wait_pulled(&orchestrator, 66).await;
    orchestrator.restart();
    let expected = 60 + updated.len() as u64;
    wait_pulled(&orchestrator, expected).await;
    // One more window of each poller: nothing new comes.
    let windows = |s: &BTreeMap<String, Value>| {
        s.values()
            .map(|v| v["last_success"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    let before = windows(&sources(&orchestrator).await);
    wait_until("both pollers end another window", TIMEOUT, async || {
        let now = windows(&sources(&orchestrator).await);
        now.iter().zip(&before).all(|(a, b)| a != b)
    })
    .await;

    let seen = arrivals(&orchestrator).await;
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "arrived more than once: {twice:?}");
    let mut wanted: Vec<(String, u64)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    wanted.extend(updated.iter().map(|id| (id.to_string(), 2)));
    wanted.sort();
    let got: Vec<(String, u64)> = seen.into_keys().collect();
    assert_eq!(got, wanted, "each item once, each update once");
    let listed = sources(&orchestrator).await;
    assert_eq!(listed["soc"]["alerts"], 30, "{listed:?}");
    assert_eq!(listed["xdr"]["alerts"], 30, "{listed:?}");
    assert_eq!(
        listed["soc"]["revisions"].as_u64().unwrap() + listed["xdr"]["revisions"].as_u64().unwrap(),
        updated.len() as u64
    );
}

/// A rule that starts `ip-block` for the first address of a first revision from `source`.
fn block_rule(source: &str) -> String {
    format!(
        r#"
name: block-from-{source}
match: "alert.source == '{source}' and alert.revision == 1 and alert.entities.ips | length > 0"
playbook: ip-block
params:
  ip: "{{{{ alert.entities.ips[0].address }}}}"
  duration: 1h
  reason: "{{{{ alert.title }}}}"
"#
    )
}

/// The run the first pulled alert from `source` started.
async fn run_of(orchestrator: &Orchestrator, source: &str) -> String {
    let mut run = String::new();
    wait_until(
        &format!("a pulled {source} alert starts a run"),
        TIMEOUT,
        async || {
            let out = orchestrator
                .cli(&["--output", "json", "alerts", "list"])
                .await;
            let alerts: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let found = alerts
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["source"] == source && a["fate"] == "started");
            if let Some(a) = found {
                run = a["run_id"].as_str().unwrap().to_owned();
            }
            !run.is_empty()
        },
    )
    .await;
    run
}

#[tokio::test]
async fn a_pulled_incident_and_a_pulled_defender_alert_each_start_ip_block_which_writes_back() {
    let azure = AzureServer::start(SECRET).await;
    azure.touch_incident();
    azure.add_graph_alert("Successful SSH brute force attack", "203.0.113.50");
    let dir = tempfile::tempdir().unwrap();
    let pollers = pollers_file(dir.path(), 50);
    let orchestrator = Orchestrator::builder()
        .args(&["--pollers", &pollers])
        .start();
    for source in ["sentinel", "defender"] {
        let applied = apply_rule(&orchestrator, &block_rule(source)).await;
        assert_eq!(applied.code(), 0, "{applied}");
    }
    let _worker = polling_worker(&orchestrator, &azure, &["--firewall-backend", "azure-nsg"]);
    let mut client: Operator = orchestrator.client();

    let incident_run = run_of(&orchestrator, "sentinel").await;
    let run = response::wait_step(
        &mut client,
        &incident_run,
        "incident_update",
        StepStatus::Succeeded,
        TIMEOUT,
    )
    .await;
    assert_eq!(
        riposte_tests::api::json(&run.params_json)["ip"],
        "203.0.113.45"
    );
    let alert_run = run_of(&orchestrator, "defender").await;
    response::wait_step(
        &mut client,
        &alert_run,
        "block",
        StepStatus::Succeeded,
        TIMEOUT,
    )
    .await;

    for address in ["203-0-113-45", "203-0-113-50"] {
        let path = format!("/securityRules/riposte-block-{address}-32");
        assert_eq!(azure.requests_to("PUT", &path).len(), 1, "{path}");
    }
    let comments = azure.incident_comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.contains(&incident_run), "{comments:?}");
    let incident = azure.incident();
    let labels: Vec<&str> = incident["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["ssh", "riposte-contained"]);
    // The write-back changed the incident: it is pulled again as revision 2, and the rule
    // leaves it alone.
    wait_until(
        "the written-back incident is pulled as revision 2",
        TIMEOUT,
        async || sources(&orchestrator).await["soc"]["revisions"] == 1,
    )
    .await;
    let out = orchestrator
        .cli(&["--output", "json", "alerts", "list"])
        .await;
    let alerts: Value = serde_json::from_str(&out.stdout).unwrap();
    let second = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"]["revision"] == 2)
        .expect("revision 2");
    assert_eq!(second["fate"], "matched_nothing");
}

#[tokio::test]
async fn a_throttled_poller_says_so_and_polls_again_after_the_wait() {
    let azure = AzureServer::start(SECRET).await;
    let id = azure.add_graph_alert("Suspicious sign-in", "198.51.100.7");
    // Longer than a page's timeout: the worker gives up and hands the wait to the orchestrator.
    azure.fault(Fault {
        times: 2,
        ..Fault::throttle("GET", "/security/alerts_v2", "4")
    });
    let dir = tempfile::tempdir().unwrap();
    let pollers = pollers_file(dir.path(), 50);
    let orchestrator = Orchestrator::builder()
        .args(&["--pollers", &pollers])
        .start();
    // No worker offers its action yet: the operator is told why nothing is polled.
    let waiting = sources(&orchestrator).await.remove("xdr").unwrap();
    assert_eq!(
        waiting["unserved"], "no connected worker offers defender.list_alerts",
        "{waiting}"
    );
    let table = orchestrator.cli(&["alerts", "sources"]).await;
    assert!(
        table
            .stdout
            .contains("no connected worker offers defender.list_alerts"),
        "{table}"
    );
    let _worker = polling_worker(&orchestrator, &azure, &[]);

    let mut failed = Value::Null;
    wait_until("the poller reports the throttling", TIMEOUT, async || {
        failed = sources(&orchestrator)
            .await
            .remove("xdr")
            .unwrap_or(Value::Null);
        failed["errors"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("TooManyRequests"), "{failed}");
    assert!(failed["unserved"].is_null(), "{failed}");
    assert_eq!(failed["alerts"], 0);

    wait_until("the alert is pulled after the wait", TIMEOUT, async || {
        sources(&orchestrator).await["xdr"]["alerts"] == 1
    })
    .await;
    let listed = sources(&orchestrator).await;
    assert_eq!(listed["xdr"]["errors"], 0, "a success clears the errors");
    assert!(listed["xdr"]["last_error"].is_null(), "{listed:?}");
    let seen = arrivals(&orchestrator).await;
    assert_eq!(seen.get(&(id, 1)), Some(&1));
    // After each throttled answer, nothing was asked before its Retry-After had passed.
    let asked: Vec<_> = azure.requests_to("GET", "/security/alerts_v2");
    for pair in asked[..3].windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(3900),
            "{gap:?} between two list calls"
        );
    }
}

#[tokio::test]
async fn a_poll_claim_answers_only_to_the_identity_that_holds_it() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("worker-policy.yaml");
    let text = "workers:\n  - identity: fw-1\n    actions: [defender.*]\n  - identity: helper-*\n    actions: [defender.*]\n";
    std::fs::write(&policy, text).unwrap();
    let pollers = pollers_file(dir.path(), 50);
    let orchestrator = Orchestrator::builder()
        .tls(&pki)
        .args(&[
            "--worker-policy",
            policy.to_str().unwrap(),
            "--pollers",
            &pollers,
        ])
        .start();
    let mut honest = worker_as(&orchestrator, &pki, "fw-1");
    let mut rogue = worker_as(&orchestrator, &pki, "helper-7");
    let mut anonymous = worker_api(&orchestrator, &pki, None);
    for client in [&mut honest, &mut rogue] {
        // The rogue copies the honest worker's id: under its own identity it is another worker.
        let register = RegisterRequest {
            worker_id: "w-1".into(),
            name: "w-1".into(),
            actions: vec!["defender.list_alerts".into()],
            concurrency: 1,
            ..Default::default()
        };
        client.register(register).await.expect("registered");
    }
    let claim = ClaimPollRequest {
        worker_id: "w-1".into(),
    };
    let refused = anonymous.claim_poll(claim.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let held = honest
        .claim_poll(claim.clone())
        .await
        .expect("claimed")
        .into_inner();
    let held = held.poll.expect("the due poller");
    assert_eq!(
        (held.poller.as_str(), held.action.as_str()),
        ("xdr", "defender.list_alerts")
    );
    let other = rogue
        .claim_poll(claim)
        .await
        .expect("answered")
        .into_inner();
    assert!(other.poll.is_none(), "the poller is held: {other:?}");

    let alert =
        serde_json::json!({"id": "a1", "title": "t", "lastUpdateDateTime": "2026-01-05T07:10:00Z"});
    let page = |worker: &str| ReportPageRequest {
        worker_id: worker.into(),
        poller: held.poller.clone(),
        token: held.token,
        page: 0,
        outcome: Some(PageOutcome::Items(PolledPage {
            items: vec![serde_json::to_vec(&alert).unwrap()],
            more: false,
        })),
    };
    let forged = rogue.report_page(page("w-1")).await.unwrap_err();
    assert_eq!(forged.code(), Code::FailedPrecondition, "{forged:?}");
    assert!(
        !forged.message().contains(&held.token.to_string()),
        "{forged:?}"
    );
    let taken = honest
        .report_page(page("w-1"))
        .await
        .expect("taken")
        .into_inner();
    assert_eq!((taken.ingested, taken.go_on), (1, false));
    let listed = sources(&orchestrator).await;
    assert_eq!(
        listed["xdr"]["alerts"], 1,
        "only the holder's page: {listed:?}"
    );
}
