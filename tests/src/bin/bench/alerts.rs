//! The alert figures of `riposte-bench`: sustained ingestion over HTTP and over TCP syslog,
//! with a deduplicating rule on, and alert-to-first-action latency at a fixed open-loop rate.
//!
//! - **HTTP ingestion**: [`HTTP_ROUNDS`] rounds of [`HTTP_ALERTS`] Azure Monitor
//!   common-schema alerts (the shared fixture with its `SourceIP` and `alertId` varied)
//!   POSTed by [`HTTP_SENDERS`] senders (each from its own loopback address) of
//!   [`HTTP_CONCURRENCY`] concurrent keep-alive connections each. A rule matches every one,
//!   with a dedup key on the IP: [`DISTINCT_IPS`] runs start, every other alert is coalesced
//!   into one of them. Each round's alerts per second until its last `200`, which is answered
//!   only once the alert is durable; the figure is the median round. Each alert's time to
//!   stored is from its request being sent to its `200`.
//! - **Syslog ingestion**: [`SYSLOG_ALERTS`] CEF lines (newline framing, the same
//!   [`DISTINCT_IPS`] IPs, so the same dedup) over [`SYSLOG_CONNECTIONS`] TCP connections.
//!   Each client half-closes after its last line and waits for the listener to close: it
//!   closes only once the last batch it read is durable. Alerts per second until the last
//!   close. Meanwhile a probe line every [`SYSLOG_PROBE_PERIOD`] on a connection of its own
//!   gives the time to stored ([`probe`]).
//! - **Storm**: for [`STORM`], alerts of one kind (one CEF signature from [`STORM_IPS`]
//!   addresses) as fast as [`SYSLOG_CONNECTIONS`] TCP connections take them, under a rule
//!   that deduplicates on the address and starts at most [`STORM_BUDGET`] runs a day. The
//!   orchestrator's resident set is sampled every second; exactly [`STORM_BUDGET`] runs must
//!   start, however many alerts came. A probe every [`STORM_PROBE_PERIOD`] gives the time to
//!   stored.
//! - **Alert to first action**: [`LATENCY_ALERTS`] alerts with distinct IPs (each starts a
//!   run) POSTed open-loop at [`LATENCY_RATE`] per second; each run's first step is an
//!   `http.request` to a sink in this process. The latency is from the moment the POST is
//!   sent to the moment the sink receives the worker's request: it includes the HTTP
//!   ingestion, the durable write, the dispatch, the worker's lease and its HTTP call, so it
//!   is an upper bound on "accepted to first step started".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Path, State};
use riposte_proto::v1::ListAlertsRequest;
use riposte_tests::Orchestrator;
use riposte_tests::alerts::apply_rule;
use riposte_tests::api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

mod post;
mod print;
mod probe;

use super::{
    PHASE_TIMEOUT, Samples, WORKER_CONCURRENCY, WORKERS, cpu_time, ms, progress, start_workers,
};

const HTTP_ALERTS: usize = 20_000;
/// The HTTP phase is [`HTTP_ROUNDS`] rounds of [`HTTP_ALERTS`] on the same orchestrator: one
/// round lasts two or three seconds, and on a 2-core machine (shared with this load
/// generator) the rounds of one run have differed by up to a third, so the figure is the
/// median round, beside the slowest and the fastest. The rounds and the phases after them
/// stay within the alerts the orchestrator keeps ([`ALERTS_KEPT`]) until the storm: no
/// measured phase before it pays for pruning.
const HTTP_ROUNDS: usize = 3;
/// Senders of the HTTP phase, each from its own loopback address (a storm comes from many
/// senders), each with [`HTTP_CONCURRENCY`] connections.
const HTTP_SENDERS: usize = 4;
const HTTP_CONCURRENCY: usize = 32;
const SYSLOG_ALERTS: usize = 20_000;
const SYSLOG_CONNECTIONS: usize = 4;
const DISTINCT_IPS: usize = 200;
const LATENCY_ALERTS: usize = 2_000;
const LATENCY_RATE: u32 = 200;
const WARMUP_ALERTS: usize = 100;
const STORM: Duration = Duration::from_secs(60);
const STORM_IPS: usize = 50;
const STORM_BUDGET: usize = 20;
/// The alerts the orchestrator keeps, the newest ones (its `limits::ALERTS_KEPT`; the bench
/// links none of its crates).
const ALERTS_KEPT: usize = 100_000;
/// Lines each storm connection writes at once.
const STORM_CHUNK: usize = 500;
/// How often a probe line measures the time to stored: about 300 probes in the syslog phase,
/// 3,000 in the storm, each on a connection of its own.
const SYSLOG_PROBE_PERIOD: Duration = Duration::from_millis(2);
const STORM_PROBE_PERIOD: Duration = Duration::from_millis(20);

