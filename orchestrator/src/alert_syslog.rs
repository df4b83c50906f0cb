//! The syslog alert listeners: UDP (one datagram, one message) and TCP (RFC 6587 octet
//! counting or newline framing, cut by [`FrameDecoder`]). Messages are RFC 3164 or RFC 5424,
//! CEF in the MSG detected by the pure parser; each goes through the same ingestion as every
//! other source, under the source name `syslog`.
//!
//! Syslog carries no header for a token, so a sender is authenticated by its address: the
//! peer must be inside `--syslog-allow` before a byte of it is read (TCP: checked on accept;
//! UDP: on each datagram, before parsing). A UDP source address can be forged on a network
//! that does not filter spoofed traffic; prefer TCP there.
//!
//! Bounds: a message of at most [`SYSLOG_MESSAGE_BYTES_MAX`], at most [`CONNECTIONS_MAX`] TCP
//! connections, an idle connection closed after [`IDLE_TIMEOUT`], messages ingested in
//! batches of at most [`BATCH_MAX`]. A TCP reader waits for its batch to be durable before it
//! reads on, so a full ingestion queue slows the sender down (TCP flow control) and nothing
//! read is dropped. Refused senders and messages are logged, at most once per
//! [`REFUSAL_LOG_EVERY`] per listener, with the count since the last line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::door::{Caller, Node, alerts::IngestBatch};
use riposte_ingest::framing::FrameDecoder;
use riposte_ingest::syslog::SYSLOG_MESSAGE_BYTES_MAX;

/// The source name syslog messages are ingested under.
pub const SOURCE: &str = "syslog";
/// TCP connections served at once; one more waits in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 128;
/// A TCP connection with nothing to read for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages ingested (and flushed) together at most.
pub const BATCH_MAX: usize = 64;
/// Refusals are logged at most this often per listener.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes read from a TCP connection at once.
const READ_BYTES: usize = 64 * 1024;

/// The senders a syslog listener accepts.
#[derive(Debug, Clone)]
pub struct Senders(Vec<IpNet>);

impl Senders {
    pub fn new(ranges: Vec<IpNet>) -> Senders {
        Senders(ranges)
    }

    fn allows(&self, peer: &SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.0.iter().any(|range| range.contains(&ip))
    }
}

/// Serves UDP syslog on `socket` until the task is aborted.
pub async fn serve_udp(socket: UdpSocket, shared: Arc<Node>, senders: Senders) {
    let mut refusals = Refusals::new("udp", shared.clock().clone());
    // One byte more than a message may be, to tell an over-limit datagram from a full one.
    let mut buf = vec![0u8; SYSLOG_MESSAGE_BYTES_MAX + 1];
    loop {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let first = socket.recv_from(&mut buf).await;
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok((n, peer)) if !senders.allows(&peer) => {
                    refusals.note(peer, &format!("sender not allowed ({n} bytes dropped)"));
                }
                Ok((n, peer)) if n > SYSLOG_MESSAGE_BYTES_MAX => refusals.note(
                    peer,
                    &format!("datagram exceeds {SYSLOG_MESSAGE_BYTES_MAX} bytes"),
                ),
                Ok((n, _)) => batch.push(buf[..n].to_vec()),
                Err(e) => {
                    tracing::warn!(error = %e, "syslog.udp_receive_failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if batch.len() < BATCH_MAX {
                next = match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                };
            }
        }
        ingest(&shared, batch, &mut refusals, None).await;
    }
}

/// Serves TCP syslog on `listener` until the task is aborted.
pub async fn serve_tcp(
    listener: TcpListener,
    shared: Arc<Node>,
    senders: Senders,
    tls: Option<Arc<riposte_tls::server::Reloadable>>,
) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut refusals = Refusals::new("tcp", shared.clock().clone());
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "syslog.tcp_accept_failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !senders.allows(&peer) {
            refusals.note(peer, "sender not allowed (connection closed)");
            continue;
        }
        let shared = shared.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => read_connection(stream, peer, &shared).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => read_connection(stream, peer, &shared).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "tls.handshake_failed"),
                        Err(_) => tracing::info!(%peer, "tls.handshake_timed_out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Reads one TCP connection to its end (or its idle timeout), ingesting as it goes.
async fn read_connection<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Arc<Node>,
) {
    let mut refusals = Refusals::new("tcp", shared.clock().clone());
    let mut decoder = FrameDecoder::new(SYSLOG_MESSAGE_BYTES_MAX);
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let read = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await;
        let frames = match read {
            Ok(Ok(0)) => decoder.finish().into_iter().collect(),
            Ok(Ok(n)) => decoder.push(&buf[..n]),
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "syslog.tcp_connection_failed");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "syslog.tcp_idle_closed");
                return;
            }
        };
        let ended = matches!(read, Ok(Ok(0)));
        let mut batch = Vec::new();
        for frame in frames {
            match frame {
                Ok(frame) => batch.push(frame.message),
                Err(e) => refusals.note(peer, &e.to_string()),
            }
            if batch.len() == BATCH_MAX {
                ingest(
                    shared,
                    std::mem::take(&mut batch),
                    &mut refusals,
                    Some(peer),
                )
                .await;
            }
        }
        ingest(
            shared,
            std::mem::take(&mut batch),
            &mut refusals,
            Some(peer),
        )
        .await;
        if ended {
            return;
        }
    }
}

/// Ingests `batch` and waits until it is durable; a refused message is noted, not retried.
async fn ingest(
    shared: &Arc<Node>,
    batch: Vec<Vec<u8>>,
    refusals: &mut Refusals,
    peer: Option<SocketAddr>,
) {
    if batch.is_empty() {
        return;
    }
    let messages = batch.len();
    let batch = IngestBatch {
        source: SOURCE.to_string(),
        payloads: batch,
    };
    match shared.handle(Caller::Feed, batch).await {
        Ok(refused) => {
            for error in refused {
                refusals.note_from(peer, &error);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, messages, "syslog.ingest_failed");
        }
    }
}

/// Refusal logging, throttled to one line per [`REFUSAL_LOG_EVERY`].
struct Refusals {
    listener: &'static str,
    since_logged: u64,
    logged_at: Option<Instant>,
    clock: Clock,
}

impl Refusals {
    fn new(listener: &'static str, clock: Clock) -> Refusals {
        Refusals {
            listener,
            since_logged: 0,
            logged_at: None,
            clock,
        }
    }

    fn note(&mut self, peer: SocketAddr, error: &str) {
        self.note_from(Some(peer), error);
    }

    fn note_from(&mut self, peer: Option<SocketAddr>, error: &str) {
        self.since_logged += 1;
        if self
            .logged_at
            .is_some_and(|at| self.clock.monotonic().duration_since(at) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::warn!(
            listener = self.listener,
            peer,
            error,
            refused = self.since_logged,
            "syslog.refused"
        );
        self.since_logged = 0;
        self.logged_at = Some(self.clock.monotonic());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_matched_by_range_and_mapped_v4_addresses_count_as_v4() {
        let senders = Senders::new(vec![
            "127.0.0.0/8".parse().expect("a range"),
            "2001:db8::/32".parse().expect("a range"),
        ]);
        assert!(senders.allows(&"127.0.0.1:514".parse().expect("an address")));
        assert!(senders.allows(&"[::ffff:127.0.0.9]:514".parse().expect("an address")));
        assert!(senders.allows(&"[2001:db8::1]:514".parse().expect("an address")));
        assert!(!senders.allows(&"198.51.100.1:514".parse().expect("an address")));
        assert!(!senders.allows(&"[::1]:514".parse().expect("an address")));
    }
}
