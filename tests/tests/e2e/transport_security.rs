//! Trust on the wire: the orchestrator serves TLS; a worker is whoever its client certificate
//! (from the orchestrator's client CA, not expired) names, offers only what the worker policy
//! lets that identity offer, and a lease answers only to the identity that holds it. Refusals
//! name no lease token. A rotated certificate is served without a restart. (Plaintext on a
//! non-loopback address is a start failure: see `startup_shutdown`.)

use std::time::Duration;

use riposte_proto::v1::worker_client::WorkerClient;
use riposte_proto::v1::{
    HeartbeatRequest, LeaseRef, ListAlertsRequest, ListPlaybooksRequest, ListWorkersRequest,
    PollTaskRequest, RegisterRequest, ReportResultRequest, RunStatus, TaskSuccess,
    report_result_request::Outcome,
};
use riposte_tests::host;
use riposte_tests::netns::Topology;
use riposte_tests::pki::Pki;
use riposte_tests::{Orchestrator, Worker, api, wait_for};
use riposte_tls::Role;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

const TIMEOUT: Duration = Duration::from_secs(20);

const POLICY: &str = "
workers:
  - identity: fw-1
    actions: [core.*, http.*, notify.*, firewall.*]
  - identity: helper-*
    actions: [core.*]
";

const ONE_NOOP: &str = "
name: one-noop
version: 1
steps:
  - { id: only, action: core.noop }
";

/// An orchestrator serving TLS with certificates from `pki`, and [`POLICY`].
fn secured(pki: &Pki) -> Orchestrator {
    let policy = pki.dir().join("worker-policy.yaml");
    std::fs::write(&policy, POLICY).expect("the policy written");
    Orchestrator::builder()
        .tls(pki)
        .args(&["--worker-policy", policy.to_str().expect("utf-8")])
        .start()
}

