//! The HTTP alert listener's connections: the accept loop, and HTTP/1.1 on one connection.
//!
//! Bounds: at most `--alerts-connections-max` connections are open, of which one peer address
//! (an IPv6 peer: its /64) holds at most `--alerts-peer-connections-max`; a connection over
//! either is reset at once, unread. A connection that has not sent a request's complete
//! headers within `--alerts-header-timeout` of its opening, or of its previous answer (an idle
//! keep-alive connection), is closed. An accept that fails for want of file descriptors
//! (EMFILE, ENFILE) or memory is tried again after [`ACCEPT_BACKOFF`]: the loop never ends on
//! an error. Each refusal is counted and logged ([`crate::refusals`]).
//!
//! A connection goes accept → admit (the caps) → TLS handshake (with `--tls-cert`) → serve, in
//! [`connection`]. The handshake has to end within the header timeout, as the headers do; a
//! failed one is a refusal like the others.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::budget::{Budget, Over, Places, peer_key};
use crate::clock::Clock;
use crate::refusals::Tally;

/// How long the accept loop pauses after an accept failed for want of resources.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// File descriptors kept for all but the alert listener's connections: gRPC clients and
/// workers, the store's files, the syslog listeners' connections.
const FILES_RESERVE: u64 = 1024;

/// The bounds of the HTTP alert listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once (`--alerts-connections-max`).
    pub connections_max: usize,
    /// Of those, the connections of one peer address (`--alerts-peer-connections-max`).
    pub peer_connections_max: usize,
    /// Time to send a request's complete headers (`--alerts-header-timeout`).
    pub header_timeout: Duration,
}

/// What every connection of one listener shares.
struct Listener {
    router: Router,
    /// Its TLS, when it serves https.
    tls: Option<Arc<riposte_tls::server::Reloadable>>,
    header_timeout: Duration,
    connections: Arc<Budget<IpAddr>>,
    refused: Refused,
}

/// The refusals of one listener, a [`Tally`] per kind.
struct Refused {
    connections_max: Tally,
    peer_connections_max: Tally,
    header_timeout: Tally,
    handshake_failed: Tally,
    accept_failed: Tally,
}

/// Accepts connections on `listener` and serves `router` on each, within `limits`, until the
/// task is aborted.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<riposte_tls::server::Reloadable>>,
    clock: Clock,
) {
    fit_file_limit(limits.connections_max);
    let shared = Arc::new(Listener {
        router,
        tls,
        header_timeout: limits.header_timeout,
        connections: Arc::new(Budget::new(
            limits.connections_max,
            limits.peer_connections_max,
        )),
        refused: Refused {
            connections_max: Tally::new("connections_max", clock.clone()),
            peer_connections_max: Tally::new("peer_connections_max", clock.clone()),
            header_timeout: Tally::new("header_timeout", clock.clone()),
            handshake_failed: Tally::new("tls_handshake_failed", clock.clone()),
            accept_failed: Tally::new("accept_failed", clock),
        },
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // The peer gave up before it was accepted: nothing to do.
            Err(e) if is_peer_gone(&e) => continue,
            Err(e) => {
                shared.refused.accept_failed.note(&"-", &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match shared.connections.try_take(peer_key(peer.ip())) {
            Ok(place) => {
                tokio::spawn(connection(tcp, peer, place, shared.clone()));
            }
            Err(over) => shared.refuse(tcp, peer, &over),
        }
    }
}

impl Listener {
    /// Resets `tcp` unread (no time-wait is left on this side) and notes why.
    fn refuse(&self, tcp: TcpStream, peer: SocketAddr, over: &Over) {
        let _ = tcp.set_zero_linger();
        drop(tcp);
        let (tally, why) = match over {
            Over::All { max } => (
                &self.refused.connections_max,
                format!("{max} connections are open, the most allowed"),
            ),
            Over::Share { share_max, .. } => (
                &self.refused.peer_connections_max,
                format!("the peer has {share_max} connections open, the most one peer may"),
            ),
        };
        tally.note(&peer.ip(), &why);
    }
}

/// One admitted connection, from accept to its end; `_place` is its place under the caps.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    _place: Places<IpAddr>,
    listener: Arc<Listener>,
) {
    // Answers are small: without TCP_NODELAY, the answer on a kept-alive connection may wait
    // for a delayed ACK.
    let _ = tcp.set_nodelay(true);
    let requests = Arc::new(AtomicU64::new(0));
    let (router, timeout) = (listener.router.clone(), listener.header_timeout);
    let served = match &listener.tls {
        None => serve_http(tcp, router, timeout, requests.clone()).await,
        Some(tls) => {
            let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return listener.refused.handshake_failed.note(&peer.ip(), &e),
                Err(_) => {
                    let why = format!("no TLS handshake within {timeout:?}");
                    return listener.refused.header_timeout.note(&peer.ip(), &why);
                }
            };
            serve_http(stream, router, timeout, requests.clone()).await
        }
    };
    match served {
        Ok(()) => {}
        // Timed out before its first request's headers were complete: a refusal.
        Err(e) if e.is_timeout() && requests.load(Ordering::Relaxed) == 0 => {
            let why = format!(
                "no complete request headers within {:?}",
                listener.header_timeout
            );
            listener.refused.header_timeout.note(&peer.ip(), &why);
        }
        // An idle keep-alive connection, closed as it should be.
        Err(e) if e.is_timeout() => tracing::debug!(%peer, "alerts.idle_closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "alerts.connection_failed"),
    }
}

/// Serves `router` over HTTP/1.1 on `stream` (any byte stream: TCP, TLS) until the connection
/// ends; counts its requests in `requests`. Fails with a timeout
/// ([`hyper::Error::is_timeout`]) when a request's headers were not complete within
/// `header_timeout` of the start or of the previous answer.
async fn serve_http<S>(
    stream: S,
    router: Router,
    header_timeout: Duration,
    requests: Arc<AtomicU64>,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |request: Request<Incoming>| {
        requests.fetch_add(1, Ordering::Relaxed);
        request.map(Body::new)
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .await
}

/// An accept error that only means the peer went away before it was accepted.
fn is_peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Raises this process's soft limit of open files (up to its hard limit) so that
/// `connections_max` connections and [`FILES_RESERVE`] more fit; warns when they cannot.
fn fit_file_limit(connections_max: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let needed = connections_max as u64 + FILES_RESERVE;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= needed {
        return;
    }
    let raised = needed.min(hard);
    if raised > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
            Ok(()) => tracing::info!(from = soft, to = raised, "alerts.file_limit_raised"),
            Err(e) => tracing::warn!(error = %e, "alerts.file_limit_not_raised"),
        }
    }
    if raised < needed {
        tracing::warn!(
            limit = hard,
            needed,
            "alerts.file_limit_low: lower --alerts-connections-max or raise the hard limit of \
             open files (LimitNOFILE)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_its_ipv4_address_or_its_ipv6_64() {
        let key = |ip: &str| peer_key(ip.parse().expect("an address")).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::5"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
