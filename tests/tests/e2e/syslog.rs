//! CEF over syslog end to end: a CEF line sent over UDP with `logger`, over TCP with `logger
//! --octet-count` and over a raw TCP socket with newline framing each start `ip-echo` with
//! the line's `src` through a rule; on one TCP connection an over-size line is dropped and
//! the next line still starts its run; a sender outside `--syslog-allow` is refused before
//! anything is stored; `riposte alerts send --source syslog` takes the same lines. The sender
//! quirks of the ingest corpus (no PRI, no hostname, a TAG only, `CEF: 0`, relay escapes, ...)
//! are recognised over UDP and TCP alike.

use std::net::SocketAddr;
use std::time::Duration;

use riposte_proto::v1::{AlertInfo, GetAlertRequest, ListAlertsRequest, ListRunsRequest};
use riposte_tests::alerts::{ECHO_IP, apply_rule};
use riposte_tests::{Orchestrator, Worker, api, wait_for, wait_until};
use tokio::io::AsyncWriteExt;

const RULE: &str = r#"
name: cef-blocked
match: "alert.source == 'cef' and alert.entities.ips | length > 0"
playbook: ip-echo
params:
  ip: "{{ alert.entities.ips[0].address }}"
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 10m }
"#;

/// A firewall's CEF event for the attacker `ip`.
fn cef(ip: &str) -> String {
    format!(
        "CEF:0|Contoso|Firewall|2.1|100|Connection blocked|5|src={ip} spt=51515 \
         dst=198.51.100.10 dpt=22 proto=TCP act=blocked"
    )
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn with_syslog(extra: &[&str]) -> Orchestrator {
    let mut args = vec!["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Orchestrator::builder().args(&args).start()
}

async fn setup(orchestrator: &Orchestrator) -> Worker {
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ECHO_IP).await;
    let applied = apply_rule(orchestrator, RULE).await;
    assert_eq!(applied.code(), 0, "{applied}");
    worker
}

/// `logger` sending `message` to `addr` over UDP or TCP (octet counting).
async fn logger(addr: SocketAddr, tcp: bool, message: &str) {
    let port = addr.port().to_string();
    let mut args = vec![
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--rfc5424",
        "--tag",
        "fw01",
    ];
    if tcp {
        args.extend(["--tcp", "--octet-count"]);
    } else {
        args.push("--udp");
    }
    args.extend(["--", message]);
    let status = tokio::process::Command::new("logger")
        .args(&args)
        .status()
        .await
        .expect("logger runs (bsdutils)");
    assert!(status.success(), "logger {args:?}: {status}");
}

async fn alerts(orchestrator: &Orchestrator) -> Vec<AlertInfo> {
    orchestrator
        .client()
        .list_alerts(ListAlertsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("ListAlerts")
        .into_inner()
        .alerts
}

/// Waits for the alert carrying `ip` that started a run, then for the run it started to finish with that IP.
async fn run_started_for(orchestrator: &Orchestrator, ip: &str) -> AlertInfo {
    let alert = wait_for(&format!("an alert for {ip}"), TIMEOUT, async || {
        let all = alerts(orchestrator).await;
        all.iter()
            .find(|a| a.alert_json.contains(ip) && a.fate == "started")
            .cloned()
            .ok_or_else(|| format!("{all:?}"))
    })
    .await;
    assert_eq!(alert.source, "syslog", "{alert:?}");
    assert!(
        alert.entities.contains(&format!("ip {ip} (attacker)")),
        "{alert:?}"
    );
    let mut client = orchestrator.client();
    let run = api::wait_finished(&mut client, &alert.run_id, TIMEOUT).await;
    assert_eq!(
        api::json(&run.params_json)["ip"],
        ip,
        "{}",
        api::describe(&run)
    );
    alert
}

#[tokio::test]
async fn a_cef_line_over_udp_and_over_tcp_with_logger_each_start_a_run() {
    let orchestrator = with_syslog(&[]);
    let _worker = setup(&orchestrator).await;

    logger(orchestrator.syslog_udp_addr(), false, &cef("203.0.113.45")).await;
    let over_udp = run_started_for(&orchestrator, "203.0.113.45").await;
    let shown = orchestrator
        .client()
        .get_alert(GetAlertRequest { id: over_udp.id })
        .await
        .expect("GetAlert")
        .into_inner();
    assert!(
        shown.payload.contains(" fw01 ") && shown.payload.contains(&cef("203.0.113.45")),
        "the datagram is kept as received: {}",
        shown.payload
    );

    logger(orchestrator.syslog_tcp_addr(), true, &cef("203.0.113.46")).await;
    run_started_for(&orchestrator, "203.0.113.46").await;

    let runs = orchestrator
        .client()
        .list_runs(ListRunsRequest {
            playbook: "ip-echo".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2, "one run per line");
}

#[tokio::test]
async fn over_a_raw_tcp_socket_an_oversize_line_is_dropped_and_the_next_line_starts_its_run() {
    let orchestrator = with_syslog(&[]);
    let _worker = setup(&orchestrator).await;
    let mut stream = tokio::net::TcpStream::connect(orchestrator.syslog_tcp_addr())
        .await
        .expect("the TCP syslog listener accepts");
    let oversize = format!(
        "<134>Jan 15 10:00:00 fw01 {} msg={}\n",
        cef("203.0.113.60"),
        "x".repeat(70 * 1024)
    );
    let first = format!("<134>Jan 15 10:00:00 fw01 {}\n", cef("203.0.113.61"));
    let repeat = first.clone();
    let other = format!("<134>Jan 15 10:00:01 fw01 {}\n", cef("203.0.113.62"));
    for line in [&oversize, &first, &repeat, &other] {
        stream.write_all(line.as_bytes()).await.expect("sent");
    }
    stream.flush().await.expect("flushed");

    run_started_for(&orchestrator, "203.0.113.61").await;
    run_started_for(&orchestrator, "203.0.113.62").await;
    let all = alerts(&orchestrator).await;
    assert_eq!(all.len(), 3, "the over-size line is not stored: {all:?}");
    assert!(!all.iter().any(|a| a.alert_json.contains("203.0.113.60")));
    let coalesced: Vec<_> = all.iter().filter(|a| a.fate == "deduplicated").collect();
    assert_eq!(
        coalesced.len(),
        1,
        "the repeat joins the first run: {all:?}"
    );
    wait_until("the drop is logged", TIMEOUT, async || {
        orchestrator.log_tail().contains("syslog.refused")
    })
    .await;
}

#[tokio::test]
async fn a_sender_outside_the_allowed_ranges_is_refused_and_nothing_is_stored() {
    let orchestrator = with_syslog(&["--syslog-allow", "198.51.100.0/24"]);
    let _worker = setup(&orchestrator).await;

    logger(orchestrator.syslog_udp_addr(), false, &cef("203.0.113.70")).await;
    wait_until("the UDP sender is refused", TIMEOUT, async || {
        orchestrator.log_tail().contains("sender not allowed")
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(orchestrator.syslog_tcp_addr())
        .await
        .expect("the kernel accepts the connection");
    // The listener closes it unread; a write may or may not see the reset first.
    let _ = stream
        .write_all(format!("<134>Jan 15 10:00:00 fw01 {}\n", cef("203.0.113.71")).as_bytes())
        .await;
    wait_until("the TCP sender is refused", TIMEOUT, async || {
        orchestrator
            .log_tail()
            .contains("sender not allowed (connection closed)")
    })
    .await;
    assert!(alerts(&orchestrator).await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_syslog_line_sent_with_the_cli_starts_its_run_like_one_from_the_listener() {
    let orchestrator = Orchestrator::start();
    let _worker = setup(&orchestrator).await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("line.txt");
    let line = format!("<134>Jan 15 10:00:00 fw01 {}\n", cef("203.0.113.80"));
    std::fs::write(&file, &line).expect("written");
    let sent = orchestrator
        .cli(&[
            "alerts",
            "send",
            "-f",
            file.to_str().expect("utf-8"),
            "--source",
            "syslog",
        ])
        .await;
    assert_eq!(sent.code(), 0, "{sent}");
    run_started_for(&orchestrator, "203.0.113.80").await;
}

/// The cases of the ingest crate's sender-quirk corpus: (id, message).
fn quirks() -> (Vec<(String, String)>, serde_json::Value) {
    let dir = format!(
        "{}/../ingest/tests/fixtures/ingest",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(format!("{dir}/cef-quirks.txt")).expect("the corpus");
    let expected = std::fs::read_to_string(format!("{dir}/cef-quirks.expected.json"))
        .expect("its expectations");
    let mut cases = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# case: ") {
            id = Some(rest.trim().to_owned());
        } else if !line.is_empty() && !line.starts_with('#') {
            cases.push((id.take().expect("a case id"), line.to_owned()));
        }
    }
    (cases, serde_json::from_str(&expected).expect("JSON"))
}

/// Every quirk sent as a UDP datagram and as a line on a TCP connection is stored once per
/// transport with the title, severity and attacker address the corpus expects: CEF read from
/// messages without PRI, without hostname, with a TAG only, with `CEF: 0`, with relay escapes
/// and empty header fields, and the broken one kept as a plain syslog alert.
#[tokio::test]
async fn cef_as_appliances_send_it_is_recognised_over_udp_and_tcp() {
    let orchestrator = with_syslog(&[]);
    let (cases, expected) = quirks();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(orchestrator.syslog_tcp_addr())
        .await
        .expect("the TCP syslog listener accepts");
    for (_, line) in &cases {
        udp.send_to(line.as_bytes(), orchestrator.syslog_udp_addr())
            .await
            .expect("sent");
        tcp.write_all(format!("{line}\n").as_bytes())
            .await
            .expect("sent");
    }
    tcp.flush().await.expect("flushed");
    let stored = wait_for("every message stored", TIMEOUT, async || {
        let all = alerts(&orchestrator).await;
        (all.len() == 2 * cases.len())
            .then_some(all.clone())
            .ok_or_else(|| format!("{} of {}: {all:?}", all.len(), 2 * cases.len()))
    })
    .await;
    for (id, _) in &cases {
        let want = &expected["cases"][id];
        let title = want["title"].as_str().unwrap();
        let same: Vec<&AlertInfo> = stored.iter().filter(|a| a.title == title).collect();
        assert_eq!(
            same.len(),
            2,
            "{id}: once over UDP, once over TCP: {stored:?}"
        );
        for alert in same {
            let normalized: serde_json::Value = serde_json::from_str(&alert.alert_json).unwrap();
            assert_eq!(normalized["source"], want["source"], "{id}: {alert:?}");
            assert_eq!(
                normalized.get("note").unwrap_or(&serde_json::Value::Null),
                want.get("note").unwrap_or(&serde_json::Value::Null),
                "{id}: {alert:?}"
            );
            if let Some(note) = want["note"].as_str() {
                let shown = orchestrator.cli(&["alerts", "show", &alert.id]).await;
                assert!(
                    shown
                        .stdout
                        .lines()
                        .any(|l| l.ends_with(note) && l.starts_with("note:")),
                    "{id}: {shown:?}"
                );
            }
            assert_eq!(alert.severity, want["severity"].as_str().unwrap(), "{id}");
            match want["attacker"].as_str() {
                Some(ip) => assert!(
                    alert.entities.contains(&format!("ip {ip} (attacker)")),
                    "{id}: {alert:?}"
                ),
                None => assert!(alert.entities.is_empty(), "{id}: {alert:?}"),
            }
        }
    }
}