/// A worker API client presenting `cert` (or none).
pub(crate) fn worker_api(
    orchestrator: &Orchestrator,
    pki: &Pki,
    cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> WorkerClient<Channel> {
    let files = riposte_tls::client::Files { ca: pki.ca(), cert };
    WorkerClient::new(api::tls_channel(&orchestrator.url(), &files))
}

/// A worker API client presenting a worker certificate naming `name`.
pub(crate) fn worker_as(
    orchestrator: &Orchestrator,
    pki: &Pki,
    name: &str,
) -> WorkerClient<Channel> {
    worker_api(orchestrator, pki, Some(pki.client(Role::Worker, name)))
}

fn register(id: &str, actions: &[&str]) -> RegisterRequest {
    RegisterRequest {
        worker_id: id.into(),
        name: id.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        concurrency: 1,
        ..Default::default()
    }
}

async fn worker_names(orchestrator: &Orchestrator) -> Vec<String> {
    let mut client = orchestrator.client();
    let reply = client.list_workers(ListWorkersRequest {}).await;
    let workers = reply.expect("ListWorkers answers").into_inner().workers;
    workers.into_iter().map(|w| w.worker_id).collect()
}

#[tokio::test]
async fn only_a_worker_with_a_valid_certificate_from_the_client_ca_connects() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let other_ca = Pki::new();
    let (valid, expired) = (pki.client(Role::Worker, "fw-1"), pki.expired_worker("fw-1"));
    let foreign = other_ca.client(Role::Worker, "fw-1");
    let start = |name: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Worker::builder(&orchestrator.url())
            .name(name)
            .args(&args)
            .start()
    };
    let no_cert = start(
        "no-cert",
        vec!["--tls-ca".into(), pki.ca().display().to_string()],
    );
    let mut foreign_args = pki.worker_args(&foreign);
    foreign_args[1] = pki.ca().display().to_string();
    let foreign_worker = start("foreign", foreign_args);
    let expired_worker = start("expired", pki.worker_args(&expired));
    let good = start("good", pki.worker_args(&valid));

    let mut client = orchestrator.client();
    let id = good.id(&mut client).await;
    assert!(
        id.starts_with("fw-1/"),
        "the worker is known by its identity: {id}"
    );
    // Each refused worker has tried and said why.
    wait_for("the refused workers have tried", TIMEOUT, async || {
        let no_cert = no_cert.log_tail();
        let refused = no_cert.contains("must present a client certificate")
            && !foreign_worker.log_tail().is_empty()
            && !expired_worker.log_tail().is_empty();
        refused.then_some(()).ok_or(no_cert)
    })
    .await;
    assert_eq!(worker_names(&orchestrator).await, vec![id]);
    let log = orchestrator.log_tail();
    assert!(
        log.contains("grpc.refused") && log.contains("tls_handshake_failed"),
        "{log}"
    );

    // The same, at the API: no certificate is UNAUTHENTICATED, another CA or an expired one
    // never gets past the handshake.
    let mut anonymous = worker_api(&orchestrator, &pki, None);
    let refused = anonymous
        .register(register("x", &["core.noop"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    for cert in [expired, foreign] {
        let files = riposte_tls::client::Files {
            ca: pki.ca(),
            cert: Some(cert),
        };
        let mut client = WorkerClient::new(api::tls_channel(&orchestrator.url(), &files));
        let refused = client
            .register(register("x", &["core.noop"]))
            .await
            .unwrap_err();
        let closed = matches!(
            refused.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown
        );
        assert!(closed, "the handshake fails: {refused:?}");
    }
}

#[tokio::test]
async fn an_identity_offers_only_what_the_worker_policy_allows() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let mut helper = worker_as(&orchestrator, &pki, "helper-1");
    let refused = helper
        .register(register("h1", &["core.noop", "firewall.block_ip"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "identity `helper-1` may not offer `firewall.block_ip` (the worker policy allows `core.*`)"
    );
    let mut labelled = register("h1", &["core.noop"]);
    labelled.labels.insert("zone".into(), "dmz".into());
    let refused = helper.register(labelled).await.unwrap_err();
    assert!(
        refused.message().contains("may not carry label `zone=dmz`"),
        "{refused:?}"
    );
    let mut stranger = worker_as(&orchestrator, &pki, "x-9");
    let refused = stranger
        .register(register("x9", &["core.noop"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut operator = worker_api(
        &orchestrator,
        &pki,
        Some(pki.client(Role::Operator, "fw-1")),
    );
    let refused = operator
        .register(register("op", &["core.noop"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(worker_names(&orchestrator).await.is_empty());
    helper
        .register(register("h1", &["core.noop"]))
        .await
        .expect("within its policy");
}

#[tokio::test]
async fn a_narrower_policy_evicts_a_registered_worker_without_a_restart() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let mut helper = worker_as(&orchestrator, &pki, "helper-1");
    helper
        .register(register("h1", &["core.noop"]))
        .await
        .expect("allowed");
    assert_eq!(
        worker_names(&orchestrator).await,
        vec!["helper-1/h1".to_string()]
    );
    let anonymous_looking = helper.register(register("fw-1/h1", &["core.noop"])).await;
    assert_eq!(anonymous_looking.unwrap_err().code(), Code::InvalidArgument);

    let narrower = pki.dir().join("worker-policy.new");
    std::fs::write(&narrower, "workers: [{identity: fw-1, actions: ['*']}]\n").expect("written");
    std::fs::rename(&narrower, pki.dir().join("worker-policy.yaml")).expect("replaced");
    wait_for("the worker is evicted", TIMEOUT, async || {
        let names = worker_names(&orchestrator).await;
        names.is_empty().then_some(()).ok_or(format!("{names:?}"))
    })
    .await;
    let refused = helper
        .register(register("h1", &["core.noop"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let log = orchestrator.log_tail();
    assert!(
        log.contains("worker_policy.reloaded") && log.contains("worker.evicted"),
        "{log}"
    );
}

#[tokio::test]
async fn a_lease_answers_only_to_the_identity_that_holds_it() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ONE_NOOP).await;
    let mut honest = worker_as(&orchestrator, &pki, "fw-1");
    let mut rogue = worker_as(&orchestrator, &pki, "helper-7");
    honest
        .register(register("w-1", &["core.noop"]))
        .await
        .expect("registered");
    // The rogue copies the honest worker's id: under its own identity it is another worker.
    rogue
        .register(register("w-1", &["core.noop"]))
        .await
        .expect("registered");
    let run = api::start_run(&mut client, "one-noop", json!({})).await;
    let poll = PollTaskRequest {
        worker_id: "w-1".into(),
        wait_ms: 5000,
    };
    let task = honest
        .poll_task(poll)
        .await
        .expect("polled")
        .into_inner()
        .task;
    let task = task.expect("the honest worker got the task");
    let token = task.lease_token;

    let forged = ReportResultRequest {
        worker_id: "w-1".into(),
        task_id: task.task_id.clone(),
        lease_token: token,
        outcome: Some(Outcome::Success(TaskSuccess {
            output_json: r#"{"said":"forged"}"#.into(),
        })),
    };
    let refused = rogue.report_result(forged.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(message.contains("leased to another worker"), "{message}");
    assert!(
        !message.contains("token"),
        "the refusal names no token: {message}"
    );
    let heartbeat = HeartbeatRequest {
        worker_id: "w-1".into(),
        leases: vec![LeaseRef {
            task_id: task.task_id.clone(),
            lease_token: token,
        }],
    };
    rogue
        .heartbeat(heartbeat)
        .await
        .expect("a heartbeat of its own");

    let mut honest_report = forged;
    honest_report.outcome = Some(Outcome::Success(TaskSuccess {
        output_json: r#"{"said":"honest"}"#.into(),
    }));
    honest
        .report_result(honest_report)
        .await
        .expect("the holder's result is accepted");
    let run = api::wait_finished(&mut client, &run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert_eq!(
        api::json(&api::step(&run, "only").output_json),
        json!({"said": "honest"})
    );
    let events = api::history(&mut client, &run.run_id).await;
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "task.result_rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{:?}", api::kinds(&events));
    assert!(
        rejected[0].worker_id.starts_with("helper-7/"),
        "who sent it: {:?}",
        rejected[0]
    );
    let shown = orchestrator.cli(&["runs", "show", &run.run_id]).await;
    assert_eq!(shown.code(), 0, "{shown}");
    assert!(!shown.stdout.contains(&format!("token {token}")), "{shown}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ONE_NOOP).await;
    // A new certificate from another CA replaces the served one in place: new connections
    // get it (and a client trusting only the old CA no longer connects), without a restart.
    let rotated = Pki::new();
    let (cert, key) = rotated.server("rotated");
    let (served_cert, served_key) = (pki.dir().join("server.pem"), pki.dir().join("server.key"));
    std::fs::copy(&key, pki.dir().join("server.key.new")).expect("copied");
    std::fs::copy(&cert, pki.dir().join("server.pem.new")).expect("copied");
    std::fs::rename(pki.dir().join("server.key.new"), &served_key).expect("renamed");
    std::fs::rename(pki.dir().join("server.pem.new"), &served_cert).expect("renamed");
    let trusting_new = riposte_tls::client::Files {
        ca: rotated.ca(),
        cert: None,
    };
    wait_for("the rotated certificate is served", TIMEOUT, async || {
        let channel = api::tls_channel(&orchestrator.url(), &trusting_new);
        api::health_on(channel, "")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(orchestrator.log_tail().contains("tls.reloaded"));
    // The connection opened before the rotation still works.
    let list = client.list_playbooks(ListPlaybooksRequest {}).await;
    assert!(list.is_ok(), "{list:?}");
}

#[tokio::test]
async fn a_deployment_issued_by_riposte_certs_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let ca = dir.path().join("ca");
    let ca_arg = ca.to_str().expect("utf-8");
    certs(&["certs", "init", ca_arg]).await;
    let again = riposte_tests::cli::cli("http://127.0.0.1:1", &["certs", "init", ca_arg]).await;
    assert_eq!(again.code(), 2, "a CA is never overwritten: {again}");
    certs(&[
        "certs",
        "server",
        ca_arg,
        "--name",
        "localhost",
        "--name",
        "127.0.0.1",
    ])
    .await;
    certs(&["certs", "worker", ca_arg, "fw-1"]).await;
    let issued = certs(&["certs", "operator", ca_arg, "alice"]).await;
    assert!(!issued.stdout.contains("PRIVATE KEY"), "{issued}");
    let mode = |p: &str| {
        let meta = std::fs::metadata(ca.join(p)).expect("written");
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777
    };
    assert_eq!((mode("ca.key"), mode("worker-fw-1.key")), (0o600, 0o600));

    let policy = dir.path().join("worker-policy.yaml");
    std::fs::write(&policy, POLICY).expect("the policy written");
    let path = |p: &str| ca.join(p).display().to_string();
    let orchestrator = Orchestrator::builder()
        .args(&[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server.key"),
            "--client-ca",
            &path("ca.pem"),
            "--worker-policy",
            policy.to_str().expect("utf-8"),
        ])
        .tls_dir(&ca.join("operator-alice"))
        .principal("cert:alice", &["admin"])
        .start();
    assert!(orchestrator.url().starts_with("https://"));
    let worker = Worker::builder(&orchestrator.url())
        .args(&[
            "--tls-ca",
            &path("ca.pem"),
            "--tls-cert",
            &path("worker-fw-1.pem"),
            "--tls-key",
            &path("worker-fw-1.key"),
        ])
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ONE_NOOP).await;
    let out = orchestrator.cli(&["run", "one-noop", "--wait"]).await;
    assert_eq!(out.code(), 0, "the CLI over TLS as alice: {out}");
    let me = orchestrator.cli(&["whoami"]).await;
    assert!(me.stdout.contains("cert:alice (certificate)"), "{me}");
}

/// `riposte certs ...`, which must succeed without an orchestrator.
async fn certs(args: &[&str]) -> riposte_tests::cli::CliOutput {
    let out = riposte_tests::cli::cli("http://127.0.0.1:1", args).await;
    assert_eq!(out.code(), 0, "{out}");
    out
}

#[tokio::test]
async fn alerts_arrive_over_https_and_syslog_over_tls() {
    let pki = Pki::new();
    let orchestrator = Orchestrator::builder()
        .tls(&pki)
        .alert_secrets(&[("generic", "s3cret-generic")])
        .args(&[
            "--alerts-listen",
            "127.0.0.1:0",
            "--syslog-tls",
            "127.0.0.1:0",
        ])
        .start();
    let url = orchestrator.alerts_url();
    assert!(url.starts_with("https://"), "{url}");
    let ca = std::fs::read(pki.ca()).expect("the CA");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM certificate"))
        .build()
        .expect("a client");
    let answer = https
        .post(format!("{url}/alerts/generic/edr"))
        .header("X-Riposte-Token", "s3cret-generic")
        .body(r#"{"id": "over-tls", "title": "sent over https"}"#)
        .send()
        .await
        .expect("the alert listener answers over TLS");
    assert_eq!(answer.status().as_u16(), 200);
    // Plaintext to the same port gets no answer.
    let plain = reqwest::Client::new()
        .post(url.replace("https://", "http://") + "/alerts/generic/edr")
        .header("X-Riposte-Token", "s3cret-generic")
        .body("{}")
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // RFC 5425: octet-counted messages in a TLS session.
    let mut roots = riposte_tls::tokio_rustls::rustls::RootCertStore::empty();
    let certs = riposte_tls::pem::certs(&pki.ca()).expect("the CA");
    roots.add(certs[0].clone()).expect("a root");
    let config = riposte_tls::tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = riposte_tls::tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(orchestrator.syslog_tls_addr())
        .await
        .expect("connected");
    let name = "localhost".try_into().expect("a server name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the TLS handshake");
    let message = "<134>1 2026-12-03T10:00:00Z fw1 firewall - - - CEF:0|Contoso|Firewall|2.1|100|\
                   Connection blocked|5|src=203.0.113.77 dst=198.51.100.10 act=blocked";
    let frame = format!("{} {message}", message.len());
    tokio::io::AsyncWriteExt::write_all(&mut tls, frame.as_bytes())
        .await
        .expect("sent");
    tokio::io::AsyncWriteExt::flush(&mut tls)
        .await
        .expect("flushed");

    let mut client = orchestrator.client();
    wait_for("both alerts are stored", TIMEOUT, async || {
        let request = ListAlertsRequest {
            limit: 10,
            page_token: String::new(),
        };
        let alerts = client
            .list_alerts(request)
            .await
            .map_err(|e| e.to_string())?;
        let sources: Vec<String> = alerts
            .into_inner()
            .alerts
            .into_iter()
            .map(|a| a.source)
            .collect();
        let both = sources.iter().any(|s| s == "syslog")
            && sources.iter().any(|s| s.starts_with("generic"));
        both.then_some(()).ok_or(format!("{sources:?}"))
    })
    .await;
}

/// The attack this module answers, with real nftables workers in a network namespace: a
/// rogue copy of the firewall worker (same actions, same labels) with a certificate whose
/// identity the policy does not let offer `firewall.*`, and one without a certificate, are
/// refused at registration; 20 `ip-block` runs each block on the real worker, and each grant's
/// revoke (the undo) is done by it too.
#[tokio::test]
async fn a_rogue_copy_of_the_firewall_worker_takes_no_block_and_no_revoke() {
    if !host::enabled() {
        return;
    }
    let topo = Topology::new();
    let pki = Pki::new();
    let listen = topo.orchestrator_listen();
    let ip = listen.rsplit_once(':').expect("ADDR:0").0.to_string();
    let policy = pki.dir().join("worker-policy.yaml");
    std::fs::write(&policy, POLICY).expect("the policy written");
    let orchestrator = Orchestrator::builder()
        .listen(&listen)
        .tls_for(&pki, &[&ip])
        .args(&["--worker-policy", policy.to_str().expect("utf-8")])
        .start();
    let firewall = |name: &str, tls: Vec<String>| {
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        Worker::builder(&orchestrator.url())
            .name(name)
            .netns(topo.target.name())
            .args(&["--firewall-backend", "nftables"])
            .args(&tls)
            .start()
    };
    let real = firewall("edge", pki.worker_args(&pki.client(Role::Worker, "fw-1")));
    let rogue = firewall(
        "rogue",
        pki.worker_args(&pki.client(Role::Worker, "helper-7")),
    );
    let anonymous = firewall(
        "anonymous",
        vec!["--tls-ca".into(), pki.ca().display().to_string()],
    );
    let mut client = orchestrator.client();
    let real_id = real.id(&mut client).await;
    wait_for("both copies were refused", TIMEOUT, async || {
        let (rogue, anonymous) = (rogue.log_tail(), anonymous.log_tail());
        let refused = rogue.contains("may not offer `firewall.")
            && anonymous.contains("must present a client certificate");
        refused.then_some(()).ok_or(format!("{rogue}\n{anonymous}"))
    })
    .await;
    assert_eq!(worker_names(&orchestrator).await, vec![real_id.clone()]);

    let mut runs = Vec::new();
    for n in 1..=20 {
        let params = json!({"ip": format!("203.0.113.{n}"), "duration": "3s"});
        runs.push(api::start_run(&mut client, "ip-block", params).await.run_id);
    }
    for run_id in &runs {
        let run = api::wait_finished(&mut client, run_id, Duration::from_secs(60)).await;
        assert_eq!(
            run.status(),
            RunStatus::Succeeded,
            "{}",
            api::describe(&run)
        );
        let events = api::history(&mut client, run_id).await;
        let leased: Vec<&str> = events
            .iter()
            .filter(|e| e.kind.ends_with(".leased"))
            .map(|e| e.worker_id.as_str())
            .collect();
        assert_eq!(
            leased.len(),
            2,
            "a block and its revoke: {:?}",
            api::kinds(&events)
        );
        assert!(leased.iter().all(|w| *w == real_id), "{leased:?}");
    }
    let grants = orchestrator
        .cli(&["grants", "list", "--output", "json"])
        .await;
    assert_eq!(grants.code(), 0, "{grants}");
    assert!(
        !grants.stdout.contains("203.0.113."),
        "every grant was revoked: {grants}"
    );
}

#[tokio::test]
async fn idle_connections_from_one_peer_keep_no_one_else_from_connecting() {
    let pki = Pki::new();
    let orchestrator = secured(&pki);
    let mut client = orchestrator.client();
    client
        .list_workers(ListWorkersRequest {})
        .await
        .expect("connected before the flood");
    // 500 connections from 127.0.0.1 that never start their handshake.
    let mut flood = Vec::new();
    for _ in 0..500 {
        if let Ok(stream) = tokio::net::TcpStream::connect(orchestrator.addr()).await {
            flood.push(stream);
        }
    }
    // Another address connects, handshakes and is answered at once, as is the connection
    // opened before.
    let files = riposte_tls::client::Files {
        ca: pki.ca(),
        cert: None,
    };
    let url = orchestrator.url();
    let endpoint = tonic::transport::Endpoint::from_shared(url).expect("a URL");
    let config = riposte_tls::client::config(&files, endpoint.uri()).expect("the TLS files");
    let other = endpoint
        .local_address(Some("127.0.0.2".parse().expect("an address")))
        .tls_config(config)
        .expect("TLS")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("a new peer connects during the flood");
    let started = std::time::Instant::now();
    api::health_on(other, "").await.expect("answered");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    client
        .list_workers(ListWorkersRequest {})
        .await
        .expect("the connection opened before still answers");
    let log = orchestrator.log_tail();
    assert!(
        log.contains("grpc.refused") && log.contains("handshakes_max"),
        "{log}"
    );
    drop(flood);
}