/// Targets: an alert storm must not be where alerts are lost.
const HTTP_ALERTS_PER_SECOND_MIN: f64 = 10_000.0;
const SYSLOG_ALERTS_PER_SECOND_MIN: f64 = 20_000.0;
const FIRST_ACTION_P99_MAX: Duration = Duration::from_millis(10);

const TOKEN: &str = "bench-token";
const AZURE_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/alerts/azure-monitor-common-log-alert.json"
);
/// The fixture's `SourceIP` dimension and `alertId`, replaced per alert.
const FIXTURE_IP: &str = "203.0.113.45";
const FIXTURE_ALERT_ID: &str = "/subscriptions/";

/// Matches every alert with an IP; coalesces alerts of the same IP for 10 minutes.
const RULE: &str = r#"
name: bench
match: "alert.entities.ips | length > 0"
playbook: alert-hit
params:
  ip: "{{ alert.entities.ips[0].address }}"
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 10m }
"#;

/// The storm's rule: one kind of alert, deduplicated per address, at most
/// [`STORM_BUDGET`] runs a day (applied first: it is the first rule by name). A storm that
/// crosses midnight UTC spans two budget periods and may start twice as many.
const STORM_RULE: &str = r#"
name: a-storm
match: "alert.title == 'Port scan detected'"
playbook: storm-hit
params:
  ip: "{{ alert.entities.ips[0].address }}"
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 1d }
budget: { runs: 20, per: 1d }
"#;

