//! The HTTP alert listener under attack: of 20,000 idle connections from one address, all
//! past the per-peer cap are reset while the orchestrator's file descriptors stay bounded, the gRPC API
//! answers as fast as before and another address's alert is accepted; a connection that stalls
//! in its headers, or sends nothing, or idles after an answer, is closed after the header
//! timeout; out of file descriptors, the listener backs off and serves again once it has
//! some; a feed trickling bodies holds only its share of the ingestion queue, so that other
//! feeds are not refused meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use riposte_proto::v1::ListRunsRequest;
use riposte_tests::access;
use riposte_tests::alerts::{AZURE_FIXTURE, send_azure_monitor};
use riposte_tests::api::channel;
use riposte_tests::{Orchestrator, wait_for, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const AZURE_TOKEN: &str = "azure-s3cret";
const GENERIC_TOKEN: &str = "generic-s3cret";
/// Idle connections the flood opens from one address.
const FLOOD: usize = 20_000;
/// Connects of the flood in progress at once (well under the listener's accept backlog).
const FLOOD_CONCURRENCY: usize = 200;
/// How long a connection of the flood is watched for its reset before it is kept as open.
const FLOOD_WATCH: Duration = Duration::from_millis(500);
/// The default `--alerts-peer-connections-max`.
const PEER_CONNECTIONS_MAX: usize = 64;
/// How long a condition of these tests may take to hold.
const TIMEOUT: Duration = Duration::from_secs(30);

fn with_listener(extra: &[&str]) -> Orchestrator {
    let mut args = vec!["--alerts-listen", "127.0.0.1:0"];
    args.extend(extra);
    Orchestrator::builder()
        .alert_secrets(&[("azure-monitor", AZURE_TOKEN), ("generic", GENERIC_TOKEN)])
        .args(&args)
        .start()
}

fn alerts_addr(orchestrator: &Orchestrator) -> SocketAddr {
    let url = orchestrator.alerts_url();
    url.trim_start_matches("http://")
        .parse()
        .expect("an address")
}

/// A generic alert posted from the local address `from`: its status and body.
async fn post_generic(orchestrator: &Orchestrator, from: &str, id: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("an address"))
        .build()
        .expect("a client");
    let answer = client
        .post(format!("{}/alerts/generic/edr", orchestrator.alerts_url()))
        .header("X-Riposte-Token", GENERIC_TOKEN)
        .body(format!(r#"{{"id": "{id}", "title": "from another feed"}}"#))
        .send()
        .await
        .expect("the alert listener answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("a body"))
}

/// The open file descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .count()
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How long `ListRuns` takes on a new connection (a new connection also needs an accept).
async fn list_runs_latency(url: &str) -> Duration {
    let started = Instant::now();
    let mut client = access::operator(channel(url), Some(&access::token_of("e2e")));
    client
        .list_runs(ListRunsRequest {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("ListRuns answers");
    started.elapsed()
}

/// Whether the peer closed or reset `stream`; what it sent, if anything, is read and dropped.
fn closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// One idle connection of the flood: `None` once the orchestrator refused it (at connect or
/// by a reset; the attacker's side of it is closed then, as the attacker's would be),
/// `Some` while it is still open after [`FLOOD_WATCH`].
async fn idle_connection(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(FLOOD_WATCH, stream.read(&mut byte)).await {
        Err(_) => Some(stream),
        Ok(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_idle_connections_from_one_address_are_capped_and_others_are_served() {
    // Held connections stay open for the whole test: the cap alone refuses the rest.
    let orchestrator = with_listener(&["--alerts-header-timeout", "10m"]);
    let (url, addr, pid) = (
        orchestrator.url(),
        alerts_addr(&orchestrator),
        orchestrator.pid(),
    );
    let mut latency_before = Duration::ZERO;
    for _ in 0..20 {
        latency_before = latency_before.max(list_runs_latency(&url).await);
    }
    let (files_before, rss_before) = (open_files(pid), rss_kib(pid));

    // While the flood connects: ListRuns on new connections, and the orchestrator's files.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let probe = tokio::spawn({
        let url = url.clone();
        async move {
            let (mut latency, mut files, mut probes) = (Duration::ZERO, 0, 0);
            loop {
                latency = latency.max(list_runs_latency(&url).await);
                files = files.max(open_files(pid));
                probes += 1;
                tokio::select! {
                    _ = &mut stopped => return (latency, files, probes),
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
    });
    let flood_started = Instant::now();
    let streams: Vec<TcpStream> = futures::stream::iter(0..FLOOD)
        .map(|_| idle_connection(addr))
        .buffer_unordered(FLOOD_CONCURRENCY)
        .filter_map(async |open| open)
        .collect()
        .await;
    let flood_took = flood_started.elapsed();
    let open = wait_for("all but the peer's share are closed", TIMEOUT, async || {
        let open = streams.iter().filter(|s| !closed(s)).count();
        match open <= PEER_CONNECTIONS_MAX {
            true => Ok(open),
            false => Err(format!("{open} of {} still open", streams.len())),
        }
    })
    .await;
    let (status, body) = post_generic(&orchestrator, "127.0.0.2", "other-address").await;
    let _ = stop.send(());
    let (latency_during, files_during, probes) = probe.await.expect("the probe ran");
    let rss_during = rss_kib(pid);
    eprintln!(
        "flood of {FLOOD} connections in {flood_took:?}: {open} left open; \
         orchestrator files {files_before} before, at most {files_during} during; RSS \
         {rss_before} KiB before, {rss_during} KiB after; ListRuns on a new connection at most \
         {latency_before:?} before, at most {latency_during:?} during ({probes} probes)"
    );

    assert_eq!(status, 200, "another address is served: {body}");
    assert_eq!(open, PEER_CONNECTIONS_MAX, "the peer keeps its share open");
    assert!(probes >= 2, "the API was probed during the flood");
    assert!(
        latency_during < Duration::from_secs(1),
        "the gRPC API answers meanwhile: {latency_during:?} (before: {latency_before:?})"
    );
    assert!(
        files_during <= files_before + PEER_CONNECTIONS_MAX + 32,
        "the orchestrator's files stay bounded: {files_during} (before: {files_before})"
    );
    let log = orchestrator.log_tail();
    assert!(
        log.contains("alerts.refused") && log.contains("peer_connections_max"),
        "the refusals are logged: {log}"
    );
    drop(streams);
}

#[tokio::test]
async fn out_of_file_descriptors_the_listener_backs_off_logs_and_serves_again() {
    let orchestrator = with_listener(&[
        "--alerts-connections-max",
        "100000",
        "--alerts-peer-connections-max",
        "100000",
        "--alerts-header-timeout",
        "10m",
    ]);
    let (addr, pid) = (alerts_addr(&orchestrator), orchestrator.pid());
    // Caps above what the process may open: only its limit of open files stops the flood.
    let limit = open_files(pid) + 32;
    let lowered = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit runs");
    assert!(lowered.success(), "the orchestrator's limit is lowered");
    let mut flood = Vec::new();
    for _ in 0..limit * 2 {
        flood.push(
            TcpStream::connect(addr)
                .await
                .expect("queued by the kernel"),
        );
    }
    wait_until("the failing accepts are logged", TIMEOUT, async || {
        let log = orchestrator.log_tail();
        log.contains("alerts.refused") && log.contains("accept_failed")
    })
    .await;
    drop(flood);
    let (status, body) = post_generic(&orchestrator, "127.0.0.1", "after-emfile").await;
    assert_eq!(status, 200, "the listener serves again: {body}");
    list_runs_latency(&orchestrator.url()).await;
}

/// How long after `started` the orchestrator closed `stream` (whatever it sent first).
async fn closed_after(stream: &mut TcpStream, started: Instant) -> Duration {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was closed");
    started.elapsed()
}

#[tokio::test]
async fn connections_that_stall_in_their_headers_send_nothing_or_idle_are_closed_after_the_header_timeout()
 {
    let orchestrator = with_listener(&["--alerts-header-timeout", "1s"]);
    let addr = alerts_addr(&orchestrator);
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.expect("connected");
    stalled
        .write_all(b"POST /alerts/azure-monitor HTTP/1.1\r\nHost: alerts\r\nX-Riposte-To")
        .await
        .expect("sent");
    let mut silent = TcpStream::connect(addr).await.expect("connected");
    let mut idle = TcpStream::connect(addr).await.expect("connected");
    idle.write_all(
        b"POST /alerts/azure-monitor HTTP/1.1\r\nHost: alerts\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .expect("sent");
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.expect("answered");
    assert_eq!(&answer, b"HTTP/1.1 401", "the request was answered");
    let answered = Instant::now();

    let stalled_after = closed_after(&mut stalled, started).await;
    let silent_after = closed_after(&mut silent, started).await;
    let idle_after = closed_after(&mut idle, answered).await;
    for (what, after) in [
        ("stalled in its headers", stalled_after),
        ("silent", silent_after),
        ("idle after an answer", idle_after),
    ] {
        assert!(
            (Duration::from_millis(500)..Duration::from_secs(4)).contains(&after),
            "a connection {what} is closed after the 1 s header timeout, not {after:?}"
        );
    }
    wait_until("the header timeouts are logged", TIMEOUT, async || {
        let log = orchestrator.log_tail();
        log.contains("alerts.refused") && log.contains("header_timeout")
    })
    .await;
    // The listener still serves.
    let (status, body) = post_generic(&orchestrator, "127.0.0.1", "after-timeouts").await;
    assert_eq!(status, 200, "{body}");
}

/// The ingestion queue in the trickling test, and the share of one feed (the default half).
const IN_FLIGHT: usize = 8;
const SHARE: usize = IN_FLIGHT / 2;
/// The trickle: one more byte of each body this often.
const TRICKLE_EVERY: Duration = Duration::from_millis(100);

/// Whether `stream` was answered (or closed); what it answered is read and dropped.
fn answered(stream: &OwnedReadHalf) -> bool {
    let mut buf = [0u8; 512];
    !matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Sends one more byte of `body` on each of `writers` every [`TRICKLE_EVERY`], counting the
/// bytes sent in `sent`, until `stop`; then gives the writers back.
async fn trickle(
    mut writers: Vec<OwnedWriteHalf>,
    body: Vec<u8>,
    sent: Arc<AtomicUsize>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<OwnedWriteHalf> {
    loop {
        let at = sent.load(Ordering::SeqCst);
        if at + 1 < body.len() {
            for writer in &mut writers {
                writer.write_all(&body[at..at + 1]).await.expect("sent");
            }
            sent.store(at + 1, Ordering::SeqCst);
        }
        tokio::select! {
            _ = &mut stop => return writers,
            _ = tokio::time::sleep(TRICKLE_EVERY) => {}
        }
    }
}

#[tokio::test]
async fn a_feed_trickling_bodies_holds_only_its_share_and_other_feeds_are_served() {
    let orchestrator = with_listener(&["--alerts-in-flight", &IN_FLIGHT.to_string()]);
    let addr = alerts_addr(&orchestrator);
    let fixture = std::fs::read(AZURE_FIXTURE).expect("the fixture");
    let head = format!(
        "POST /alerts/azure-monitor HTTP/1.1\r\nHost: alerts\r\nX-Riposte-Token: {AZURE_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        fixture.len()
    );
    // As many slow senders as the whole queue has places, each with its body begun.
    let mut senders = Vec::new();
    for _ in 0..IN_FLIGHT {
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        stream.write_all(head.as_bytes()).await.expect("sent");
        stream.write_all(&fixture[..10]).await.expect("sent");
        senders.push(stream.into_split());
    }
    // Those over the share are refused at once; the others hold their places.
    let mut refused = vec![false; IN_FLIGHT];
    wait_for(
        "the senders over the share are refused",
        TIMEOUT,
        async || {
            for (i, (reader, _)) in senders.iter().enumerate() {
                refused[i] = refused[i] || answered(reader);
            }
            match refused.iter().filter(|r| **r).count() {
                n if n == IN_FLIGHT - SHARE => Ok(()),
                n => Err(format!("{n} refused")),
            }
        },
    )
    .await;
    let (readers, writers): (Vec<_>, Vec<_>) = senders
        .into_iter()
        .zip(refused)
        .filter_map(|(sender, refused)| (!refused).then_some(sender))
        .unzip();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let sent = Arc::new(AtomicUsize::new(10));
    let trickling = tokio::spawn(trickle(writers, fixture.clone(), sent.clone(), stopped));

    // Meanwhile: the same feed is refused, the others are served.
    let more = reqwest::Client::new()
        .post(format!(
            "{}/alerts/azure-monitor",
            orchestrator.alerts_url()
        ))
        .header("X-Riposte-Token", AZURE_TOKEN)
        .body(fixture.clone())
        .send()
        .await
        .expect("answers");
    assert_eq!(more.status().as_u16(), 429);
    let text = more.text().await.expect("a body");
    assert!(text.contains("http/azure-monitor"), "{text}");
    let (status, body) = post_generic(&orchestrator, "127.0.0.1", "while-trickled").await;
    assert_eq!(status, 200, "another HTTP feed is served: {body}");
    let over_grpc = send_azure_monitor(&orchestrator, AZURE_FIXTURE).await;
    assert_eq!(over_grpc.code(), 0, "the gRPC feed is served: {over_grpc}");
    wait_until("the 429s are logged", TIMEOUT, async || {
        let log = orchestrator.log_tail();
        log.contains("alerts.refused") && log.contains("in_flight")
    })
    .await;
    wait_until("half a second of trickling", TIMEOUT, async || {
        sent.load(Ordering::SeqCst) >= 15
    })
    .await;
    assert!(
        readers.iter().all(|r| !answered(r)),
        "the trickled requests still hold their places"
    );
    let (status, body) = post_generic(&orchestrator, "127.0.0.1", "still-trickled").await;
    assert_eq!(status, 200, "{body}");

    // The trickled bodies end: each is accepted.
    let _ = stop.send(());
    let writers = trickling.await.expect("trickled");
    let sent = sent.load(Ordering::SeqCst);
    for (mut reader, mut writer) in readers.into_iter().zip(writers) {
        writer.write_all(&fixture[sent..]).await.expect("sent");
        let mut answer = [0u8; 12];
        reader.read_exact(&mut answer).await.expect("answered");
        assert_eq!(&answer, b"HTTP/1.1 200");
    }
}
