//! The senders of the HTTP ingestion phase: [`HTTP_SENDERS`] loopback addresses of
//! [`HTTP_CONCURRENCY`] keep-alive HTTP/1.1 connections each, every connection sending its
//! next alert once the previous one is answered, as a sender that waits for its `200` does.
//!
//! The connections speak hyper's client protocol directly, not through a client with a pool,
//! redirects and retries: the load generator shares the two cores with the orchestrator it
//! measures, and should take as little of them as it can.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// POSTs every payload over [`HTTP_SENDERS`] × [`HTTP_CONCURRENCY`] connections opened for
/// it, at most one request in flight on each; fails on any answer but 200. Answers each
/// alert's fate, in the payloads' order.
pub async fn post_all(target: &Target, payloads: Vec<String>) -> Result<Vec<String>> {
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
    let mut fates = vec![String::new(); payloads.len()];
    for connection in connections {
        let answered = tokio::time::timeout(PHASE_TIMEOUT, connection)
            .await
            .context("the HTTP phase timed out")???;
        for (n, fate) in answered {
            fates[n] = fate;
        }
    }
    Ok(fates)
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

/// Sends the payloads not yet taken, one at a time; answers each one's index and fate.
async fn send_all(
    mut send: SendRequest<Full<Bytes>>,
    path: &'static str,
    payloads: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
) -> Result<Vec<(usize, String)>> {
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
        let answer = send.send_request(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        answered.push((n, super::fate_in(status, &body)?));
    }
}