/// The playbook the rule starts: its first (only) step calls the sink with the IP.
fn playbook(sink: SocketAddr) -> String {
    format!(
        "name: alert-hit
version: 1
params:
  ip: {{ type: string }}
steps:
  - id: hit
    action: http.request
    with: {{ url: \"http://{sink}/hit/{{{{ params.ip }}}}\", timeout: 10s }}
"
    )
}

pub struct Figures {
    http: Ingestion,
    syslog: Ingestion,
    storm: Storm,
    first_action: Samples,
    /// POSTs of the latency phase not answered 200.
    latency_refused: usize,
    /// How far the latency phase's latest send fell behind its schedule.
    late_max: Duration,
}

struct Ingestion {
    alerts: usize,
    elapsed: Duration,
    /// Each round's alerts per second, in order (HTTP; empty for syslog, one round).
    rounds: Vec<f64>,
    /// The orchestrator's peak resident set since it started (`VmHWM`), after this phase.
    peak_rss_kib: u64,
    orchestrator_cpu: Duration,
    /// This process's CPU (the load generator) over the same time.
    client_cpu: Duration,
    /// Runs started (the rest were coalesced), as the fates say.
    started: usize,
    /// Alerts' times from sent to durable: every HTTP alert, the syslog probes.
    to_stored: Samples,
}

impl Ingestion {
    /// The median round's rate; over the whole phase when it is one round.
    fn per_second(&self) -> f64 {
        let mut rounds = self.rounds.clone();
        rounds.sort_by(f64::total_cmp);
        let middle = rounds.len() / 2;
        match rounds.len() {
            0 => self.alerts as f64 / self.elapsed.as_secs_f64(),
            n if n % 2 == 0 => (rounds[middle - 1] + rounds[middle]) / 2.0,
            _ => rounds[middle],
        }
    }

    /// The rounds, slowest and fastest, when there are several.
    fn spread(&self) -> String {
        let (slowest, fastest) = self
            .rounds
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        match self.rounds.len() {
            0 | 1 => String::new(),
            n => format!(
                " in {n} rounds of {HTTP_ALERTS} (median {:.0}/s, slowest {slowest:.0}/s, fastest {fastest:.0}/s)",
                self.per_second()
            ),
        }
    }
}

/// What the storm did.
struct Storm {
    alerts: usize,
    elapsed: Duration,
    /// The orchestrator's resident set, sampled every second (KiB).
    rss_kib: Vec<u64>,
    peak_rss_kib: u64,
    runs: usize,
    /// The probes' times from sent to durable.
    to_stored: Samples,
}

/// When the sink saw each IP first.
#[derive(Default)]
struct Sink {
    hits: Mutex<HashMap<String, Instant>>,
    hit: Notify,
}

pub async fn measure() -> Result<Figures> {
    let sink = Arc::new(Sink::default());
    let sink_addr = serve_sink(sink.clone()).await?;
    let orchestrator = Orchestrator::builder()
        .log("warn")
        .alert_secrets(&[("azure-monitor", TOKEN)])
        .args(&[
            "--alerts-listen",
            "127.0.0.1:0",
            "--syslog-tcp",
            "127.0.0.1:0",
            "--no-builtin-playbooks",
        ])
        .start();
    let allow = sink_addr.to_string();
    let _workers = start_workers(&orchestrator, &["--http-allow-hosts", &allow]).await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, &playbook(sink_addr)).await;
    let applied = apply_rule(&orchestrator, RULE).await;
    if applied.code() != 0 {
        bail!("the benchmark rule was refused: {applied}");
    }
    let fixture = std::fs::read_to_string(AZURE_FIXTURE).context("the Azure Monitor fixture")?;
    let target = post::Target {
        addr: orchestrator.alerts_addr(),
        path: "/alerts/azure-monitor",
    };
    let url = format!("{}{}", orchestrator.alerts_url(), target.path);

    progress("alerts: warm-up");
    let warm: Vec<String> = (0..WARMUP_ALERTS)
        .map(|n| azure_alert(&fixture, &format!("198.19.0.{}", n % 250), n))
        .collect();
    post::post_all(&target, warm).await?;

    progress("alerts: HTTP ingestion");
    let cpu_before = cpu_time(orchestrator.pid())?;
    let client_before = cpu_time(std::process::id())?;
    let (mut elapsed, mut rounds, mut started) = (Duration::ZERO, Vec::new(), 0);
    let mut to_stored = Vec::with_capacity(HTTP_ROUNDS * HTTP_ALERTS);
    for round in 0..HTTP_ROUNDS {
        // Every alert of every round is a new one; the same 200 IPs: the first round starts
        // their runs, the others are coalesced into them.
        let payloads: Vec<String> = (0..HTTP_ALERTS)
            .map(|n| {
                let ip = ip_of(n % DISTINCT_IPS, false);
                azure_alert(&fixture, &ip, round * HTTP_ALERTS + n)
            })
            .collect();
        let round_started = Instant::now();
        let answers = post::post_all(&target, payloads).await?;
        let took = round_started.elapsed();
        elapsed += took;
        rounds.push(HTTP_ALERTS as f64 / took.as_secs_f64());
        started += answers.fates.iter().filter(|f| *f == "started").count();
        to_stored.extend(answers.to_stored);
    }
    let http_figures = Ingestion {
        alerts: HTTP_ROUNDS * HTTP_ALERTS,
        elapsed,
        rounds,
        peak_rss_kib: peak_rss_kib(orchestrator.pid())?,
        orchestrator_cpu: cpu_time(orchestrator.pid())? - cpu_before,
        client_cpu: cpu_time(std::process::id())? - client_before,
        started,
        to_stored: Samples::new(to_stored),
    };

    progress("alerts: syslog ingestion over TCP");
    let cpu_before = cpu_time(orchestrator.pid())?;
    let client_before = cpu_time(std::process::id())?;
    let started = Instant::now();
    let probes = probe::Probes::start(orchestrator.syslog_tcp_addr(), SYSLOG_PROBE_PERIOD, |n| {
        syslog_line(n, format_args!("probe-{n}"))
    });
    send_syslog(orchestrator.syslog_tcp_addr()).await?;
    let elapsed = started.elapsed();
    let syslog_figures = Ingestion {
        alerts: SYSLOG_ALERTS,
        elapsed,
        rounds: Vec::new(),
        peak_rss_kib: peak_rss_kib(orchestrator.pid())?,
        orchestrator_cpu: cpu_time(orchestrator.pid())? - cpu_before,
        client_cpu: cpu_time(std::process::id())? - client_before,
        started: 0,
        to_stored: probes.stop().await?,
    };
    check_syslog_stored(&orchestrator).await?;
    let syslog_figures = Ingestion {
        started: sink
            .wait_distinct(WARMUP_ALERTS + 2 * DISTINCT_IPS)
            .await?
            .saturating_sub(WARMUP_ALERTS + DISTINCT_IPS),
        ..syslog_figures
    };

    progress("alerts: alert to first action, open loop");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(HTTP_CONCURRENCY)
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .tcp_nodelay(true)
        .build()?;
    let (first_action, latency_refused, late_max) =
        first_action(&http, &url, &fixture, &sink).await?;

    progress("alerts: a storm of one kind of alert over TCP syslog");
    let storm = storm(&orchestrator, &sink_addr).await?;
    Ok(Figures {
        http: http_figures,
        syslog: syslog_figures,
        storm,
        first_action,
        latency_refused,
        late_max,
    })
}

/// The peak resident set of process `pid` since it started (`VmHWM` in `/proc/PID/status`).
fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// A size field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))
}

