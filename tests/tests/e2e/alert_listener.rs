//! The HTTP alert listener under attack: a feed trickling bodies holds only its share of the
//! ingestion queue, so that other feeds are not refused meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use riposte_tests::alerts::{AZURE_FIXTURE, send_azure_monitor};
use riposte_tests::{Orchestrator, wait_for, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const AZURE_TOKEN: &str = "azure-s3cret";
const GENERIC_TOKEN: &str = "generic-s3cret";
/// How long a condition of these tests may take to hold.
const TIMEOUT: Duration = Duration::from_secs(30);

fn with_listener(extra: &[&str]) -> Orchestrator {
    let mut args = vec![
        "--alerts-listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--alert-secret".to_string(),
        format!("azure-monitor={AZURE_TOKEN}"),
        "--alert-secret".to_string(),
        format!("generic={GENERIC_TOKEN}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Orchestrator::builder().args(&args).start()
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
