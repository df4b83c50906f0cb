//! The senders of the HTTP ingestion phase: [`HTTP_SENDERS`] loopback addresses of
//! [`HTTP_CONCURRENCY`] keep-alive HTTP/1.1 connections each, every connection sending its
//! next alert once the previous one is answered, as a sender that waits for its `200` does.
//!
//! Each alert's time to stored is taken as its sender sees it: from the request being sent to
//! its `200`, which the listener answers only once the alert is durable.
//!
//! The connections speak hyper's client protocol directly, not through a client with a pool,
//! redirects and retries: the load generator shares the two cores with the orchestrator it
//! measures, and should take as little of them as it can.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::{HTTP_CONCURRENCY, HTTP_SENDERS, PHASE_TIMEOUT, TOKEN};

/// Where the alerts go: the listener's address and the endpoint's path.
pub struct Target {
    pub addr: SocketAddr,
    pub path: &'static str,
}

/// What the listener answered, in the payloads' order.
pub struct Answers {
    /// Each alert's fate (`started`, `coalesced`, ...).
    pub fates: Vec<String>,
    /// Each alert's time from its request being sent to its `200` (durable).
    pub to_stored: Vec<Duration>,
}

/// POSTs every payload over [`HTTP_SENDERS`] × [`HTTP_CONCURRENCY`] connections opened for
/// it, at most one request in flight on each; fails on any answer but 200.
pub async fn post_all(target: &Target, payloads: Vec<String>) -> Result<Answers> {
    let payloads: Arc<Vec<Bytes>> = Arc::new(payloads.into_iter().map(Bytes::from).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::with_capacity(HTTP_SENDERS * HTTP_CONCURRENCY);
    for sender in 0..HTTP_SENDERS {
        let local = IpAddr::from([127, 0, 0, 2 + sender as u8]);
        for _ in 0..HTTP_CONCURRENCY {
            let send = connect(local, target.addr).await?;
            let (payloads, next, path) = (payloads.clone(), next.clone(), target.path);
            connections.push(tokio::spawn(send_all(send, path, payloads, next)));
        }
    }
    let mut answers = Answers {
        fates: vec![String::new(); payloads.len()],
        to_stored: vec![Duration::ZERO; payloads.len()],
    };
    for connection in connections {
        let answered = tokio::time::timeout(PHASE_TIMEOUT, connection)
            .await
            .context("the HTTP phase timed out")???;
        for (n, fate, took) in answered {
            answers.fates[n] = fate;
            answers.to_stored[n] = took;
        }
    }
    Ok(answers)
}

/// A keep-alive connection from `local` to `addr`.
async fn connect(local: IpAddr, addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Driven until the connection closes (its `SendRequest` dropped).
    tokio::spawn(connection);
    Ok(send)
}

/// Sends the payloads not yet taken, one at a time; answers each one's index, fate and time
/// to its `200`.
async fn send_all(
    mut send: SendRequest<Full<Bytes>>,
    path: &'static str,
    payloads: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
) -> Result<Vec<(usize, String, Duration)>> {
    let mut answered = Vec::new();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(payload) = payloads.get(n) else {
            return Ok(answered);
        };
        send.ready().await?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, "riposte")
            .header("X-Riposte-Token", TOKEN)
            .body(Full::new(payload.clone()))?;
        let sent = Instant::now();
        let answer = send.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        let took = sent.elapsed();
        answered.push((n, super::fate_in(status, &body)?, took));
    }
}