/// The storm phase (see the module docs); fails unless exactly [`STORM_BUDGET`] runs started.
async fn storm(orchestrator: &Orchestrator, sink: &SocketAddr) -> Result<Storm> {
    let mut client = orchestrator.client();
    let storm_playbook = playbook(*sink).replace("name: alert-hit", "name: storm-hit");
    api::apply_playbook(&mut client, &storm_playbook).await;
    let applied = apply_rule(orchestrator, STORM_RULE).await;
    if applied.code() != 0 {
        bail!("the storm rule was refused: {applied}");
    }
    let pid = orchestrator.pid();
    let addr = orchestrator.syslog_tcp_addr();
    let started = Instant::now();
    let deadline = started + STORM;
    let mut senders = Vec::new();
    for c in 0..SYSLOG_CONNECTIONS {
        senders.push(tokio::spawn(storm_connection(addr, c, deadline)));
    }
    let probes = probe::Probes::start(addr, STORM_PROBE_PERIOD, |n| {
        storm_line(n, format_args!("probe-{n}"))
    });
    let mut rss_kib = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_kib.push(status_kib(pid, "VmRSS:")?);
    }
    let mut alerts = 0;
    for sender in senders {
        alerts += tokio::time::timeout(PHASE_TIMEOUT, sender).await???;
    }
    let elapsed = started.elapsed();
    let to_stored = probes.stop().await?;
    let runs = client
        .list_runs(riposte_proto::v1::ListRunsRequest {
            playbook: "storm-hit".into(),
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .runs
        .len();
    if runs != STORM_BUDGET {
        bail!("the storm of {alerts} alerts started {runs} runs, not {STORM_BUDGET}");
    }
    Ok(Storm {
        alerts,
        elapsed,
        rss_kib,
        peak_rss_kib: peak_rss_kib(pid)?,
        runs,
        to_stored,
    })
}

/// One storm connection: chunks of lines until `deadline`, then waits for the listener to
/// close (every line read is durable); answers how many lines it sent.
async fn storm_connection(addr: SocketAddr, c: usize, deadline: Instant) -> Result<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut sent = 0;
    while Instant::now() < deadline {
        let mut text = String::with_capacity(STORM_CHUNK * 200);
        for n in 0..STORM_CHUNK {
            let i = sent + n;
            text.push_str(&storm_line(i, format_args!("{c}-{i}")));
            text.push('\n');
        }
        stream.write_all(text.as_bytes()).await?;
        sent += STORM_CHUNK;
    }
    stream.shutdown().await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    Ok(sent)
}

/// The `i`th line of the syslog phase (from the `i % DISTINCT_IPS`th IP), told apart by `tag`.
fn syslog_line(i: usize, tag: impl std::fmt::Display) -> String {
    format!(
        "<134>Jan 15 10:00:00 fw01 CEF:0|Contoso|Firewall|2.1|100|Connection blocked|5|\
         src={} spt={} dst=198.51.100.200 dpt=22 proto=TCP act=blocked cs1={tag}",
        ip_of(i % DISTINCT_IPS, true),
        10_000 + i % 50_000,
    )
}

/// The `i`th line of the storm, one of [`STORM_IPS`] addresses, told apart by `tag`.
fn storm_line(i: usize, tag: impl std::fmt::Display) -> String {
    format!(
        "<132>Jan 15 10:00:00 ids01 CEF:0|Contoso|IDS|5.0|4001|Port scan detected|7|\
         src=198.19.8.{} dst=198.51.100.200 dpt=22 proto=TCP cs1={tag}",
        i % STORM_IPS + 1,
    )
}

/// The IP of the `n`th of [`DISTINCT_IPS`] of the HTTP phase (203.0.113.0/24 and
/// 198.51.100.0/24) or the syslog phase (198.19.1.0/24 and 198.19.2.0/24).
fn ip_of(n: usize, syslog: bool) -> String {
    let (net, host) = (n / 100, n % 100 + 1);
    match (syslog, net) {
        (false, 0) => format!("203.0.113.{host}"),
        (false, _) => format!("198.51.100.{host}"),
        (true, 0) => format!("198.19.1.{host}"),
        (true, _) => format!("198.19.2.{host}"),
    }
}

/// The fixture with `ip` as its source and an `alertId` of its own.
fn azure_alert(fixture: &str, ip: &str, n: usize) -> String {
    fixture.replace(FIXTURE_IP, ip).replacen(
        FIXTURE_ALERT_ID,
        &format!("/bench-{n}/subscriptions/"),
        1,
    )
}

async fn fate_of(answer: reqwest::Response) -> Result<String> {
    let status = answer.status();
    fate_in(status, &answer.bytes().await?)
}

/// The fate of the one alert of a payload, from the listener's answer; fails on any answer
/// but 200.
fn fate_in(status: reqwest::StatusCode, answer: &[u8]) -> Result<String> {
    if status != reqwest::StatusCode::OK {
        let body = String::from_utf8_lossy(answer);
        bail!("the alert listener answered {status}: {body}");
    }
    let answer: serde_json::Value = serde_json::from_slice(answer)?;
    Ok(answer["alerts"][0]["fate"]
        .as_str()
        .unwrap_or("")
        .to_string())
}

/// Sends [`SYSLOG_ALERTS`] CEF lines over [`SYSLOG_CONNECTIONS`] connections; returns once
/// the listener has closed every one (all read lines durable).
async fn send_syslog(addr: SocketAddr) -> Result<()> {
    let per_connection = SYSLOG_ALERTS / SYSLOG_CONNECTIONS;
    let mut tasks = Vec::new();
    for c in 0..SYSLOG_CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut text = String::with_capacity(per_connection * 200);
        for n in 0..per_connection {
            let i = c * per_connection + n;
            text.push_str(&syslog_line(i, i));
            text.push('\n');
        }
        tasks.push(tokio::spawn(async move {
            stream.write_all(text.as_bytes()).await?;
            stream.shutdown().await?;
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        tokio::time::timeout(PHASE_TIMEOUT, task).await???;
    }
    Ok(())
}

/// The newest alerts are the syslog phase's, and the listener refused nothing.
async fn check_syslog_stored(orchestrator: &Orchestrator) -> Result<()> {
    let newest = orchestrator
        .client()
        .list_alerts(ListAlertsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts;
    if newest.len() < 1000 || newest.iter().any(|a| a.source != "syslog") {
        bail!("the syslog alerts were not all stored");
    }
    let log = orchestrator.log_tail();
    if log.contains("syslog.refused") || log.contains("syslog.ingest_failed") {
        bail!("the syslog listener refused lines:\n{log}");
    }
    Ok(())
}

/// Open loop: one POST every 1/[`LATENCY_RATE`] s, each a new IP; answers the latencies to
/// the sink's hit, the POSTs refused, and how late the latest send was.
async fn first_action(
    http: &reqwest::Client,
    url: &str,
    fixture: &str,
    sink: &Arc<Sink>,
) -> Result<(Samples, usize, Duration)> {
    let period = Duration::from_secs(1) / LATENCY_RATE;
    let start = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(LATENCY_ALERTS);
    let mut answers = Vec::with_capacity(LATENCY_ALERTS);
    let mut late = Duration::ZERO;
    for n in 0..LATENCY_ALERTS {
        let due = start + period * n as u32;
        tokio::time::sleep_until(due).await;
        late = late.max(due.elapsed());
        let ip = format!("198.18.{}.{}", n / 250, n % 250 + 1);
        let request = http
            .post(url)
            .header("X-Riposte-Token", TOKEN)
            .body(azure_alert(fixture, &ip, HTTP_ALERTS + n))
            .send();
        sent.push((ip, Instant::now()));
        answers.push(tokio::spawn(async move { fate_of(request.await?).await }));
    }
    let mut refused = 0;
    for answer in answers {
        if tokio::time::timeout(PHASE_TIMEOUT, answer).await??.is_err() {
            refused += 1;
        }
    }
    sink.wait_distinct(WARMUP_ALERTS + 2 * DISTINCT_IPS + LATENCY_ALERTS - refused)
        .await?;
    let hits = sink.hits.lock().expect("the sink lock");
    let latencies = sent
        .iter()
        .filter_map(|(ip, at)| hits.get(ip).map(|hit| hit.saturating_duration_since(*at)))
        .collect();
    Ok((Samples::new(latencies), refused, late))
}

impl Sink {
    /// Waits until `count` distinct IPs have hit the sink; answers how many have.
    async fn wait_distinct(&self, count: usize) -> Result<usize> {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        loop {
            let notified = self.hit.notified();
            let hits = self.hits.lock().expect("the sink lock").len();
            if hits >= count {
                return Ok(hits);
            }
            if Instant::now() > deadline {
                bail!("only {hits} of {count} first actions reached the sink");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }
}

async fn serve_sink(sink: Arc<Sink>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/hit/{ip}", axum::routing::get(hit))
        .with_state(sink);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

async fn hit(State(sink): State<Arc<Sink>>, Path(ip): Path<String>) -> &'static str {
    let now = Instant::now();
    sink.hits
        .lock()
        .expect("the sink lock")
        .entry(ip)
        .or_insert(now);
    sink.hit.notify_one();
    "ok"
}
